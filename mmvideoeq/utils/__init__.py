"""Utilities. Importing the package is cheap: ``checks`` and ``weight_cache`` are plain Python /
PyTorch (the DEQ core and the streaming layer use them); the mm-layer helpers
(``register_all_modules``, safe checkpoint loading) import mmengine when first used."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    'register_all_modules': 'setup_env',
    'allow_mmengine_checkpoint_types': 'checkpoint',
    'safe_load_checkpoint': 'checkpoint',
    'UnsafeCheckpointError': 'checkpoint',
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f'.{_LAZY[name]}', __name__), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
