from .checkpoint_check_hook import CheckpointCheckHook
from .panoptic_class_check_hook import PanopticClassCheckHook
from .training_guard_hooks import NonFiniteLossHook, RNGStateHook
from .video_visualization_hook import VideoVisualizationHook

__all__ = [
    'CheckpointCheckHook',
    'NonFiniteLossHook',
    'PanopticClassCheckHook',
    'RNGStateHook',
    'VideoVisualizationHook',
]
