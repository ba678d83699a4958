"""MDEQNet: shapes of the presets, convergence, warm starts, gradients and input checks."""

import pytest
import torch
from torch import nn

from mmvideoeq.deq import Budget
from mmvideoeq.deq.mdeq import MDEQ_PRESETS, MDEQNet, WNConv2d

TINY = dict(num_channels=(4, 8), expansion=2, num_groups=2, num_classes=5)


def tiny(**kw):
    cfg = dict(TINY)
    cfg.update(kw)
    return MDEQNet(arch='small', **cfg)


def make_contractive(net, gain=0.2, seed=123):
    """Turn a random tiny MDEQ into a contraction (for convergence tests).

    GroupNorm makes f scale-invariant, so a random MDEQ is not contractive. With a strong
    injection (kaiming stem), and a post-fusion GN whose output is ``0.2 * normalised + bias`` with
    an O(1) per-channel bias, the state stays near the bias and f's Jacobian is ~0.2x smaller.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in list(net.stem) + list(net.injection):
            if isinstance(m, nn.Conv2d):
                m.weight.copy_(
                    torch.randn(m.weight.shape, generator=g) * (2.0 / m.weight[0].numel()) ** 0.5
                )
        for post in net.layer.post_fuse_layers:
            post.gnorm.weight.fill_(gain)
            post.gnorm.bias.copy_(torch.randn(post.gnorm.bias.shape, generator=g))
    return net


def layer_param_count(c, e):
    """Parameters of f_theta from the reference's module list (one block per branch)."""
    n = 0
    s = len(c)
    for ci in c:
        n += 2 * 9 * e * ci * ci + e * ci + ci  # conv1/conv2 weight_v + weight_g
        n += 2 * e * ci + 2 * ci + 2 * ci  # gn1, gn2, gn3
        n += ci * ci + ci + 2 * ci  # post-fusion conv (v, g) + gnorm
    for i in range(s):
        for j in range(s):
            if j > i:  # upsample j -> i: 1x1 conv + GN
                n += c[j] * c[i] + 2 * c[i]
            elif j < i:  # downsample: (i-j-1) x (C_j -> C_j) + C_j -> C_i
                n += (i - j - 1) * (9 * c[j] * c[j] + 2 * c[j]) + 9 * c[j] * c[i] + 2 * c[i]
    return n


@pytest.mark.parametrize('arch', ['small', 'xl'])
def test_preset_shapes_and_layer_size(arch):
    torch.manual_seed(0)
    net = MDEQNet(arch=arch, task='cls', deq_cfg=dict(solver='fixed_point')).eval()
    chans = {'small': (32, 64, 128, 256), 'xl': (88, 176, 352, 704)}[arch]
    exp = {'small': 4, 'xl': 6}[arch]
    assert net.num_channels == chans
    assert sum(p.numel() for p in net.layer.parameters()) == layer_param_count(chans, exp)
    assert net.deq.test_max_iter == {'small': 24, 'xl': 27}[arch]
    x = torch.randn(1, 3, 32, 64)
    n_iter = {'small': 3, 'xl': 1}[arch]  # XL: 90M parameters, one iteration is enough here
    with torch.no_grad():
        out = net.forward_features(x, budget=Budget(n_iter, 0.0, 'lowest'))
        logits = net.cls_head(out.features)
    assert [tuple(f.shape) for f in out.features] == [
        (1, chans[0], 8, 16),
        (1, chans[1], 4, 8),
        (1, chans[2], 2, 4),
        (1, chans[3], 1, 2),
    ]
    assert out.stats.abs_trace.shape == (1, n_iter)  # exactly n_iter iterations
    assert logits.shape == (1, 1000) and torch.isfinite(logits).all()


