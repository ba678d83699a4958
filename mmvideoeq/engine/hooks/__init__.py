from .checkpoint_classes_hook import CheckpointClassesHook
from .panoptic_class_check_hook import PanopticClassCheckHook

__all__ = ['CheckpointClassesHook', 'PanopticClassCheckHook']
