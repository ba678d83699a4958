"""SAC (thesis Eq. 6.4, Fig. 6-5), ConvAWS and the plain-PyTorch deformable convolution.

Expected values come from a straightforward re-implementation of the chapter's equations written
here (plain ``F.conv2d``, explicit pooling and sums, bilinear sampling by hand), and from mmcv's
compiled ``SAC`` / ``deform_conv2d`` where the checks are about matching mmcv.
"""

import pytest
import torch
import torch.nn.functional as F

from mmvideoeq.models.layers import ConvAWS2d, SwitchableAtrousConv, deform_conv2d_torch
from mmvideoeq.testing.detectors import randomize_


def _standardize(w, gamma, beta):
    """ConvAWS weight standardisation: per output filter, unbiased variance + 1e-5."""
    flat = w.reshape(w.shape[0], -1)
    mean = flat.mean(1).view(-1, 1, 1, 1)
    std = torch.sqrt(flat.var(1) + 1e-5).view(-1, 1, 1, 1)
    return gamma * (w - mean) / std + beta


def _sac_reference(m, x):
    """Eq. 6.4 with the two global-context modules, no deformable conv, written out."""
    stride, rate = m.stride, m.atrous_rate
    if m.global_context:
        g = x.mean(dim=(2, 3), keepdim=True)
        x = x + F.conv2d(g, m.pre_context.weight, m.pre_context.bias)
    # switch: 5x5 average pooling (reflect-padded) then a 1x1 conv
    pooled = F.avg_pool2d(F.pad(x, (2, 2, 2, 2), mode='reflect'), 5, stride=1)
    s = F.conv2d(pooled, m.switch.weight, m.switch.bias, stride=stride)
    w = _standardize(m.weight, m.weight_gamma, m.weight_beta)
    y_small = F.conv2d(x, w, None, stride, m.padding, m.dilation)
    w_large = w + m.weight_diff if m.weight_locking else m.weight_diff
    pad = tuple(rate * p for p in m.padding)
    dil = tuple(rate * d for d in m.dilation)
    y_large = F.conv2d(x, w_large, None, stride, pad, dil)
    if m.dual_switch:
        s2 = F.conv2d(pooled, m.switch_l.weight, m.switch_l.bias, stride=stride)
        out = s * y_small + s2 * y_large
    else:
        out = s * y_small + (1 - s) * y_large
    if m.global_context:
        g = out.mean(dim=(2, 3), keepdim=True)
        out = out + F.conv2d(g, m.post_context.weight, m.post_context.bias)
    return out


def _randomize(m, seed=0):
    return randomize_(m, seed, scale=0.3)


@pytest.mark.parametrize(
    'options',
    [
        dict(),
        dict(global_context=False),
        dict(weight_locking=False),
        dict(dual_switch=True),
        dict(atrous_rate=2),
    ],
    ids=['sac', 'no-global', 'no-locking', 'dual-switch', 'rate2'],
)
@pytest.mark.parametrize('stride', [1, 2])
def test_sac_matches_equation(options, stride):
    torch.manual_seed(0)
    m = _randomize(SwitchableAtrousConv(6, 8, 3, stride=stride, padding=1, bias=False, **options))
    x = torch.randn(2, 6, 11, 13)
    torch.testing.assert_close(m(x), _sac_reference(m, x), rtol=1e-5, atol=1e-5)


def test_sac_init_is_the_plain_convolution():
    """Sec. 6.4.4: with the chapter's initialisation SAC computes Conv(x, w, 1) exactly."""
    torch.manual_seed(0)
    for opts in (dict(), dict(use_deform=True, deform_impl='torch'), dict(dual_switch=True)):
        m = SwitchableAtrousConv(4, 4, 3, padding=1, bias=False, **opts)
        x = torch.randn(1, 4, 9, 9)
        w = _standardize(m.weight, m.weight_gamma, m.weight_beta)
        torch.testing.assert_close(m(x), F.conv2d(x, w, None, 1, 1), rtol=1e-5, atol=1e-5)
        assert m.switch.weight.abs().sum() == 0 and m.switch.bias.item() == 1
        assert m.weight_diff.abs().sum() == 0


