"""Tests of the optional native residual kernel (``mmvideoeq.deq.native``): it agrees with the
plain-PyTorch path and with a float64 reference, the fixed-point solver uses it, and every way it
can be unavailable falls back with one clear warning."""

from __future__ import annotations

import os
import shutil
import warnings

import pytest
import torch

from mmvideoeq.deq import native, solve
from mmvideoeq.deq import solvers as solvers_module
from mmvideoeq.deq.solvers import _residual_into
from mmvideoeq.deq.utils import StateLayout

SHAPES = [(4, 8, 8), (8, 4, 4), (16, 2, 3)]
HAVE_CC = shutil.which(os.environ.get('CC', 'cc')) is not None
needs_cc = pytest.mark.skipif(not HAVE_CC, reason='no C compiler: the kernel cannot be built')


def _state(batch: int, dtype: torch.dtype, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, *s, generator=g, dtype=dtype) for s in SHAPES]


@pytest.fixture(autouse=True)
def kernel_allowed(monkeypatch):
    """These tests are about the kernel: a user's MMVIDEOEQ_NATIVE=0 must not turn them off."""
    monkeypatch.delenv('MMVIDEOEQ_NATIVE', raising=False)


@pytest.fixture
def fresh_native(tmp_path, monkeypatch):
    """A private build cache and a forgotten library; restored afterwards."""
    monkeypatch.setenv('MMVIDEOEQ_CACHE_DIR', str(tmp_path))
    native.reset()
    yield tmp_path
    native.reset()


@needs_cc
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('batch', [1, 3])
def test_kernel_matches_torch_path_and_float64_reference(dtype, batch):
    fx, x = _state(batch, dtype, 0), _state(batch, dtype, 1)
    x[1] = fx[1] + 1e-4 * x[1]  # a scale close to convergence: the difference must be exact
    got = native.residual_norms(fx, x, dtype)
    assert got is not None, native._STATE['error']
    layout = StateLayout(x)
    buf = torch.empty(layout.batch, layout.dim, dtype=dtype)
    ref_torch = _residual_into(fx, x, buf, layout, dtype, pack=False)
    # float64 reference of the same values, computed independently of both paths
    d64 = torch.cat([(a.double() - z.double()).reshape(batch, -1) for a, z in zip(fx, x)], 1)
    f64 = torch.cat([a.double().reshape(batch, -1) for a in fx], 1)
    ref64 = (d64.norm(dim=1), f64.norm(dim=1))
    for g, t, r in zip(got, ref_torch, ref64):
        assert g.dtype == dtype and g.shape == (batch,)
        torch.testing.assert_close(
            g.double(), r, rtol=1e-12 if dtype == torch.float64 else 1e-7, atol=0
        )
        torch.testing.assert_close(g, t, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=0)


@needs_cc
@pytest.mark.parametrize('layout', ['channels_last', 'permuted'])
def test_kernel_accepts_dense_sample_layouts(layout):
    fx, x = _state(3, torch.float32, 0), _state(3, torch.float32, 1)
    if layout == 'channels_last':
        fx = [t.contiguous(memory_format=torch.channels_last) for t in fx]
        x = [t.contiguous(memory_format=torch.channels_last) for t in x]
    else:  # (B, C, H, W) stored as (B, H, C, W)
        fx = [t.permute(0, 2, 1, 3).contiguous().permute(0, 2, 1, 3) for t in fx]
        x = [t.permute(0, 2, 1, 3).contiguous().permute(0, 2, 1, 3) for t in x]
    assert not fx[0].is_contiguous()
    got = native.residual_norms(fx, x, torch.float32)
    assert got is not None
    d = torch.cat([(a.double() - z.double()).reshape(3, -1) for a, z in zip(fx, x)], 1)
    torch.testing.assert_close(got[0].double(), d.norm(dim=1), rtol=1e-7, atol=0)


@needs_cc
def test_kernel_reads_aliased_inputs():
    fx = _state(2, torch.float32, 0)
    got = native.residual_norms(fx, fx, torch.float32)
    assert got is not None
    assert got[0].tolist() == [0.0, 0.0]
    expect = torch.cat([a.reshape(2, -1) for a in fx], 1).double().norm(dim=1).float()
    torch.testing.assert_close(got[1], expect, rtol=1e-6, atol=0)


