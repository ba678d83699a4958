"""Official MDEQ checkpoint conversion, checked against an independent re-implementation.

``official_layout`` enumerates the key names and shapes an official ``MDEQClsNet``/``MDEQSegNet``
state dict has, written from the reference source (locuslab/mdeq, MIT):

* ``lib/models/mdeq_core.py``: ``MDEQNet.__init__`` registers ``downsample`` (conv3x3, BN, ReLU,
  conv3x3, BN, ReLU), ``stage0`` (conv1x1, BN, ReLU), ``fullstage`` (``MDEQModule``: ``branches.i.
  blocks.k.{conv1,gn1,conv2,gn2,gn3}``; ``fuse_layers.i.j.net.{conv,gnorm}`` upsampling for
  ``j > i``, ``fuse_layers.i.j.net.k.{conv,gnorm}`` downsampling for ``j < i``;
  ``post_fuse_layers.i.{conv,gnorm}``), ``fullstage_copy`` (deep copy taken *before* weight norm:
  plain ``weight``), and ``deq`` (``MDEQWrapper(fullstage, fullstage_copy)``, an ``nn.Module``:
  ``deq.func.*`` and ``deq.func_copy.*`` repeat both);
* ``lib/modules/optimizations.py``: ``weight_norm(dim=0)`` replaces ``weight`` by ``weight_g``
  ``(C_out, 1, 1, 1)`` and ``weight_v``; applied to ``conv1``/``conv2`` of each block and to the
  post-fusion convs;
* ``lib/models/mdeq.py``: the classification head (Bottleneck ``incre_modules.i.0`` whose BNs have
  ``affine=False`` and whose ``downsample`` exists when ``C_i != 4 h_i``; ``downsamp_modules.i.
  {0: conv3x3 with bias, 1: BN}``; ``final_layer.{0: conv1x1 with bias, 1: BN}``; ``classifier``)
  and the segmentation head (``last_layer.{0: conv1x1 with bias, 1: BN, 3: conv with bias}``);
* ``tools/seg_train.py`` saves ``FullModel(model, loss)``: ``model.`` prefix and
  ``loss.criterion.weight``.

``reference_forward`` evaluates the official equations functionally (``F.conv2d``/``F.group_norm``
on the official-layout tensors, the reference's ``_norm``-based weight norm, ``scale_factor``
nearest upsampling), independently of ``MDEQNet``, for a fixed number of fixed-point iterations.
"""

import importlib.util
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mmvideoeq.deq.mdeq import MDEQNet
from mmvideoeq.deq.mdeq_convert import (
    convert_mdeq_state_dict,
    infer_mdeq_arch,
    to_encoder_decoder_layout,
)

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / 'tools' / 'model_converters' / 'mdeq_to_mmvideoeq.py'

# A tiny 3-branch config: exercises a 2-step downsample path, two blocks in one branch and a
# Bottleneck without projection (C_2 = 16 = 4 * 4).
TINY = dict(
    num_channels=(4, 8, 16),
    num_blocks=(1, 2, 1),
    expansion=2,
    num_groups=2,
    head_channels=(2, 3, 4),
    final_chansize=16,
    num_classes=5,
)


