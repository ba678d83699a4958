"""ViPDeepLab model: pair training, per-frame prediction, the streaming step and bad input."""

import copy

import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from mmvideoeq.deq import FULL_SOLVE, Budget
from mmvideoeq.models.segmentors.vip_deeplab_stream import ViPMemory
from mmvideoeq.registry import MODELS
from mmvideoeq.utils import register_all_modules

CH = [4, 8, 8, 8]
H, W = 32, 64
CFG = dict(
    type='ViPDeepLab',
    data_preprocessor=dict(
        type='FramesDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        size_divisor=32,
        test_cfg=dict(size_divisor=32),
    ),
    backbone=dict(
        type='MDEQ',
        arch='small',
        task='seg',
        num_channels=CH,
        num_blocks=[1] * 4,
        expansion=1,
        num_groups=2,
        dropout=0.0,
        deq_cfg=dict(
            solver='fixed_point',
            train_mode='stochastic_unroll',
            grad='unroll',
            unroll_max=2,
            train_max_iter=2,
            test_max_iter=3,
            tol=None,
            seed=0,
        ),
    ),
    decode_head=dict(
        type='ViPDeepLabHead',
        in_channels=CH,
        num_classes=5,
        thing_ids=(2, 3),
        label_divisor=1000,
        ignore_label=32,
        semantic_decoder=dict(aspp_channels=8, decoder_channels=8, low_project=(4, 4)),
        instance_decoder=dict(aspp_channels=8, decoder_channels=8, low_project=(4, 4)),
        semantic_head_channels=8,
        center_head_channels=4,
        offset_head_channels=4,
        depth_head=dict(channels=4),
        next_frame=dict(channels=4),
        target_cfg=dict(sigma=2.0, small_instance_area=64),
    ),
    test_cfg=dict(nms_kernel=3, stuff_area=4, center_threshold=0.0),
)


@pytest.fixture(scope='module')
def model():
    register_all_modules()
    torch.manual_seed(0)
    m = MODELS.build(copy.deepcopy(CFG))
    m.init_weights()
    return m


def _batch(n=2, frames=2, h=H, w=W, seed=0):
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for i in range(n):
        s = SegDataSample(
            metainfo=dict(img_shape=(h, w), ori_shape=(h, w), video_id=str(i), frame_id=0)
        )
        pan = torch.zeros(1, h, w, dtype=torch.long)
        pan[0, 4:14, 4:20] = 2001
        pan[0, 18:30, 30:50] = 3001
        pan[0, 0:2, :] = 32000
        s.gt_panoptic = PixelData(data=pan)
        s.next_gt_panoptic = PixelData(data=torch.roll(pan, 2, dims=2))
        s.gt_depth = PixelData(data=torch.rand(1, h, w, generator=g) * 40 + 1)
        samples.append(s)
        inputs.append(torch.randint(0, 255, (3 * frames, h, w), dtype=torch.uint8, generator=g))
    return dict(inputs=inputs, data_samples=samples)


def test_pair_training_step(model):
    model.train()
    data = model.data_preprocessor(_batch(), True)
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss_sem', 'loss_ctr', 'loss_off', 'loss_next', 'loss_depth'}
    total = sum(losses.values())
    assert torch.isfinite(total)
    model.zero_grad()
    total.backward()
    for name in ('decode_head.next_offset_head.out.weight', 'decode_head.depth_head.out.weight'):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())


def test_training_needs_pairs(model):
    model.train()
    data = model.data_preprocessor(_batch(frames=1), True)
    with pytest.raises(ValueError, match=r'trains on frame pairs \(t, t\+1\)'):
        model(**data, mode='loss')
    data = model.data_preprocessor(_batch(frames=3), True)
    with pytest.raises(ValueError, match='clip of 3 frames'):
        model(**data, mode='loss')


def test_preprocessor_rejects_partial_frames(model):
    batch = _batch(n=1)
    batch['inputs'] = [torch.zeros(5, H, W, dtype=torch.uint8)]
    with pytest.raises(ValueError, match=r'expected \(3 \* T, H, W\)'):
        model.data_preprocessor(batch, True)


