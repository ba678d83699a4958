"""Optional native kernel of the DEQ core: fused residual norms on CPU (C, loaded with ctypes).

Why a kernel by hand: the fixed-point solver needs, per sample and step, ``||f(z) - z||`` and
``||f(z)||`` (the statistics contract of :func:`~mmvideoeq.deq.solvers.solve`). PyTorch has no
reduction of a difference that does not materialise ``f(z) - z`` first (``torch.dist``,
``vector_norm(a - b)`` and ``mse_loss`` write a temporary; ``cdist`` does not, but runs one
thread per output and measured no faster), so the residual reads ``z`` and ``f(z)``, writes and
re-reads the difference and reads ``f(z)`` once more. The state is cold there (``f`` streams its
weights through the cache in between), so this is memory traffic: for MDEQ-Small at 256x512
(1.97 MB of state) on the 2-core CPU, about 1.0 ms per step against ~70 ms for ``f``, the
largest part of the fixed-point overhead. The kernel (``csrc/residual_norms.c``) reads both
once and writes nothing: ~0.4 ms right after ``f`` with ``z`` warm, ~0.7 ms inside a real solve
where ``z`` comes from DRAM (against ~1.1 ms for the plain path there). Its sums are formed in
double, so it is at least as accurate as the float32 reductions it replaces.

It is plain C, compiled on first use with the system C compiler (``$CC``, default ``cc``) into
``$MMVIDEOEQ_CACHE_DIR/native`` (default ``~/.cache/mmvideoeq/native``), once per source and
compiler (about half a second), and loaded with :mod:`ctypes`: no PyTorch headers, no build
step at install time. Where no compiler is found or the build fails, a
:class:`NativeKernelWarning` is issued once and the solvers keep their plain-PyTorch path, with
identical results up to rounding. ``MMVIDEOEQ_NATIVE=0`` turns the kernel off.

The kernel is single-threaded: a second thread of its own competes with PyTorch's spinning
OpenMP workers (measured 8x slower on the 2-core CPU). So it is only used where one thread can
be expected to win: up to :data:`MAX_PARALLEL_THREADS` intra-op threads, or states of at most
:data:`MAX_SERIAL_NUMEL` elements. The limits are a judgement, not a measurement: only the
2-core machine was available, where the kernel was faster at every size tried.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import os.path as osp
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ['NativeKernelWarning', 'enabled', 'load', 'residual_norms', 'reset']

SOURCE = osp.join(osp.dirname(osp.abspath(__file__)), 'csrc', 'residual_norms.c')
ABI = 1  # must equal mmveq_residual_norms_abi() of the source
MAX_PARALLEL_THREADS = 4
MAX_SERIAL_NUMEL = 1 << 21
CFLAGS = ('-O3', '-fopenmp-simd', '-fPIC', '-shared')

_LOCK = threading.Lock()
_STATE: dict = {'tried': False, 'lib': None, 'error': None}


class NativeKernelWarning(UserWarning):
    """The native kernel could not be built or loaded; the plain-PyTorch path is used."""


def enabled() -> bool:
    """Whether the kernel may be used (``MMVIDEOEQ_NATIVE`` is not ``0``/``false``/``off``)."""
    value = os.environ.get('MMVIDEOEQ_NATIVE', '1').strip().lower()
    return value not in ('0', 'false', 'off', 'no')


def _cache_dir() -> str:
    root = os.environ.get('MMVIDEOEQ_CACHE_DIR') or osp.join(
        osp.expanduser('~'), '.cache', 'mmvideoeq'
    )
    path = osp.join(root, 'native')
    try:
        os.makedirs(path, exist_ok=True)
        if os.access(path, os.W_OK):
            return path
    except OSError:
        pass
    path = osp.join(tempfile.gettempdir(), f'mmvideoeq-native-{os.getuid()}')
    os.makedirs(path, exist_ok=True)
    return path


def _build(cc: str) -> str:
    """Compiles the source (if not cached) and returns the shared library's path."""
    with open(SOURCE, 'rb') as fh:
        source = fh.read()
    try:
        version = subprocess.run(
            [cc, '--version'], capture_output=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f'cannot run the C compiler {cc!r}: {exc}') from exc
    key = hashlib.sha256(
        b'\0'.join(
            [source, cc.encode(), version, ' '.join(CFLAGS).encode(), platform.machine().encode()]
        )
    ).hexdigest()[:16]
    out_dir = _cache_dir()
    lib = osp.join(out_dir, f'residual_norms-{key}.so')
    if osp.exists(lib):
        return lib
    # Build under a private name, then rename: concurrent builders never see a partial file.
    fd, tmp = tempfile.mkstemp(suffix='.so', dir=out_dir)
    os.close(fd)
    try:
        proc = subprocess.run(
            [cc, *CFLAGS, '-o', tmp, SOURCE], capture_output=True, text=True, timeout=120
        )
        if proc.returncode != 0:
            msg = (proc.stderr or proc.stdout).strip().splitlines()[:5]
            raise RuntimeError(f'{cc} failed ({proc.returncode}): ' + ' | '.join(msg))
        os.replace(tmp, lib)
    finally:
        if osp.exists(tmp):
            os.unlink(tmp)
    return lib


