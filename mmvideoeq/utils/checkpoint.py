"""Loading mmengine checkpoints under torch's ``weights_only`` unpickler, safely.

torch >= 2.6 loads with ``weights_only=True``. mmengine 0.10.7 checkpoints carry a message hub
(``HistoryBuffer`` objects holding numpy arrays) and numpy scalars in ``meta``, which that
unpickler refuses. Rather than switching the protection off (``weights_only=False`` or
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``), we add to torch's allow-list exactly the types mmengine
writes: ``mmengine.logging.HistoryBuffer`` and the numpy reconstruction helpers, array and dtype
types. Any other global in a checkpoint (a pickled callable, a class of unknown code) is still
refused by torch; :func:`safe_load_checkpoint` turns that refusal into a one-line error.

Every load passes ``weights_only=True`` explicitly, so ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` in the
environment cannot switch the protection off (torch lets that variable override only calls that
leave ``weights_only`` unset). :mod:`.checkpoint_schemes` routes every scheme of mmengine's
``CheckpointLoader`` (local files, URLs, ``torchvision://``, ...) through
:func:`safe_load_checkpoint`. A file that is empty, text, truncated or a TorchScript archive
gets its own message (:class:`CheckpointFileError`), never the advice given for a refused
pickle. :func:`check_weights` refuses a checkpoint that leaves model parameters missing (an
evaluation on random weights), unless the caller allows it; :func:`check_finite` one with NaN or
infinite weights.
"""

from __future__ import annotations

import os
import pickle
import re
import sys
import zipfile
from typing import Any

import numpy as np
import torch


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint holds pickled objects outside the allow-list; it was not loaded."""


class CheckpointFileError(ValueError):
    """A checkpoint file is empty, text, truncated, corrupt or not a state dict."""


class CheckpointDownloadError(FileNotFoundError):
    """A URL checkpoint is not in the torch hub cache and could not be downloaded."""


class NonFiniteWeightsError(ValueError):
    """A checkpoint holds NaN or infinite weights."""


class MissingWeightsError(ValueError):
    """A checkpoint does not cover the model's parameters."""


class WeightsShapeError(ValueError):
    """A checkpoint's tensors do not have the model's shapes (another architecture)."""


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


def _file_kind(path: str) -> str | None:
    """``'empty'``, ``'text'``, ``'torchscript'`` or ``None`` (looks like a checkpoint)."""
    if os.path.getsize(path) == 0:
        return 'empty'
    with open(path, 'rb') as f:
        head = f.read(512)
    if head.startswith(b'PK'):
        try:
            with zipfile.ZipFile(path) as z:
                infos = z.infolist()
        except zipfile.BadZipFile:
            return None  # a truncated archive: torch.load reports it
        names = [i.filename for i in infos]
        if any(n.endswith(('/constants.pkl', '/code/')) or '/code/' in n for n in names):
            return 'torchscript'
        if len(infos) == 1 and not infos[0].is_dir():  # torch.hub's "legacy zip format"
            return 'zipped'
        return None
    if head[:1] == b'\x80':  # a pickle stream (torch's legacy format)
        return None
    try:
        head.decode('utf-8')
    except UnicodeDecodeError:
        return None
    return 'text'


_KIND_MESSAGES = {
    'empty': 'is an empty file (0 bytes): the download or copy did not complete',
    'text': 'is a text file, not a checkpoint (an error page or a config saved under a .pth '
    'name?)',
    'torchscript': 'is a TorchScript archive (torch.jit.save), not a state dict; export the '
    "model's state_dict() with torch.save instead",
    'zipped': 'is a zip archive holding one file (the torch < 1.6 zipped format); unzip it and '
    'give the file inside',
}


def safe_load_checkpoint(
    path: str, map_location: str | torch.device = 'cpu', *, source: str | None = None
) -> Any:
    """Load a checkpoint with ``weights_only=True`` and mmengine's types allowed.

    Args:
        path: Local checkpoint file.
        map_location: As in :func:`torch.load`.
        source: How messages name the checkpoint (its URL when ``path`` is a downloaded copy);
            defaults to ``path``.

    Returns:
        The unpickled checkpoint (usually a dict with ``state_dict``, ``meta``, ...).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointFileError: The file is empty, text, a TorchScript archive, truncated or
            corrupt.
        UnsafeCheckpointError: The file holds a pickled global outside the allow-list.
    """
    path = os.path.expanduser(str(path))
    name = path if source is None else source
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {path!r}; check the path')
    kind = _file_kind(path)
    if kind is not None:
        raise CheckpointFileError(f'checkpoint {name!r} {_KIND_MESSAGES[kind]}')
    allow_mmengine_checkpoint_types()
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if _names_real_global(str(err)):
            raise unsafe_checkpoint_error(name, err) from None
        raise _corrupt(name, err) from None
    except (EOFError, RuntimeError, zipfile.BadZipFile, OSError) as err:
        raise _corrupt(name, err) from None