@needs_cc
@pytest.mark.parametrize(
    'case',
    [
        'strided',
        'layout_mismatch',
        'batch_inner',
        'dtype_mismatch',
        'shape_mismatch',
        'half',
        'length',
    ],
)
def test_not_applicable_returns_none(case):
    fx, x = _state(2, torch.float32, 0), _state(2, torch.float32, 1)
    # the same tensors before the change are accepted: None below is the check, not a missing kernel
    assert native.residual_norms(fx, x, torch.float32) is not None
    if case == 'strided':  # every other column: samples are not dense blocks
        fx[0], x[0] = fx[0][..., ::2], x[0][..., ::2]
    elif case == 'layout_mismatch':  # same values, different element order
        x[0] = x[0].contiguous(memory_format=torch.channels_last)
    elif case == 'batch_inner':  # dense overall, but a sample is not one block
        fx[0] = fx[0].transpose(0, 1).contiguous().transpose(0, 1)
        x[0] = x[0].transpose(0, 1).contiguous().transpose(0, 1)
    elif case == 'dtype_mismatch':
        x[1] = x[1].double()
    elif case == 'shape_mismatch':
        x[2] = x[2][:, :, :1]
    elif case == 'half':
        fx, x = [t.half() for t in fx], [t.half() for t in x]
    elif case == 'length':
        x = x[:2]
    assert native.residual_norms(fx, x, torch.float32) is None


def test_disabled_by_environment(monkeypatch, fresh_native):
    monkeypatch.setenv('MMVIDEOEQ_NATIVE', '0')
    fx, x = _state(1, torch.float32, 0), _state(1, torch.float32, 1)
    assert native.residual_norms(fx, x, torch.float32) is None
    assert not list(fresh_native.rglob('*.so'))  # nothing was built


@pytest.mark.parametrize('cc', ['/nonexistent/cc', 'false'])
def test_unavailable_compiler_warns_once_and_solver_falls_back(cc, monkeypatch, fresh_native):
    monkeypatch.setenv('CC', cc)
    fx, x = _state(1, torch.float32, 0), _state(1, torch.float32, 1)
    with pytest.warns(native.NativeKernelWarning, match='MMVIDEOEQ_NATIVE=0'):
        assert native.residual_norms(fx, x, torch.float32) is None
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # the failure is remembered: no second warning
        assert native.residual_norms(fx, x, torch.float32) is None

        def f(z):
            return [0.5 * t + 1 for t in z]

        z, stats = solve(f, x, method='fixed_point', max_iter=4, tol=None)
    torch.testing.assert_close(z[0], 0.5 * (0.5 * (0.5 * (0.5 * x[0] + 1) + 1) + 1) + 1)
    assert stats.n_eval == 4


@needs_cc
def test_build_is_cached(fresh_native):
    assert native.load() is not None
    built = list(fresh_native.rglob('*.so'))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    native.reset()
    assert native.load() is not None
    assert list(fresh_native.rglob('*.so')) == built
    assert built[0].stat().st_mtime_ns == stamp


@needs_cc
@pytest.mark.parametrize('tol', [None, 1e-4])
def test_fixed_point_uses_kernel_and_matches_torch_path(tol, monkeypatch):
    g = torch.Generator().manual_seed(3)
    mats = [0.3 * torch.randn(s[0], s[0], generator=g) / s[0] ** 0.5 for s in SHAPES]
    inj = _state(2, torch.float32, 4)

    def f(z):  # 1x1 convolutions: contiguous outputs, as MDEQ's layer gives
        conv = torch.nn.functional.conv2d
        return [torch.tanh(conv(t, w[:, :, None, None]) + c) for w, t, c in zip(mats, z, inj)]

    z0 = [torch.zeros_like(t) for t in inj]
    z_nat, s_nat = solve(f, z0, method='fixed_point', max_iter=12, tol=tol)
    with monkeypatch.context() as m:
        m.setenv('MMVIDEOEQ_NATIVE', '0')
        z_ref, s_ref = solve(f, z0, method='fixed_point', max_iter=12, tol=tol)
    for a, b in zip(z_nat, z_ref):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(s_nat.abs_trace, s_ref.abs_trace, rtol=1e-5, atol=0)
    torch.testing.assert_close(s_nat.rel_trace, s_ref.rel_trace, rtol=1e-5, atol=0)
    assert s_nat.nstep.tolist() == s_ref.nstep.tolist()

    def no_torch_path(*args, **kwargs):
        raise AssertionError('the fixed-point solver fell back to the PyTorch residual')

    monkeypatch.setattr(solvers_module, '_residual_into', no_torch_path)
    solve(f, z0, method='fixed_point', max_iter=3, tol=tol)


@needs_cc
def test_damaged_cache_entry_is_rebuilt(fresh_native):
    # build without loading (a library loaded by this process must not be overwritten), then
    # damage the cached file as an interrupted copy or a full disk would
    path = native._build(os.environ.get('CC', 'cc'))
    with open(path, 'wb') as fh:
        fh.write(b'not a shared library')
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # rebuilt silently, no fallback warning
        assert native.load() is not None
    with open(path, 'rb') as fh:
        assert fh.read(4) == b'\x7fELF'