def test_preprocessor_normalises_each_frame(model):
    x = torch.randint(0, 255, (6, 4, 4), dtype=torch.uint8)
    out = model.data_preprocessor(dict(inputs=[x], data_samples=None), False)['inputs'][0]
    mean = torch.tensor([123.675, 116.28, 103.53])[:, None, None]
    std = torch.tensor([58.395, 57.12, 57.375])[:, None, None]
    for f in range(2):  # BGR -> RGB, then (x - mean) / std, frame by frame
        rgb = x[3 * f : 3 * f + 3].float()[[2, 1, 0]]
        torch.testing.assert_close(out[3 * f : 3 * f + 3, :4, :4], (rgb - mean) / std)


def test_predict_restores_original_size(model):
    model.eval()
    batch = _batch(frames=1, h=30, w=60)
    for s in batch['data_samples']:
        s.set_metainfo(dict(ori_shape=(45, 90)))
    data = model.data_preprocessor(batch, False)
    assert tuple(data['inputs'].shape[-2:]) == (32, 64)  # padded to size_divisor 32
    preds = model(**data, mode='predict')
    for p in preds:
        assert p.pred_panoptic.shape == (45, 90)
        assert p.pred_depth.shape == (45, 90)
        d = p.pred_depth.data
        assert (d >= 0).all() and (d <= 88).all()  # MaxDepth * sigmoid (Eq. 7.3)


def _stream(model, batches, z=None, memory=None, iters=2):
    outs = []
    for b in batches:
        data = model.data_preprocessor(b, False)
        n = data['inputs'].shape[0]
        out = model.stream_step(
            data['inputs'], z, memory or [None] * n, Budget.steps(iters), data['data_samples']
        )
        z, memory = out.z, out.memory
        outs.append([p.pred_panoptic.data.clone() for p in out.outputs])
    return outs, z, memory


def test_two_streams_together_equal_each_alone(model):
    model.eval()
    frames = [_batch(frames=1, seed=s) for s in range(3)]
    together, z, memory = _stream(model, frames)
    assert len(z) == 4  # the MDEQ scales only: the memory travels apart
    assert len(memory) == 2 and all(isinstance(m, ViPMemory) for m in memory)
    ids = memory[0].ids
    assert memory[0].seq_ids.dtype == torch.int64 and isinstance(ids.max_id, int)
    assert ids.frame == 2 and all(isinstance(k, int) for k in ids.last_seen)
    for i in range(2):
        alone, _, _ = _stream(
            model,
            [dict(inputs=[f['inputs'][i]], data_samples=[f['data_samples'][i]]) for f in frames],
        )
        for t in range(3):
            assert torch.equal(alone[t][0], together[t][i])


def test_zero_state_is_a_cold_start(model):
    model.eval()
    b = _batch(frames=1)
    data = model.data_preprocessor(b, False)
    zero = model.stream_zero_state(data['inputs'])
    (p_none,), z_none, _ = _stream(model, [b], None)
    (p_zero,), z_zero, _ = _stream(model, [b], zero)
    assert [tuple(t.shape) for t in zero] == [tuple(t.shape) for t in z_none]
    for a, c in zip(p_none, p_zero):
        assert torch.equal(a, c)


def test_cold_solver_keeps_the_stitching_memory(model):
    """The solver state and the memory are independent: a cold solve (z0=None) with the memory
    of frame 0 equals a cold solve of frame 1 in its fixed point, and is a second frame for the
    stitching (ids carried from frame 0, not fresh)."""
    model.eval()
    frames = [_batch(frames=1, seed=s) for s in range(2)]
    _, _, memory = _stream(model, frames[:1])
    (cold,), z_cold, mem_cold = _stream(model, frames[1:], None, memory)
    (fresh,), z_fresh, mem_fresh = _stream(model, frames[1:], None, None)
    for a, c in zip(z_cold, z_fresh):
        torch.testing.assert_close(a, c)
    # a second frame of the sequence for the stitching; a first one without the memory
    assert (mem_cold[0].ids.frame, mem_fresh[0].ids.frame) == (1, 0)
    assert mem_cold[0].ids.max_id >= memory[0].ids.max_id


def test_frame_size_change_in_a_stream_is_an_error(model):
    model.eval()
    _, z, memory = _stream(model, [_batch(frames=1)])
    with pytest.raises(ValueError, match='frames of a stream must keep one size'):
        _stream(model, [_batch(frames=1, h=64, w=64)], None, memory)


def test_pair_of_different_sizes_in_the_head_is_an_error(model):
    model.eval()
    f1 = model.extract_feat(torch.zeros(1, 3, 32, 64))
    f2 = model.extract_feat(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match='frames of a pair must have one size'):
        model.decode_head.forward_next(f1[-1], f2)