def _names_real_global(message: str) -> bool:
    """Whether a refusal names a global that exists (an unsafe pickle) rather than a name cut
    short by a truncated file (``GLOBAL torch._utils._rebui``) or a garbled opcode stream.

    Nothing is imported: a name counts as cut short only when its module is already imported
    and lacks the attribute; any other name (real, or of a module not imported or installed)
    is treated as an unsafe global.
    """
    match = re.search(r'GLOBAL ([\w.]+)', message)
    if match is None:
        return False
    parts = match.group(1).split('.')
    for i in range(len(parts) - 1, 0, -1):
        module = sys.modules.get('.'.join(parts[:i]))
        if module is not None:
            obj = module
            for attr in parts[i:]:
                if not hasattr(obj, attr):
                    return False
                obj = getattr(obj, attr)
            return True
    return True


def _corrupt(path: str, err: BaseException) -> CheckpointFileError:
    if isinstance(err, pickle.UnpicklingError):
        first = 'its pickle stream ends early or is garbled'
    else:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
    return CheckpointFileError(
        f'checkpoint {path!r} is truncated or corrupt and cannot be read ({first}); copy or '
        'download it again'
    )


def state_dict_of(checkpoint: Any) -> dict:
    """The state dict inside a loaded checkpoint (``state_dict`` key, or the dict itself), with
    the ``module.`` prefix of wrapped models removed as mmengine does."""
    state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise CheckpointFileError(
            f'the checkpoint holds a {type(checkpoint).__name__}, not a state dict'
        )
    return {(k[len('module.') :] if k.startswith('module.') else k): v for k, v in state.items()}


def check_weights(
    model: torch.nn.Module,
    checkpoint: Any,
    *,
    allow_missing: bool = False,
    source: str = 'the checkpoint',
) -> list[str]:
    """Refuse a checkpoint that leaves parameters of ``model`` missing or mis-shaped.

    Args:
        model: The model (a wrapped model's ``module`` is used).
        checkpoint: The loaded checkpoint (or its state dict).
        allow_missing: Only warn about missing weights (the caller evaluates random weights on
            purpose).
        source: Name of the checkpoint in messages.

    Returns:
        list[str]: The missing keys (empty when complete).

    Raises:
        MissingWeightsError: Missing parameters or buffers (unless ``allow_missing``).
        WeightsShapeError: A tensor whose shape differs from the model's.
    """
    model = getattr(model, 'module', model)
    state = state_dict_of(checkpoint)
    own = model.state_dict()
    mismatched = [
        f'{k}: {tuple(state[k].shape)} vs model {tuple(v.shape)}'
        for k, v in own.items()
        if k in state and hasattr(state[k], 'shape') and tuple(state[k].shape) != tuple(v.shape)
    ]
    if mismatched:
        raise WeightsShapeError(
            f'{source} does not fit the model: {len(mismatched)} tensor(s) of another shape '
            f'({"; ".join(mismatched[:3])}); check that the config is the one it was trained with'
        )
    missing = [k for k in own if k not in state and not k.endswith('num_batches_tracked')]
    if missing and not allow_missing:
        what = (
            'holds no weights at all'
            if not state
            else (
                f'leaves {len(missing)} of the model\'s {len(own)} tensors missing '
                f'({", ".join(missing[:3])}{", ..." if len(missing) > 3 else ""})'
            )
        )
        raise MissingWeightsError(
            f'{source} {what}: the model would run on random weights. Use the checkpoint '
            'trained with this config, or pass --allow-missing-weights to evaluate anyway'
        )
    return missing


def nonfinite_tensors(state: dict) -> list[str]:
    """Keys of the floating-point tensors of ``state`` that hold a NaN or an infinity."""
    return [
        k
        for k, v in state.items()
        if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]


def check_finite(checkpoint: Any, *, source: str = 'the checkpoint') -> None:
    """Refuse a checkpoint whose floating-point tensors hold NaN or infinite values.

    Such weights make every frame diverge (non-finite residuals) and every metric empty.

    Args:
        checkpoint: The loaded checkpoint (or its state dict).
        source: Name of the checkpoint in messages.

    Raises:
        NonFiniteWeightsError: Naming the tensors (the first five) and how many there are.
    """
    bad = nonfinite_tensors(state_dict_of(checkpoint))
    if bad:
        raise NonFiniteWeightsError(
            f'{source} holds non-finite (NaN/inf) values in {len(bad)} tensor(s) '
            f'({", ".join(bad[:5])}{", ..." if len(bad) > 5 else ""}): the model cannot give '
            'finite outputs. Use an earlier checkpoint, or evaluate it anyway with '
            'tools/test.py --allow-nonfinite-weights'
        )


def load_weights(model: torch.nn.Module, path: str, *, allow_missing: bool = False) -> dict:
    """Load a checkpoint (a local file, or a URL or other scheme of
    :func:`~.checkpoint_schemes.load_checkpoint_weights_only`) into ``model`` safely and
    completely (see :func:`check_weights`).

    Returns:
        dict: The loaded checkpoint (its ``meta`` is often useful).
    """
    from .checkpoint_schemes import load_checkpoint_weights_only

    ckpt = load_checkpoint_weights_only(path)
    check_weights(model, ckpt, allow_missing=allow_missing, source=f'checkpoint {path!r}')
    getattr(model, 'module', model).load_state_dict(state_dict_of(ckpt), strict=False)
    return ckpt if isinstance(ckpt, dict) else {}


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
