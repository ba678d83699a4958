"""Loading mmengine checkpoints under torch's ``weights_only`` unpickler, safely.

torch >= 2.6 loads with ``weights_only=True``. mmengine 0.10.7 checkpoints carry a message hub
(``HistoryBuffer`` objects holding numpy arrays) and numpy scalars in ``meta``, which that
unpickler refuses. Rather than switching the protection off (``weights_only=False`` or
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``), we add to torch's allow-list exactly the types mmengine
writes: ``mmengine.logging.HistoryBuffer`` and the numpy reconstruction helpers, array and dtype
types. Any other global in a checkpoint (a pickled callable, a class of unknown code) is still
refused by torch; :func:`safe_load_checkpoint` turns that refusal into a one-line error.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import numpy as np
import torch


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint holds pickled objects outside the allow-list; it was not loaded."""


def _numpy_globals() -> list:
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
    dtype_types = [
        type(np.dtype(t))
        for t in (
            np.float16,
            np.float32,
            np.float64,
            np.int8,
            np.int16,
            np.int32,
            np.int64,
            np.uint8,
            np.uint16,
            np.uint32,
            np.uint64,
            np.bool_,
        )
    ]
    return [_reconstruct, scalar, np.ndarray, np.dtype, *dtype_types]


def _history_buffer_method(obj: Any, name: str) -> Any:
    """Stand-in for ``builtins.getattr`` while unpickling: only ``HistoryBuffer`` statistics.

    ``HistoryBuffer.__getstate__`` stores its statistics methods (``min``, ``max``, ``mean``,
    ``current`` and any registered with ``register_statistics``), which pickle protocol 2 writes
    as ``getattr(HistoryBuffer, 'min')``. Allowing the real ``getattr`` would let a checkpoint
    fetch any attribute of any allowed object; this function allows exactly those lookups.
    """
    from mmengine.logging.history_buffer import HistoryBuffer

    if obj is HistoryBuffer and isinstance(name, str) and not name.startswith('_'):
        method = HistoryBuffer.__dict__.get(name)
        if callable(method):
            return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'Unsupported global: getattr({obj!r}, {name!r}) is not a HistoryBuffer statistics '
        'method'
    )


def mmengine_checkpoint_safe_globals() -> list:
    """The exact list of non-tensor globals an mmengine 0.10.x checkpoint contains.

    Returns:
        Items for :func:`torch.serialization.add_safe_globals`: ``HistoryBuffer``, numpy's array,
        dtype and scalar reconstruction, and ``builtins.getattr`` bound to
        :func:`_history_buffer_method` (restricted to ``HistoryBuffer`` statistics methods).
    """
    from mmengine.logging.history_buffer import HistoryBuffer

    return [HistoryBuffer, *_numpy_globals(), (_history_buffer_method, 'builtins.getattr')]


_ALLOWED = False


def allow_mmengine_checkpoint_types() -> None:
    """Add mmengine's checkpoint types to torch's ``weights_only`` allow-list (idempotent).

    Only the types of :func:`mmengine_checkpoint_safe_globals` are allowed; the unpickler stays
    in ``weights_only`` mode for everything else.
    """
    global _ALLOWED
    if _ALLOWED:
        return
    torch.serialization.add_safe_globals(mmengine_checkpoint_safe_globals())
    _ALLOWED = True


def safe_load_checkpoint(path: str, map_location: str | torch.device = 'cpu') -> Any:
    """Load a checkpoint with ``weights_only=True`` and mmengine's types allowed.

    Args:
        path: Local checkpoint file.
        map_location: As in :func:`torch.load`.

    Returns:
        The unpickled checkpoint (usually a dict with ``state_dict``, ``meta``, ...).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsafeCheckpointError: The file holds a pickled global outside the allow-list.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {path!r}; check the path')
    allow_mmengine_checkpoint_types()
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise unsafe_checkpoint_error(path, err) from None


def check_checkpoint_globals(path: str) -> None:
    """Refuse a checkpoint early, without loading its tensors, if it pickles unknown globals.

    Reads only the pickle stream (:func:`torch.serialization.get_unsafe_globals_in_checkpoint`),
    so the tools can reject a bad file before building a model and a dataset.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsafeCheckpointError: Globals outside torch's and mmengine's allow-lists were found.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {path!r}; check the path')
    allowed = {
        item[1] if isinstance(item, tuple) else f'{item.__module__}.{item.__qualname__}'
        for item in mmengine_checkpoint_safe_globals()
    }
    allowed |= {
        'numpy.core.multiarray._reconstruct',
        'numpy.core.multiarray.scalar',
        'numpy._core.multiarray._reconstruct',
        'numpy._core.multiarray.scalar',
    }
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as err:  # noqa: BLE001  (not a torch zip checkpoint: let torch.load judge)
        del err
        return
    bad = sorted(g for g in found if g not in allowed and not g.startswith('numpy.dtypes.'))
    if bad:
        raise UnsafeCheckpointError(
            f'refused to load checkpoint {path!r}: it pickles globals outside the allowed types '
            f'({", ".join(bad[:5])}). Only load checkpoints from sources you trust.'
        )


def unsafe_checkpoint_error(path: str, err: BaseException) -> UnsafeCheckpointError:
    """Build the one-line error for a checkpoint refused by the weights-only unpickler."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    globals_ = [ln for ln in lines if 'GLOBAL' in ln or 'Unsupported global' in ln]
    detail = (globals_ or lines or [type(err).__name__])[0]
    return UnsafeCheckpointError(
        f'refused to load checkpoint {path!r}: it contains pickled objects outside the allowed '
        f'types ({detail}). Only load checkpoints from sources you trust; if this one is trusted '
        'and written by a newer mmengine, re-save its state_dict with plain tensors.'
    )
