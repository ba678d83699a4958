from .video_distributed_sampler import VideoDistributedSampler, video_order
from .video_interleaved_batch_sampler import VideoInterleavedBatchSampler

__all__ = ['VideoInterleavedBatchSampler', 'VideoDistributedSampler', 'video_order']