@pytest.fixture(scope='module')
def resnet_model():
    """The same heads on a per-frame backbone (mmseg's ResNetV1c, widths 4-32)."""
    register_all_modules()
    torch.manual_seed(0)
    cfg = copy.deepcopy(CFG)
    cfg['backbone'] = dict(
        type='mmseg.ResNetV1c', depth=18, base_channels=4, stem_channels=8, norm_eval=False
    )
    cfg['decode_head']['in_channels'] = [4, 8, 16, 32]
    m = MODELS.build(cfg)
    m.init_weights()
    return m


@pytest.mark.parametrize('which', ['model', 'resnet_model'])
def test_stream_step_tracks_objects_with_perfect_heads(which, request, monkeypatch, perfect_maps):
    """The streaming step's plumbing (state, next-frame branch on the stored feature, pair
    post-processing, stitching) keeps ids of objects that swap places; the heads are replaced
    by the maps a perfect model would predict (``perfect_maps``, conftest.py). The same with an
    equilibrium backbone and with a per-frame one."""
    model = request.getfixturevalue(which)
    frame_maps = perfect_maps
    left, right = (2, 3, 1, 8, 6), (2, 3, 17, 8, 22)
    videos = [{'a': left, 'b': right}, {'a': right, 'b': left}, {'a': right, 'b': left}]
    maps = [frame_maps(videos[0])] + [frame_maps(v, p) for p, v in zip(videos, videos[1:])]
    h, w = maps[0][0].shape[-2:]
    step = {'t': 0}

    def fake_forward(feats, next_feats=None):
        sem, heat, off, _ = maps[step['t']]
        logits = torch.nn.functional.one_hot(sem, 5).permute(0, 3, 1, 2).float() * 10
        return dict(semantic=logits, center=heat, offset=off, depth=torch.ones(1, 1, h, w))

    def fake_next(high, next_feats):
        assert high.shape[0] == 1  # the stored high-level feature of the previous frame
        return maps[step['t']][3]

    monkeypatch.setattr(model.decode_head, 'forward', fake_forward)
    monkeypatch.setattr(model.decode_head, 'forward_next', fake_next)
    model.eval()
    monkeypatch.setitem(model.test_cfg, 'stuff_area', 1)
    z, memory, ids = None, [None], []
    for t in range(3):
        step['t'] = t
        s = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))
        out = model.stream_step(torch.zeros(1, 3, h, w), z, memory, Budget.steps(1), [s])
        (pred,), z, memory = out.outputs, out.z, out.memory
        pan = pred.pred_panoptic.data[0]
        ids.append(
            {k: pan[y0:y1, x0:x1].unique().tolist() for k, (_, y0, x0, y1, x1) in videos[t].items()}
        )
    assert ids[0]['a'] != ids[0]['b']
    assert ids[1] == ids[0] and ids[2] == ids[0]  # ids follow the objects across the swap


def test_a_second_solve_of_a_frame_from_the_same_memory_repeats_its_ids(
    model, monkeypatch, perfect_maps
):
    """A follow-up solve of a frame (shot-change extra iterations) starts from the memory from
    before the frame, so it gives the frame the same ids as the first solve, also for an object
    that changed place since the frame before."""
    videos = [{'a': (2, 3, 1, 8, 6), 'b': (2, 3, 17, 8, 22)}, {'a': (2, 3, 17, 8, 22)}]
    maps = [perfect_maps(videos[0]), perfect_maps(videos[1], videos[0])]
    h, w = maps[0][0].shape[-2:]
    step = {'t': 0}

    def fake_forward(feats, next_feats=None):
        sem, heat, off, _ = maps[step['t']]
        logits = torch.nn.functional.one_hot(sem, 5).permute(0, 3, 1, 2).float() * 10
        return dict(semantic=logits, center=heat, offset=off, depth=torch.ones(1, 1, h, w))

    monkeypatch.setattr(model.decode_head, 'forward', fake_forward)
    monkeypatch.setattr(model.decode_head, 'forward_next', lambda high, nf: maps[step['t']][3])
    monkeypatch.setitem(model.test_cfg, 'stuff_area', 1)
    model.eval()
    outs, mems = [], [[None]]
    for t in (0, 1, 1):  # frame 1 solved twice, both times from frame 0's memory
        step['t'] = t
        s = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), frame_id=t))
        out = model.stream_step(torch.zeros(1, 3, h, w), None, mems[t], Budget.steps(1), [s])
        mems.append(out.memory)
        outs.append(out.outputs[0].pred_panoptic.data[0].clone())
    a0 = outs[0][3:8, 1:6].unique().tolist()
    assert outs[1][3:8, 17:22].unique().tolist() == a0  # a moved right and kept its id
    assert torch.equal(outs[2], outs[1])  # the second solve of frame 1 gives the same ids


