"""The registered ``mmvideoeq.MDEQ`` backbone: features, streaming, weights, aux losses."""

import pytest
import torch

from mmvideoeq.deq import Budget
from mmvideoeq.deq.mdeq import MDEQNet
from mmvideoeq.models.backbones.mdeq import MDEQ
from mmvideoeq.registry import MODELS

TINY = dict(arch='small', num_channels=(4, 8, 8), expansion=2, num_groups=2)


def build(**kw):
    cfg = dict(type='MDEQ', deq_cfg=dict(solver='fixed_point', test_max_iter=3, tol=0), **TINY)
    cfg.update(kw)
    return MODELS.build(cfg)


def test_registered_forward_shapes():
    torch.manual_seed(0)
    bb = build()
    assert isinstance(bb, MDEQ)
    assert bb.out_channels == (4, 8, 8) and bb.strides == (4, 8, 16)
    bb.init_weights()
    bb.eval()
    x = torch.randn(2, 3, 48, 40)
    with torch.no_grad():
        feats = bb(x)
    assert isinstance(feats, tuple) and len(feats) == 3
    for f, c, s in zip(feats, bb.out_channels, bb.strides):
        assert f.shape == (2, c, -(-48 // s), -(-40 // s))
    sub = build(out_indices=(1, 2))
    assert sub.out_channels == (8, 8) and sub.strides == (8, 16)
    with pytest.raises(ValueError, match='out_indices'):
        build(out_indices=(0, 3))


def test_forward_stream_warm_start():
    torch.manual_seed(0)
    bb = build(
        deq_cfg=dict(solver='fixed_point', test_max_iter=3, tol=0, return_lowest=False)
    ).eval()
    x = torch.randn(1, 3, 32, 32)
    z0 = bb.init_stream_state(x)
    assert [tuple(t.shape) for t in z0] == [(1, 4, 8, 8), (1, 8, 4, 4), (1, 8, 2, 2)]
    with torch.no_grad():
        feats, z, stats = bb.forward_stream(x, z0, Budget.steps(2))
        cold = bb(x)
    assert stats.abs_trace.shape == (1, 2)  # exactly the per-frame budget
    assert all(not t.requires_grad for t in z)
    # two iterations from zeros, then one more from that state == three from zeros
    with torch.no_grad():
        feats3, _, stats3 = bb.forward_stream(x, z, Budget.steps(1))
    assert stats3.abs_trace.shape == (1, 1)
    for a, b in zip(feats3, cold):
        assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(feats[0], cold[0], atol=1e-3)


def test_pretrained_converted_checkpoint_loads_strictly(tmp_path):
    torch.manual_seed(1)
    src = MDEQNet(task='cls', num_classes=7, **TINY)
    with torch.no_grad():
        for p in src.parameters():
            p.add_(torch.randn_like(p))
        src.stem[1].running_var.fill_(3.0)
    path = tmp_path / 'mdeq_converted.pth'
    torch.save(dict(state_dict=src.state_dict(), meta=dict(arch='tiny')), path)
    bb = build(init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    bb.init_weights()
    own = bb.net.state_dict()
    assert set(own) == {k for k in src.state_dict() if not k.startswith('cls_head.')}
    for k, v in own.items():
        assert torch.equal(v, src.state_dict()[k]), k
    assert bb.net.stem[1].running_var[0] == 3.0

    # an official-layout checkpoint (FullModel of the seg training) is converted on the fly
    inverse = {
        'stem.': 'model.downsample.',
        'injection.': 'model.stage0.',
        'layer.': 'model.fullstage.',
    }
    official = {}
    for k, v in src.state_dict().items():
        for a, b in inverse.items():
            if k.startswith(a):
                official[b + k[len(a) :]] = v
    official['loss.criterion.weight'] = torch.ones(19)
    path2 = tmp_path / 'official.pkl'
    torch.save(official, path2)
    bb2 = build(init_cfg=dict(type='Pretrained', checkpoint=str(path2)))
    bb2.init_weights()
    assert torch.equal(
        bb2.net.layer.branches[2].blocks[0].conv1.weight_v,
        src.layer.branches[2].blocks[0].conv1.weight_v,
    )


def test_pretrained_errors(tmp_path):
    bb = build(init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'missing.pth')))
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        bb.init_weights()
    other = MDEQNet(arch='small', num_channels=(4, 8), expansion=2, num_groups=2, with_head=False)
    path = tmp_path / 'two_branches.pth'
    torch.save(dict(state_dict=other.state_dict()), path)
    bb = build(init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(ValueError, match=r'missing \[.*layer\.branches\.2\.blocks\.0'):
        bb.init_weights()
    wide = MDEQNet(
        arch='small', num_channels=(4, 8, 16), expansion=2, num_groups=2, with_head=False
    )
    torch.save(dict(state_dict=wide.state_dict()), path)
    bb = build(init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(ValueError, match=r'shape mismatch \[.*branches\.2'):
        bb.init_weights()


def test_aux_losses_in_training_only():
    torch.manual_seed(0)
    bb = build(
        deq_cfg=dict(solver='fixed_point', train_mode='unroll', unroll_iters=2, jac_reg_weight=0.5)
    )
    bb.train()
    feats = bb(torch.randn(1, 3, 32, 32))
    aux = bb.pop_aux_losses()
    assert set(aux) == {'jac_loss'}
    assert aux['jac_loss'].requires_grad and aux['jac_loss'].item() > 0
    (sum(f.mean() for f in feats) + aux['jac_loss']).backward()
    assert bb.net.layer.branches[0].blocks[0].conv1.weight_v.grad.abs().sum() > 0
    assert bb.pop_aux_losses() == {}
    bb.eval()
    with torch.no_grad():
        bb(torch.randn(1, 3, 32, 32))
    assert bb.pop_aux_losses() == {}


def test_norm_eval_freezes_batchnorm_statistics():
    torch.manual_seed(0)
    bb = build(
        norm_eval=True, deq_cfg=dict(solver='fixed_point', train_mode='unroll', unroll_iters=2)
    )
    bb.train()
    assert bb.training and not bb.net.stem[1].training
    before = bb.net.stem[1].running_mean.clone()
    bb(torch.randn(2, 3, 32, 32) + 3.0)
    assert torch.equal(bb.net.stem[1].running_mean, before)
    plain = build(deq_cfg=dict(solver='fixed_point', train_mode='unroll', unroll_iters=2))
    plain.train()
    plain(torch.randn(2, 3, 32, 32) + 3.0)
    assert not torch.equal(plain.net.stem[1].running_mean, before)