def test_seg_preset_head_and_settings():
    torch.manual_seed(0)
    net = MDEQNet(
        arch='xl',
        task='seg',
        num_channels=(8, 16, 16, 32),
        num_groups=4,
        deq_cfg=dict(solver='fixed_point'),
    ).eval()
    assert net.layer.branches[0].blocks[0].drop.p == pytest.approx(0.04)  # XL Cityscapes
    assert net.stem[1].momentum == pytest.approx(0.01)
    assert net.deq.test_max_iter == 26 and net.deq.backward_max_iter == 26
    with torch.no_grad():
        logits = net(torch.randn(2, 3, 64, 64), budget=Budget(2, 0.0, 'lowest'))
    assert logits.shape == (2, 19, 16, 16)
    # the presets follow the reference yaml files
    assert MDEQ_PRESETS['small']['seg']['dropout'] == pytest.approx(0.02)
    assert MDEQ_PRESETS['xl']['cls']['expansion'] == 6


def test_odd_input_size_uses_ceil_shapes():
    net = tiny(deq_cfg=dict(solver='fixed_point')).eval()
    x = torch.randn(1, 3, 30, 37)
    shapes = [tuple(t.shape) for t in net.init_state(x)]
    assert shapes == [(1, 4, 8, 10), (1, 8, 4, 5)]
    with torch.no_grad():
        out = net.forward_features(x, budget=Budget(2, 0.0, 'lowest'))
    assert [tuple(f.shape) for f in out.features] == shapes


def test_weight_norm_parametrisation():
    torch.manual_seed(0)
    conv = WNConv2d(3, 5, 3, padding=1)
    with torch.no_grad():
        conv.weight_g.copy_(torch.tensor([0.5, 1.0, 2.0, 3.0, 4.0]).view(5, 1, 1, 1))
    w = conv.weight
    assert torch.allclose(w.flatten(1).norm(dim=1), torch.tensor([0.5, 1.0, 2.0, 3.0, 4.0]))
    # direction of v is kept
    cos = nn.functional.cosine_similarity(w.flatten(1), conv.weight_v.flatten(1), dim=1)
    assert torch.allclose(cos, torch.ones(5))


@pytest.mark.parametrize('solver', ['fixed_point', 'anderson', 'broyden'])
def test_residual_decreases_with_iterations(solver):
    torch.manual_seed(0)
    net = make_contractive(tiny(deq_cfg=dict(solver=solver))).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        few = net.forward_features(x, budget=Budget(3, 0.0, 'lowest')).stats
        many = net.forward_features(x, budget=Budget(25, 0.0, 'lowest')).stats
    assert (many.rel_lowest < 1e-3).all(), many.rel_lowest
    assert (many.rel_lowest < 0.1 * few.rel_lowest).all()
    assert many.abs_trace.shape == (2, 26 if solver == 'broyden' else 25)  # Broyden: +1 eval


def test_warm_start_needs_fewer_iterations():
    torch.manual_seed(0)
    net = make_contractive(tiny(deq_cfg=dict(solver='fixed_point'))).eval()
    x = torch.randn(1, 3, 32, 32)
    x_next = x + 0.05 * torch.randn_like(x)  # the next, slightly different frame
    with torch.no_grad():
        cold = net.forward_features(x, budget=Budget(60, 1e-4, 'lowest'))
        assert (cold.stats.rel_lowest < 1e-4).all()
        again = net.forward_features(
            x, z0=[t.clone() for t in cold.z], budget=Budget(60, 1e-4, 'lowest')
        )
        cold_next = net.forward_features(x_next, budget=Budget(60, 1e-4, 'lowest'))
        warm_next = net.forward_features(x_next, z0=cold.z, budget=Budget(60, 1e-4, 'lowest'))
    assert again.stats.nstep.item() <= 2 < cold.stats.nstep.item()
    assert warm_next.stats.nstep.item() < cold_next.stats.nstep.item()
    # the warm start begins much closer to the equilibrium (StreamDEQ's premise)
    assert warm_next.stats.first_rel.item() < 0.2 * cold_next.stats.first_rel.item()
    for a, b in zip(warm_next.features, cold_next.features):
        assert torch.allclose(a, b, atol=5e-3)


