from .checkpoint_check_hook import CheckpointCheckHook
from .training_guard_hooks import NonFiniteLossHook, RNGStateHook
from .video_visualization_hook import VideoVisualizationHook

__all__ = ['CheckpointCheckHook', 'NonFiniteLossHook', 'RNGStateHook', 'VideoVisualizationHook']