def official_layout(c, blocks, e, head, head_ch=None, final=None, ncls=5, fck=1):
    """``{key: shape}`` of an official MDEQ state dict (see the module docstring)."""
    keys = OrderedDict()

    def bn(p, n, affine=True):
        if affine:
            keys[p + '.weight'] = (n,)
            keys[p + '.bias'] = (n,)
        keys[p + '.running_mean'] = (n,)
        keys[p + '.running_var'] = (n,)
        keys[p + '.num_batches_tracked'] = ()

    def gn(p, n):
        keys[p + '.weight'] = (n,)
        keys[p + '.bias'] = (n,)

    def conv(p, shape, wn):
        if wn:
            keys[p + '.weight_g'] = (shape[0], 1, 1, 1)
            keys[p + '.weight_v'] = shape
        else:
            keys[p + '.weight'] = shape

    c0 = c[0]
    keys['downsample.0.weight'] = (c0, 3, 3, 3)
    bn('downsample.1', c0)
    keys['downsample.3.weight'] = (c0, c0, 3, 3)
    bn('downsample.4', c0)
    keys['stage0.0.weight'] = (c0, c0, 1, 1)
    bn('stage0.1', c0)

    def stage(prefix, wn):
        for i, ci in enumerate(c):
            for k in range(blocks[i]):
                p = f'{prefix}.branches.{i}.blocks.{k}'
                conv(p + '.conv1', (e * ci, ci, 3, 3), wn)
                gn(p + '.gn1', e * ci)
                conv(p + '.conv2', (ci, e * ci, 3, 3), wn)
                gn(p + '.gn2', ci)
                gn(p + '.gn3', ci)
        for i in range(len(c)):
            for j in range(len(c)):
                p = f'{prefix}.fuse_layers.{i}.{j}.net'
                if j > i:
                    keys[p + '.conv.weight'] = (c[i], c[j], 1, 1)
                    gn(p + '.gnorm', c[i])
                elif j < i:
                    for k in range(i - j):
                        out = c[i] if k == i - j - 1 else c[j]
                        keys[f'{p}.{k}.conv.weight'] = (out, c[j], 3, 3)
                        gn(f'{p}.{k}.gnorm', out)
        for i, ci in enumerate(c):
            conv(f'{prefix}.post_fuse_layers.{i}.conv', (ci, ci, 1, 1), wn)
            gn(f'{prefix}.post_fuse_layers.{i}.gnorm', ci)

    stage('fullstage', True)
    stage('fullstage_copy', False)
    stage('deq.func', True)
    stage('deq.func_copy', False)
    if head == 'cls':
        for i, (ci, h) in enumerate(zip(c, head_ch)):
            p = f'incre_modules.{i}.0'
            keys[p + '.conv1.weight'] = (h, ci, 1, 1)
            bn(p + '.bn1', h, affine=False)
            keys[p + '.conv2.weight'] = (h, h, 3, 3)
            bn(p + '.bn2', h, affine=False)
            keys[p + '.conv3.weight'] = (4 * h, h, 1, 1)
            bn(p + '.bn3', 4 * h, affine=False)
            if ci != 4 * h:
                keys[p + '.downsample.0.weight'] = (4 * h, ci, 1, 1)
                bn(p + '.downsample.1', 4 * h)
        for i in range(len(c) - 1):
            keys[f'downsamp_modules.{i}.0.weight'] = (4 * head_ch[i + 1], 4 * head_ch[i], 3, 3)
            keys[f'downsamp_modules.{i}.0.bias'] = (4 * head_ch[i + 1],)
            bn(f'downsamp_modules.{i}.1', 4 * head_ch[i + 1])
        keys['final_layer.0.weight'] = (final, 4 * head_ch[-1], 1, 1)
        keys['final_layer.0.bias'] = (final,)
        bn('final_layer.1', final)
        keys['classifier.weight'] = (ncls, final)
        keys['classifier.bias'] = (ncls,)
    elif head == 'seg':
        s = sum(c)
        keys['last_layer.0.weight'] = (s, s, 1, 1)
        keys['last_layer.0.bias'] = (s,)
        bn('last_layer.1', s)
        keys['last_layer.3.weight'] = (ncls, s, fck, fck)
        keys['last_layer.3.bias'] = (ncls,)
    return keys