@pytest.mark.parametrize(
    'deq_cfg',
    [
        dict(solver='fixed_point', train_mode='unroll', unroll_iters=4),
        dict(
            solver='broyden',
            train_mode='implicit',
            grad='implicit',
            train_max_iter=5,
            backward_max_iter=5,
        ),
        dict(solver='anderson', train_mode='stochastic_unroll', unroll_max=3, seed=0),
    ],
)
def test_gradients_flow(deq_cfg):
    torch.manual_seed(0)
    net = tiny(deq_cfg=deq_cfg, dropout=0.2).train()
    x = torch.randn(2, 3, 16, 16)
    loss = net(x).logsumexp(1).mean()
    loss.backward()
    for p in (
        net.layer.branches[1].blocks[0].conv1.weight_v,
        net.layer.post_fuse_layers[0].conv.weight_g,
        net.stem[0].weight,
        net.cls_head.classifier.weight,
    ):
        assert p.grad is not None and torch.isfinite(p.grad).all()
        assert p.grad.abs().sum() > 0


def test_implicit_gradient_matches_unrolled_at_equilibrium():
    """With a contraction solved to high precision, IFT and unrolled gradients agree."""
    grads = {}
    for mode in ('unroll', 'implicit'):
        torch.manual_seed(0)
        cfg = dict(
            solver='fixed_point',
            train_mode=mode,
            unroll_iters=40,
            train_max_iter=40,
            backward_max_iter=40,
            tol=1e-12,
        )
        if mode == 'implicit':
            cfg['grad'] = 'implicit'
        net = make_contractive(tiny(deq_cfg=cfg, with_head=False)).double().train()
        for m in net.modules():  # BN in eval: the comparison is about the DEQ layer
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        x = torch.randn(
            1, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
        )
        feats = net(x)
        (feats[0].sin().sum() + feats[1].pow(2).sum()).backward()
        grads[mode] = torch.cat(
            [
                net.layer.branches[0].blocks[0].conv1.weight_v.grad.flatten(),
                net.injection[0].weight.grad.flatten(),
            ]
        )
    assert grads['unroll'].abs().max() > 1e-6
    assert torch.allclose(grads['implicit'], grads['unroll'], rtol=1e-5, atol=1e-8)


def test_dropout_only_in_training():
    torch.manual_seed(0)
    a = tiny(dropout=0.5, deq_cfg=dict(solver='fixed_point', test_max_iter=3, tol=0))
    b = tiny(dropout=0.0, deq_cfg=dict(solver='fixed_point', test_max_iter=3, tol=0))
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(a.eval()(x), b.eval()(x))
        a.train()
        b.train()
        assert not torch.allclose(a(x), b(x))


def test_init_state_and_z0_checks():
    net = tiny().eval()
    x = torch.randn(2, 3, 32, 32)
    z = net.init_state(x)
    assert [tuple(t.shape) for t in z] == [(2, 4, 8, 8), (2, 8, 4, 4)]
    assert all(t.abs().sum() == 0 for t in z)
    with pytest.raises(ValueError, match='do not match the state shapes'):
        net.forward_features(x, z0=[z[0][:1], z[1][:1]])
    with pytest.raises(ValueError, match='do not match the state shapes'):
        net.forward_features(torch.randn(2, 3, 64, 64), z0=z)
    with pytest.raises(TypeError, match='z0 must be a list'):
        net.forward_features(x, z0='zeros')


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown MDEQ arch 'large'"):
        MDEQNet(arch='large')
    with pytest.raises(ValueError, match="task must be 'cls' or 'seg'"):
        MDEQNet(arch='small', task='det')
    with pytest.raises(ValueError, match='cannot be split into 3 groups'):
        tiny(num_groups=3)
    with pytest.raises(ValueError, match='num_groups // 2'):
        tiny(num_groups=1)
    with pytest.raises(TypeError, match='deq_cfg must be a dict'):
        tiny(deq_cfg=['broyden'])
    with pytest.raises(TypeError):
        tiny(deq_cfg=dict(no_such_option=1))
    with pytest.raises(ValueError, match='one entry per branch'):
        tiny(num_blocks=(1, 1, 1))
    net = tiny()
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\), got shape \(1, 1, 32, 32\)'):
        net(torch.zeros(1, 1, 32, 32))
    with pytest.raises(TypeError, match='image tensor'):
        net([0.0])