def test_streaming_padded_and_resized_frames(model):
    """Frames padded to the size divisor and shown at another original size: the state has the
    input size (so stream_zero_state(inputs) matches it), the predictions the original size."""
    model.eval()
    batches = []
    for seed in range(2):
        b = _batch(n=1, frames=1, h=30, w=60, seed=seed)
        b['data_samples'][0].set_metainfo(dict(ori_shape=(45, 90), frame_id=seed))
        batches.append(b)
    data = model.data_preprocessor(copy.deepcopy(batches[0]), False)
    zero = model.stream_zero_state(data['inputs'])
    z, memory = None, [None]
    for b in batches:
        data = model.data_preprocessor(b, False)
        out = model.stream_step(data['inputs'], z, memory, Budget.steps(1), data['data_samples'])
        (pred,), z, memory = out.outputs, out.z, out.memory
        assert pred.pred_panoptic.shape == (45, 90) and pred.pred_depth.shape == (45, 90)
    assert [tuple(t.shape) for t in zero] == [tuple(t.shape) for t in z]
    assert tuple(memory[0].size) == (30, 60)  # the maps of the unpadded frame


def test_per_frame_backbone_streams_only_the_memory(resnet_model):
    model = resnet_model.eval()
    frames = [_batch(n=1, frames=1, seed=s) for s in range(3)]
    for t, f in enumerate(frames):
        f['data_samples'][0].set_metainfo(dict(frame_id=t))
    data = model.data_preprocessor(copy.deepcopy(frames[0]), False)
    assert model.stream_zero_state(data['inputs']) == []  # no solver state
    out = model.stream_step(data['inputs'], None, [None], FULL_SOLVE, data['data_samples'])
    assert out.z == [] and out.stats is None
    (memory,) = out.memory
    assert tuple(memory.high.shape) == (1, 32, H // 32, W // 32)  # res5: 32 channels, stride 32
    # the first frame of a stream is the per-frame prediction
    (pred,) = model.predict(data['inputs'], copy.deepcopy(data['data_samples']))
    assert torch.equal(out.outputs[0].pred_panoptic.data, pred.pred_panoptic.data)
    memories = out.memory
    for f in frames[1:]:
        d = model.data_preprocessor(f, False)
        memories = model.stream_step(
            d['inputs'], [], memories, FULL_SOLVE, d['data_samples']
        ).memory
    assert memories[0].ids.max_id >= memory.ids.max_id and memories[0].ids.frame == 2
    with pytest.raises(ValueError, match='1 memories for a batch of 2 frames'):
        d = model.data_preprocessor(_batch(n=2, frames=1), False)
        model.stream_step(d['inputs'], [], memories, FULL_SOLVE, d['data_samples'])


def test_streaming_loop_runs_a_per_frame_model_as_one_setting(resnet_model):
    from types import SimpleNamespace

    from mmvideoeq.engine.loops import StreamingTestLoop

    loop = StreamingTestLoop.__new__(StreamingTestLoop)
    loop._runner = SimpleNamespace(model=resnet_model)  # (BaseLoop keeps the runner there)
    loop.skip_response = 'continue'
    loop.dataloader = [_batch(n=1, frames=1)]  # the loop reads the zero state of one frame
    (setting,) = loop.settings()
    assert setting['name'] == 'stream' and setting['warm']
    assert setting['policy']['budget'] == dict(type='FullSolve')


@pytest.mark.parametrize('gap', [0, 2.5, True])
def test_id_reuse_gap_must_be_a_positive_int(gap):
    register_all_modules()
    cfg = copy.deepcopy(CFG)
    cfg['test_cfg'] = dict(cfg['test_cfg'], id_reuse_gap=gap)
    with pytest.raises(ValueError, match='test_cfg.id_reuse_gap must be an int >= 1'):
        MODELS.build(cfg)