def test_sac_weight_locking_shares_w():
    """With locking, a change of w moves both branches; without, the large branch ignores w."""
    torch.manual_seed(0)
    x = torch.randn(1, 4, 9, 9)
    for locking in (True, False):
        m = _randomize(SwitchableAtrousConv(4, 4, 3, padding=1, bias=False, weight_locking=locking))
        with torch.no_grad():
            m.switch.weight.zero_()
            m.switch.bias.zero_()  # S = 0: only the large-rate branch
            if m.global_context:
                m.pre_context.weight.zero_()
                m.post_context.weight.zero_()
            before = m(x)
            m.weight.add_(torch.randn_like(m.weight))
            changed = not torch.allclose(before, m(x))
        assert changed == locking


def test_sac_rejects_non_3x3():
    with pytest.raises(ValueError, match='3x3'):
        SwitchableAtrousConv(4, 4, 1)
    with pytest.raises(ValueError, match='3x3'):
        SwitchableAtrousConv(4, 4, (3, 5))


def _bilinear_zero(img, y, x):
    """Bilinear sample of ``img (C, H, W)`` at real (y, x), zero outside (mmcv's DCN rule)."""
    c, h, w = img.shape
    y0, x0 = int(torch.floor(torch.tensor(y))), int(torch.floor(torch.tensor(x)))
    out = torch.zeros(c, dtype=img.dtype)
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                out += wy * wx * img[:, yy, xx]
    return out


def test_deform_conv_torch_matches_definition():
    """DCN (Dai et al. 2017): y(p) = sum_k w_k x(p0 + p_k + dp_k), sampled bilinearly."""
    torch.manual_seed(0)
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    off = torch.randn(1, 18, 5, 6, dtype=torch.float64) * 1.5
    out = deform_conv2d_torch(x, off, w, stride=1, padding=1, dilation=1)
    ref = torch.zeros(1, 3, 5, 6, dtype=torch.float64)
    for oy in range(5):
        for ox in range(6):
            acc = torch.zeros(3, dtype=torch.float64)
            for i in range(3):
                for j in range(3):
                    k = i * 3 + j
                    py = oy - 1 + i + off[0, 2 * k, oy, ox].item()
                    px = ox - 1 + j + off[0, 2 * k + 1, oy, ox].item()
                    acc += w[:, :, i, j] @ _bilinear_zero(x[0], py, px)
            ref[0, :, oy, ox] = acc
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize('case', [(1, 1, 1, 1, 1), (2, 3, 3, 2, 2)], ids=['plain', 'strided'])
def test_deform_conv_torch_matches_mmcv(case):
    ops = pytest.importorskip('mmcv.ops')
    stride, pad, dil, groups, dgroups = case
    torch.manual_seed(0)
    x = torch.randn(2, 8, 10, 9)
    w = torch.randn(8, 8 // groups, 3, 3)
    ho = (10 + 2 * pad - dil * 2 - 1) // stride + 1
    wo = (9 + 2 * pad - dil * 2 - 1) // stride + 1
    off = torch.randn(2, 18 * dgroups, ho, wo) * 2
    ref = ops.deform_conv2d(x, off, w, stride, pad, dil, groups, dgroups)
    out = deform_conv2d_torch(x, off, w, stride, pad, dil, groups, dgroups)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('deform', [False, True])
def test_sac_loads_mmcv_sac_and_matches_it(deform):
    ops = pytest.importorskip('mmcv.ops')
    torch.manual_seed(0)
    ref = _randomize(ops.SAConv2d(8, 8, 3, stride=2, padding=1, bias=False, use_deform=deform))
    mine = SwitchableAtrousConv(
        8, 8, 3, stride=2, padding=1, bias=False, use_deform=deform, deform_impl='torch'
    )
    mine.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 8, 13, 11)
    torch.testing.assert_close(mine(x), ref(x), rtol=1e-4, atol=1e-4)


