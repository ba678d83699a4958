from .checkpoint_check_hook import CheckpointCheckHook
from .video_visualization_hook import VideoVisualizationHook

__all__ = ['CheckpointCheckHook', 'VideoVisualizationHook']