def load() -> ctypes.CDLL | None:
    """The loaded kernel library, building it on first call; ``None`` if unavailable.

    The first failure is reported once as a :class:`NativeKernelWarning` and remembered for the
    process (:func:`reset` forgets it).
    """
    if not enabled():
        return None
    if _STATE['tried']:
        return _STATE['lib']
    with _LOCK:
        if _STATE['tried']:
            return _STATE['lib']
        cc = os.environ.get('CC', 'cc')
        try:
            if shutil.which(cc) is None:
                raise RuntimeError(f'no C compiler {cc!r} on PATH (set CC to use another)')
            path = _build(cc)
            try:
                lib = ctypes.CDLL(path)
            except OSError:  # a damaged cache entry (e.g. a disk that filled up): build again
                os.unlink(path)
                lib = ctypes.CDLL(_build(cc))
            if lib.mmveq_residual_norms_abi() != ABI:
                raise RuntimeError('stale library: interface version mismatch')
            for name in ('mmveq_residual_norms_f32', 'mmveq_residual_norms_f64'):
                fn = getattr(lib, name)
                fn.argtypes = [
                    ctypes.c_void_p,
                    ctypes.c_void_p,
                    ctypes.c_int64,
                    ctypes.c_int64,
                    ctypes.c_void_p,
                ]
                fn.restype = None
            _STATE['lib'] = lib
        except Exception as exc:  # noqa: BLE001 - any failure means: use the torch path
            _STATE['error'] = str(exc)
            warnings.warn(
                f'mmvideoeq: the native residual kernel is unavailable ({exc}); the fixed-point '
                'solver uses its plain-PyTorch path (same results, about 0.6 ms more per '
                'iteration for MDEQ-Small at 256x512). Set MMVIDEOEQ_NATIVE=0 to silence this.',
                NativeKernelWarning,
                stacklevel=3,
            )
        _STATE['tried'] = True
        return _STATE['lib']


def reset() -> None:
    """Forgets the loaded library and any failure (the next use loads or builds again)."""
    with _LOCK:
        _STATE.update(tried=False, lib=None, error=None)


def _dense_rows(t: Tensor) -> bool:
    """Whether each sample ``t[b]`` fills the ``n`` elements from ``t[0]``'s start + ``b * n``
    (any dense layout, e.g. channels-last or a batch-outermost permutation): the kernel only
    needs each sample as one block, in the same element order as the other operand."""
    dims = sorted((st, sz) for st, sz in zip(t.stride()[1:], t.shape[1:]) if sz != 1)
    expect = 1
    for st, sz in dims:
        if st != expect:
            return False
        expect *= sz
    return t.shape[0] == 1 or t.stride(0) == expect


def residual_norms(
    fx: Sequence[Tensor], x: Sequence[Tensor], dtype: torch.dtype
) -> tuple[Tensor, Tensor] | None:
    """Per-sample ``(||fx - x||, ||fx||)`` over all scales, ``(B,)`` each in ``dtype``.

    ``fx`` and ``x`` are state lists (S tensors ``(B, ...)``). Returns ``None`` (the caller
    uses its PyTorch path) unless the kernel is loaded and every tensor is a float32 or float64
    CPU tensor whose samples are dense blocks (contiguous, or e.g. channels-last), ``x[s]`` of
    ``fx[s]``'s shape, dtype and strides, and the size is within the limits of the module
    docstring. Only reads the data (autograd is not involved).
    """
    first = fx[0]
    if first.device.type != 'cpu' or first.dtype not in (torch.float32, torch.float64):
        return None
    if len(fx) != len(x):
        return None
    numel = 0
    for a, z in zip(fx, x):
        if (
            a.dtype != first.dtype
            or z.dtype != first.dtype
            or a.shape != z.shape
            or a.device.type != 'cpu'
            or z.device.type != 'cpu'
            or a.stride() != z.stride()
            or not (a.is_contiguous() or _dense_rows(a))
        ):
            return None
        numel += a.numel()
    if torch.get_num_threads() > MAX_PARALLEL_THREADS and numel > MAX_SERIAL_NUMEL:
        return None
    lib = load()
    if lib is None:
        return None
    kern = (
        lib.mmveq_residual_norms_f32
        if first.dtype == torch.float32
        else lib.mmveq_residual_norms_f64
    )
    b = first.shape[0]
    out = torch.zeros(b, 2, dtype=torch.float64)
    ptr = out.data_ptr()
    for a, z in zip(fx, x):
        if a.numel():
            kern(a.data_ptr(), z.data_ptr(), a.numel() // b, b, ptr)
    norms = out.sqrt_().to(dtype)
    return norms[:, 0], norms[:, 1]