def test_deform_conv_torch_gradients_match_mmcv():
    ops = pytest.importorskip('mmcv.ops')
    torch.manual_seed(0)
    x = torch.randn(2, 4, 7, 8, requires_grad=True)
    w = torch.randn(6, 4, 3, 3, requires_grad=True)
    off = (torch.randn(2, 18, 7, 8) * 1.5).requires_grad_()
    g = torch.randn(2, 6, 7, 8)
    grads = []
    for fn in (ops.deform_conv2d, deform_conv2d_torch):
        out = fn(x, off, w, 1, 1, 1, 1, 1)
        grads.append(torch.autograd.grad(out, (x, off, w), g))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)


def _random_aws(cls, dtype=torch.float32):
    torch.manual_seed(0)
    m = cls(6, 5, 3, padding=1, bias=True).to(dtype)
    with torch.no_grad():
        m.weight.normal_(0.1, 0.3)
        m.weight_gamma.uniform_(0.5, 2.0)
        m.weight_beta.normal_(0, 0.1)
    return m


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_conv_aws_equals_mmcv_conv_aws(dtype):
    from mmcv.cnn import ConvAWS2d as MMCVConvAWS2d

    ref, mine = _random_aws(MMCVConvAWS2d, dtype), _random_aws(ConvAWS2d, dtype)
    mine.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 6, 9, 7, dtype=dtype, requires_grad=True)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    out_ref, out = ref(x), mine(x)
    torch.testing.assert_close(out, out_ref, **tol)
    w = mine.weight
    torch.testing.assert_close(
        mine.standardised_weight(), _standardize(w, mine.weight_gamma, mine.weight_beta), **tol
    )
    g = torch.randn_like(out)
    grads_ref = torch.autograd.grad(out_ref, [x, ref.weight, ref.bias], g)
    grads = torch.autograd.grad(out, [x, mine.weight, mine.bias], g)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, **tol)


def test_conv_aws_cache_follows_the_parameters():
    from mmcv.cnn import ConvAWS2d as MMCVConvAWS2d

    m = _random_aws(ConvAWS2d).eval()
    x = torch.randn(1, 6, 8, 8)

    def expected():
        w = _standardize(m.weight, m.weight_gamma, m.weight_beta)
        return F.conv2d(x, w, m.bias, padding=1)

    with torch.no_grad():
        w0 = m.standardised_weight()
        assert m.standardised_weight() is w0  # kept between calls
        m.weight.add_(0.5)  # an in-place update (an optimizer step)
        assert m.standardised_weight() is not w0
        torch.testing.assert_close(m(x), expected(), rtol=1e-5, atol=1e-5)
        m.weight_gamma.mul_(2.0)
        torch.testing.assert_close(m(x), expected(), rtol=1e-5, atol=1e-5)
        other = _random_aws(MMCVConvAWS2d)
        other.weight.normal_(0, 1)
        m.load_state_dict(other.state_dict())
        torch.testing.assert_close(m(x), other(x), rtol=1e-5, atol=1e-5)
        w1 = m.standardised_weight()
    m.train()
    assert m._cache is None
    m.eval()
    with torch.no_grad():
        assert m.standardised_weight() is not w1
    out = m(x)  # autograd on: never the cached tensor
    assert out.requires_grad and m.standardised_weight().requires_grad


def test_configs_build_the_project_conv_aws():
    from mmcv.cnn import build_conv_layer
    from mmengine.registry import DefaultScope

    from mmvideoeq.utils import register_all_modules

    register_all_modules()
    with DefaultScope.overwrite_default_scope('mmvideoeq'):
        layer = build_conv_layer(dict(type='ConvAWS'), 4, 4, 3)
    assert type(layer) is ConvAWS2d


def test_conv_aws_cache_from_inference_mode_is_not_reused_under_autograd():
    m = _random_aws(ConvAWS2d).eval()
    m.weight.requires_grad_(False)  # a frozen stage: the cache is used with autograd on
    x = torch.randn(1, 6, 8, 8)
    with torch.inference_mode():
        m(x)
    x.requires_grad_(True)
    m(x).sum().backward()  # an inference tensor saved for backward would raise here
    assert x.grad is not None
