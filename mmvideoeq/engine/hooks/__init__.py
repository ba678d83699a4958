from .checkpoint_classes_hook import CheckpointClassesHook

__all__ = ['CheckpointClassesHook']