def test_weight_norm_cache_is_exact_and_invalidated_by_updates():
    """Without autograd the normalised weights are kept between solves, and any change of the
    parameters (optimizer step, load_state_dict) or train() recomputes them."""
    torch.manual_seed(0)
    net = tiny().eval()
    conv = next(m for m in net.modules() if isinstance(m, WNConv2d))
    v, g = conv.weight_v.detach(), conv.weight_g.detach()
    by_hand = v * g / v.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    with torch.no_grad():
        first = conv.weight
        assert conv.weight is first  # cached: the same tensor, not recomputed
        torch.testing.assert_close(first, by_hand)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    net.train()
    x = torch.randn(1, 3, 16, 16)
    feat = net.forward_features(x, budget=Budget(2, 0.0, 'lowest')).features[0]
    (feat * torch.randn_like(feat)).sum().backward()  # (a plain sum is constant under GroupNorm)
    opt.step()
    net.eval()
    with torch.no_grad():
        after = conv.weight
        v, g = conv.weight_v, conv.weight_g
        torch.testing.assert_close(after, v * g / v.flatten(1).norm(dim=1).view(-1, 1, 1, 1))
        assert not torch.equal(after, first)
        net.load_state_dict(
            {k: t * 0.5 if k.endswith('weight_g') else t for k, t in net.state_dict().items()}
        )
        torch.testing.assert_close(conv.weight, 0.5 * after)
    # a streaming chain gives the same fixed points with and without the cache
    with torch.no_grad():
        z = None
        cached = []
        for t in range(3):
            z = net.forward_features(x + 0.1 * t, z, budget=Budget(2, 0.0, 'lowest')).z
            cached.append(z)
        for m in net.modules():
            if isinstance(m, WNConv2d):
                m._cache = None
        z = None
        for t in range(3):
            with torch.enable_grad():  # autograd on: no caching anywhere
                z = [
                    u.detach()
                    for u in net.forward_features(x + 0.1 * t, z, budget=Budget(2, 0.0, 'lowest')).z
                ]
            for a, b in zip(z, cached[t]):
                torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_weight_norm_cache_from_inference_mode_is_not_reused_under_autograd():
    conv = WNConv2d(3, 5, 3, padding=1)
    for p in conv.parameters():
        p.requires_grad_(False)  # frozen: the cache is used with autograd on
    x = torch.randn(1, 3, 6, 6)
    with torch.inference_mode():
        conv(x)
    x.requires_grad_(True)
    conv(x).sum().backward()  # an inference tensor saved for backward would raise here
    assert x.grad is not None


@pytest.mark.parametrize('mode', ['unroll', 'stochastic_unroll'])
def test_unrolled_training_gradient_equals_manual_autograd_unroll(mode):
    """UR / SUR training backpropagates through exactly N applications of the layer: every
    parameter gradient equals that of a hand-written loop ``z = layer(z, injection)`` (weight
    norm recomputed at every call, no solver), float64, with variational dropout."""
    cfg = dict(solver='broyden', train_mode=mode, unroll_iters=4, unroll_max=6, seed=3)
    torch.manual_seed(0)
    net = tiny(deq_cfg=cfg, with_head=False, dropout=0.2).double().train()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def loss_of(feats):
        return feats[0].sin().sum() + feats[1].pow(2).sum()

    torch.manual_seed(5)  # the dropout masks
    out = net.forward_features(x)
    loss_of(out.features).backward()
    n = out.aux['unroll_iters']
    assert (n == 4 if mode == 'unroll' else 1 <= n <= 6) and out.stats.n_eval == n
    got = {k: p.grad.clone() for k, p in net.named_parameters()}
    net.zero_grad(set_to_none=True)
    torch.manual_seed(5)
    injection = net.injection_features(x)
    net.layer.reset_dropout(x.shape[0], x.device, x.dtype)
    z = net.init_state(x)
    for _ in range(n):
        z = net.layer(z, injection)
    loss_of(z).backward()
    for k, p in net.named_parameters():
        torch.testing.assert_close(got[k], p.grad, rtol=1e-10, atol=1e-12, msg=k)
    assert got['layer.branches.0.blocks.0.conv1.weight_v'].abs().max() > 0
