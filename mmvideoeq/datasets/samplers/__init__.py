from .video_interleaved_batch_sampler import VideoInterleavedBatchSampler

__all__ = ['VideoInterleavedBatchSampler']
