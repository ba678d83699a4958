"""Utilities of the mm layer. Importing this package imports mmengine (not mmdet/mmseg)."""

from .checkpoint import UnsafeCheckpointError, allow_mmengine_checkpoint_types, safe_load_checkpoint
from .setup_env import register_all_modules

__all__ = [
    'register_all_modules',
    'allow_mmengine_checkpoint_types',
    'safe_load_checkpoint',
    'UnsafeCheckpointError',
]
