from .video_clip_batch_sampler import VideoClipBatchSampler
from .video_interleaved_batch_sampler import VideoInterleavedBatchSampler

__all__ = ['VideoClipBatchSampler', 'VideoInterleavedBatchSampler']
