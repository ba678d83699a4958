from .video_clip_batch_sampler import VideoClipBatchSampler
from .video_distributed_sampler import VideoDistributedSampler, video_order
from .video_interleaved_batch_sampler import VideoInterleavedBatchSampler

__all__ = [
    'VideoClipBatchSampler',
    'VideoInterleavedBatchSampler',
    'VideoDistributedSampler',
    'video_order',
]