def random_official_state(layout, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    sd = OrderedDict()
    for k, shape in layout.items():
        if k.endswith('num_batches_tracked'):
            sd[k] = torch.tensor(7)
        elif k.endswith('running_var') or k.endswith('weight_g'):
            sd[k] = (0.5 + torch.rand(shape, generator=g)).to(dtype)
        else:
            sd[k] = (0.5 * torch.randn(shape, generator=g)).to(dtype)
    # the duplicates hold the same tensors as in the reference (deq.func is fullstage)
    for k in list(sd):
        if k.startswith('deq.func.'):
            sd[k] = sd['fullstage.' + k[len('deq.func.') :]]
    return sd


def reference_forward(sd, x, n_iter, c, blocks, groups, head):
    """Official equations, evaluated functionally on an official-layout state dict."""

    def bn(t, p):
        return F.batch_norm(
            t,
            sd[p + '.running_mean'],
            sd[p + '.running_var'],
            sd.get(p + '.weight'),
            sd.get(p + '.bias'),
            False,
            0.0,
            1e-5,
        )

    def gn(t, p, g):
        return F.group_norm(t, g, sd[p + '.weight'], sd[p + '.bias'], 1e-5)

    def wn(p):  # optimizations.WeightNorm.compute_weight with _norm(v, dim=0)
        g, v = sd[p + '.weight_g'], sd[p + '.weight_v']
        return v * (g / v.contiguous().view(v.size(0), -1).norm(dim=1).view(-1, 1, 1, 1))

    h = F.relu(bn(F.conv2d(x, sd['downsample.0.weight'], stride=2, padding=1), 'downsample.1'))
    h = F.relu(bn(F.conv2d(h, sd['downsample.3.weight'], stride=2, padding=1), 'downsample.4'))
    inj = F.relu(bn(F.conv2d(h, sd['stage0.0.weight']), 'stage0.1'))
    z = [torch.zeros_like(inj)]
    for i in range(1, len(c)):
        b, _, hh, ww = z[-1].shape
        z.append(torch.zeros(b, c[i], hh // 2, ww // 2, dtype=x.dtype))

    def f(z):
        xb = []
        for i in range(len(c)):
            y = z[i]
            for k in range(blocks[i]):
                p = f'fullstage.branches.{i}.blocks.{k}'
                out = F.relu(gn(F.conv2d(y, wn(p + '.conv1'), padding=1), p + '.gn1', groups))
                out = F.conv2d(out, wn(p + '.conv2'), padding=1)
                if i == 0 and k == 0:
                    out = out + inj
                out = gn(out, p + '.gn2', groups)
                y = gn(F.relu(out + y), p + '.gn3', groups)
            xb.append(y)
        fused = []
        for i in range(len(c)):
            y = 0
            for j in range(len(c)):
                p = f'fullstage.fuse_layers.{i}.{j}.net'
                if i == j:
                    t = xb[j]
                elif j > i:
                    t = gn(F.conv2d(xb[j], sd[p + '.conv.weight']), p + '.gnorm', groups)
                    t = F.interpolate(t, scale_factor=2 ** (j - i), mode='nearest')
                else:
                    t = xb[j]
                    for k in range(i - j):
                        t = gn(
                            F.conv2d(t, sd[f'{p}.{k}.conv.weight'], stride=2, padding=1),
                            f'{p}.{k}.gnorm',
                            groups,
                        )
                        if k != i - j - 1:
                            t = F.relu(t)
                y = y + t
            p = f'fullstage.post_fuse_layers.{i}'
            fused.append(gn(F.conv2d(F.relu(y), wn(p + '.conv')), p + '.gnorm', groups // 2))
        return fused

    for _ in range(n_iter):
        z = f(z)
    if head == 'cls':

        def bottleneck(t, p):
            out = F.relu(bn(F.conv2d(t, sd[p + '.conv1.weight']), p + '.bn1'))
            out = F.relu(bn(F.conv2d(out, sd[p + '.conv2.weight'], padding=1), p + '.bn2'))
            out = bn(F.conv2d(out, sd[p + '.conv3.weight']), p + '.bn3')
            res = t
            if p + '.downsample.0.weight' in sd:
                res = bn(F.conv2d(t, sd[p + '.downsample.0.weight']), p + '.downsample.1')
            return F.relu(out + res)

        y = bottleneck(z[0], 'incre_modules.0.0')
        for i in range(len(c) - 1):
            p = f'downsamp_modules.{i}'
            d = F.relu(
                bn(
                    F.conv2d(y, sd[p + '.0.weight'], sd[p + '.0.bias'], stride=2, padding=1),
                    p + '.1',
                )
            )
            y = bottleneck(z[i + 1], f'incre_modules.{i + 1}.0') + d
        y = F.relu(
            bn(F.conv2d(y, sd['final_layer.0.weight'], sd['final_layer.0.bias']), 'final_layer.1')
        )
        y = F.avg_pool2d(y, kernel_size=y.size()[2:]).view(y.size(0), -1)
        return z, F.linear(y, sd['classifier.weight'], sd['classifier.bias'])
    size = z[0].shape[-2:]
    y = torch.cat(
        [z[0]] + [F.interpolate(t, size=size, mode='bilinear', align_corners=True) for t in z[1:]],
        1,
    )
    y = F.relu(bn(F.conv2d(y, sd['last_layer.0.weight'], sd['last_layer.0.bias']), 'last_layer.1'))
    return z, F.conv2d(y, sd['last_layer.3.weight'], sd['last_layer.3.bias'])


def tiny_net(task, **deq):
    cfg = dict(TINY)
    if task == 'seg':
        cfg.pop('head_channels')
        cfg.pop('final_chansize')
    return MDEQNet(arch='small', task=task, deq_cfg=dict(solver='fixed_point', **deq), **cfg)


def official_state(task, seed=0):
    return random_official_state(
        official_layout(
            TINY['num_channels'],
            TINY['num_blocks'],
            TINY['expansion'],
            task,
            TINY['head_channels'],
            TINY['final_chansize'],
            TINY['num_classes'],
        ),
        seed,
    )


@pytest.mark.parametrize('task', ['cls', 'seg'])
def test_converted_keys_and_shapes_match_mdeqnet(task):
    sd = official_state(task)
    conv = convert_mdeq_state_dict(sd)
    own = tiny_net(task).state_dict()
    assert list(sorted(conv)) == list(sorted(own))
    for k, v in own.items():
        assert conv[k].shape == v.shape, k
    # the converted tensors are the official ones, renamed (no duplicate survives)
    assert (
        conv['layer.branches.1.blocks.1.conv2.weight_v']
        is sd['fullstage.branches.1.blocks.1.conv2.weight_v']
    )
    assert conv['stem.4.running_var'] is sd['downsample.4.running_var']
    n_official = len(sd)
    n_dups = sum(k.startswith(('fullstage_copy.', 'deq.func')) for k in sd)
    assert len(conv) == n_official - n_dups
    tiny_net(task).load_state_dict(conv, strict=True)


def test_round_trip_names():
    sd = official_state('cls')
    conv = convert_mdeq_state_dict(sd)
    inverse = {
        'stem.': 'downsample.',
        'injection.': 'stage0.',
        'layer.': 'fullstage.',
        'cls_head.': '',
    }
    back = set()
    for k in conv:
        for a, b in inverse.items():
            if k.startswith(a):
                back.add(b + k[len(a) :])
                break
    kept = {k for k in sd if not k.startswith(('fullstage_copy.', 'deq.'))}
    assert back == kept


@pytest.mark.parametrize('task', ['cls', 'seg'])
def test_forward_matches_independent_reference(task):
    torch.manual_seed(0)
    sd = official_state(task, seed=1)
    net = tiny_net(task, test_max_iter=5, tol=0, return_lowest=False).double().eval()
    net.load_state_dict(convert_mdeq_state_dict(sd), strict=True)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        z_ref, logits_ref = reference_forward(
            sd, x, 5, TINY['num_channels'], TINY['num_blocks'], TINY['num_groups'], task
        )
        out = net.forward_features(x)
        logits = net(x)
    assert out.stats.nstep.tolist() == [5, 5]
    for a, b in zip(out.features, z_ref):
        assert a.shape == b.shape
        assert torch.allclose(a, b, atol=1e-10, rtol=1e-9)
        assert b.abs().mean() > 0.1  # a non-trivial state
    assert logits.shape == logits_ref.shape
    assert torch.allclose(logits, logits_ref, atol=1e-9, rtol=1e-9)
    # one iteration fewer differs: the comparison is sensitive to the iteration count
    z4, _ = reference_forward(
        sd, x, 4, TINY['num_channels'], TINY['num_blocks'], TINY['num_groups'], task
    )
    assert (z4[0] - out.features[0]).abs().max() > 1e-3


def test_wrappers_are_unwrapped():
    sd = official_state('seg')
    plain = convert_mdeq_state_dict(sd)
    dp = {'module.' + k: v for k, v in sd.items()}
    assert convert_mdeq_state_dict({'state_dict': dp, 'epoch': 3}).keys() == plain.keys()
    full = {'model.' + k: v for k, v in sd.items()}
    full['loss.criterion.weight'] = torch.ones(TINY['num_classes'])
    assert convert_mdeq_state_dict(full).keys() == plain.keys()
    arch = infer_mdeq_arch(plain)
    assert arch == dict(
        num_channels=(4, 8, 16),
        num_blocks=(1, 2, 1),
        expansion=2,
        wnorm=True,
        head='seg',
        num_classes=5,
    )


def test_unknown_keys_are_listed():
    sd = official_state('cls')
    sd['fullstage.extra_gate.weight'] = torch.zeros(1)
    sd['aux_head.bias'] = torch.zeros(1)
    with pytest.raises(
        ValueError, match=r'2 key\(s\).*fullstage.extra_gate.weight.*' r'aux_head.bias'
    ):
        convert_mdeq_state_dict(sd)
    with pytest.raises(ValueError, match='not an official MDEQ checkpoint'):
        convert_mdeq_state_dict({'backbone.conv1.weight': torch.zeros(1)})
    with pytest.raises(TypeError, match='state dict'):
        convert_mdeq_state_dict([1, 2])


def test_encoder_decoder_layout_folds_the_conv_bias():
    sd = official_state('seg', seed=2)
    conv = convert_mdeq_state_dict(sd)
    ed = to_encoder_decoder_layout(conv)
    assert torch.equal(
        ed['backbone.net.layer.branches.2.blocks.0.conv1.weight_v'],
        sd['fullstage.branches.2.blocks.0.conv1.weight_v'],
    )
    assert not any(k.startswith('decode_head.convs.0.conv.bias') for k in ed)
    # mmseg's ConvModule(conv without bias, BN, ReLU) + conv_seg in eval == the reference's
    # last_layer (conv with bias, BN, ReLU, conv)
    y = torch.randn(2, sum(TINY['num_channels']), 5, 6, dtype=torch.float64)

    def head(w, b, mean, prefix, cls):
        h = F.conv2d(y, w, b)
        h = F.batch_norm(
            h,
            mean,
            sd[prefix + '.running_var'],
            sd[prefix + '.weight'],
            sd[prefix + '.bias'],
            False,
            0.0,
            1e-5,
        )
        return F.conv2d(F.relu(h), *cls)

    ref = head(
        sd['last_layer.0.weight'],
        sd['last_layer.0.bias'],
        sd['last_layer.1.running_mean'],
        'last_layer.1',
        (sd['last_layer.3.weight'], sd['last_layer.3.bias']),
    )
    mm = head(
        ed['decode_head.convs.0.conv.weight'],
        None,
        ed['decode_head.convs.0.bn.running_mean'],
        'last_layer.1',
        (ed['decode_head.conv_seg.weight'], ed['decode_head.conv_seg.bias']),
    )
    assert torch.allclose(mm, ref, atol=1e-12)
    assert sd['last_layer.0.bias'].abs().max() > 0.1  # the fold matters
    with pytest.raises(ValueError, match='needs a segmentation checkpoint'):
        to_encoder_decoder_layout(convert_mdeq_state_dict(official_state('cls')))


def _run(*args):
    return subprocess.run(
        [sys.executable, str(TOOL), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_cli_converts_and_reports_errors(tmp_path):
    src = tmp_path / 'official.pkl'
    dst = tmp_path / 'out' / 'converted.pth'
    sd = {k: v.float() if v.is_floating_point() else v for k, v in official_state('cls').items()}
    torch.save({'state_dict': {'module.' + k: v for k, v in sd.items()}}, src)
    res = _run(src, dst)
    assert res.returncode == 0, res.stderr
    assert 'head=cls num_classes=5' in res.stdout
    ckpt = torch.load(dst, weights_only=True)
    assert ckpt['meta']['num_channels'] == (4, 8, 16)
    net = tiny_net('cls')
    net.load_state_dict(ckpt['state_dict'], strict=True)
    assert torch.equal(
        net.layer.post_fuse_layers[2].conv.weight_g,
        sd['fullstage.post_fuse_layers.2.conv.weight_g'],
    )

    spec = importlib.util.spec_from_file_location('mdeq_to_mmvideoeq', TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    with pytest.raises(ValueError, match='exists; pass --force'):
        tool.main([str(src), str(dst)])
    assert tool.main([str(src), str(dst), '--force', '--drop-head']) == 0
    assert not any(k.startswith('cls_head.') for k in torch.load(dst)['state_dict'])
    res = _run(tmp_path / 'missing.pkl', tmp_path / 'x.pth')
    assert res.returncode == 2 and 'checkpoint not found' in res.stderr
    assert 'Traceback' not in res.stderr
