"""Recursive Feature Pyramid (thesis Eq. 6.2/6.3, Sec. 6.3.3-6.3.4) and the streamed recursion.

References: mmdet's own ``RFP`` (the implementation the chapter's code became) for the default
options, and the chapter's equations written out here (ASPP branches, the fusion gate, the
feedback added to a stage's first block, the unrolled loop).
"""

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict

from mmvideoeq.deq import Budget
from mmvideoeq.registry import MODELS
from mmvideoeq.testing.detectors import randomize_, shrink_resnet_detector_cfg
from mmvideoeq.utils import register_all_modules

register_all_modules()

W = 8  # pyramid width


def _backbone(**kw):
    cfg = dict(type='DetectoRSResNet', depth=14, base_channels=2, frozen_stages=-1)
    cfg.update(kw)
    return cfg


def _neck(**kw):
    cfg = dict(
        type='RecursiveFeaturePyramid',
        in_channels=[8, 16, 32, 64],
        out_channels=W,
        num_outs=5,
        rfp_steps=2,
        aspp_out_channels=W // 4,
        rfp_backbone=_backbone(rfp_inplanes=W),
    )
    cfg.update(kw)
    return cfg


def _randomize(module, seed=0):
    return randomize_(module, seed, scale=0.2)


@pytest.fixture(scope='module')
def image():
    return torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))


def _aspp_reference(aspp, x):
    """Sec. 6.3.3: 1x1, 3x3 rate 3, 3x3 rate 6 and global-pool 1x1 branches, ReLU, concat."""
    convs = aspp.aspp
    outs = [
        F.relu(F.conv2d(x, convs[0].weight, convs[0].bias)),
        F.relu(F.conv2d(x, convs[1].weight, convs[1].bias, padding=3, dilation=3)),
        F.relu(F.conv2d(x, convs[2].weight, convs[2].bias, padding=6, dilation=6)),
    ]
    g = F.relu(F.conv2d(x.mean(dim=(2, 3), keepdim=True), convs[3].weight, convs[3].bias))
    return torch.cat(outs + [g.expand_as(outs[0])], dim=1)


def _fuse_reference(conv, prev, new):
    """Sec. 6.3.4: gate = sigmoid(conv1x1(f^{t+1})); f = gate f^{t+1} + (1 - gate) f^t."""
    gate = torch.sigmoid(F.conv2d(new, conv.weight, conv.bias))
    return gate * new + (1 - gate) * prev


@torch.no_grad()
def test_rfp_unroll_matches_equations(image):
    """T = 3, ASPP + fusion, separate backbones: Eq. 6.3 written out with the neck's parts."""
    main = _randomize(MODELS.build(_backbone(output_img=True)), 1)
    neck = _randomize(MODELS.build(_neck(rfp_steps=3)), 2)
    out = neck(main(image))
    f = neck.pyramid(main(image)[1:])  # step 1: no feedback (f^0 = 0)
    for t in range(2):
        backbone = neck.rfp_modules[t]
        feedback = [None] + [_aspp_reference(neck.rfp_aspp, f[i]) for i in (1, 2, 3)]
        new = neck.pyramid(backbone.rfp_forward(image, feedback))
        f = [_fuse_reference(neck.rfp_weight, p, n) for p, n in zip(f, new)]
    for a, b in zip(out, f):
        torch.testing.assert_close(a, b)


@torch.no_grad()
def test_rfp_defaults_equal_mmdet_rfp(image):
    """Default options = mmdet's RFP: its state dict loads strictly and gives the same output."""
    register_all_modules()
    ref_cfg = _neck()
    ref_cfg.update(type='mmdet.RFP')
    ref_cfg['rfp_backbone'] = dict(ref_cfg['rfp_backbone'], type='mmdet.DetectoRS_ResNet')
    ref_cfg['rfp_backbone']['depth'] = 50  # mmdet has no depth 14
    mine_cfg = _neck()
    mine_cfg['rfp_backbone']['depth'] = 50
    ref = _randomize(MODELS.build(ref_cfg), 3)
    mine = MODELS.build(mine_cfg).eval()
    mine.load_state_dict(ref.state_dict(), strict=True)
    main = _randomize(MODELS.build(_backbone(output_img=True)), 4)
    for a, b in zip(mine(main(image)), ref(main(image))):
        torch.testing.assert_close(a, b)


@torch.no_grad()
def test_feedback_is_added_to_first_block_of_each_stage(image):
    """Fig. 6-3: block 1 of a fed stage computes relu(F(x) + shortcut + conv1x1(R(f)))."""
    net = _randomize(MODELS.build(_backbone(rfp_inplanes=W, rfp_stages=(True,) * 4)), 5)
    assert net.feedback_stages == (0, 1, 2, 3)
    block = net.layer2[0]
    x = torch.randn(2, 8, 16, 24)
    feat = torch.randn(2, W, 8, 12)
    inner = block.norm3(
        block.conv3(block.relu(block.norm2(block.conv2(block.relu(block.norm1(block.conv1(x)))))))
    )
    expected = F.relu(inner + block.downsample(x) + block.rfp_conv(feat))
    torch.testing.assert_close(block.rfp_forward(x, feat), expected)


def test_feedback_starts_at_zero(image):
    """Sec. 6.3.2: the feedback conv starts at 0, so a fresh RFP backbone ignores feedback."""
    net = MODELS.build(_backbone(rfp_inplanes=W))
    net.init_weights()
    net.eval()
    assert net.feedback_stages == (1, 2, 3)
    with torch.no_grad():
        plain = net(image)
        feedback = [None] + [torch.randn(2, W, 64 // s, 96 // s) for s in (8, 16, 32)]
        fed = net.rfp_forward(image, feedback)
    for a, b in zip(plain, fed):
        torch.testing.assert_close(a, b)


def test_init_restores_the_chapter_init():
    """mmdet's from-scratch init makes every conv Kaiming; the SAC switch is reset to 0/1."""
    net = MODELS.build(
        _backbone(
            rfp_inplanes=W,
            sac=dict(type='SwitchableAtrousConv', use_deform=True, deform_impl='torch'),
            stage_with_sac=(False, True, True, True),
        )
    )
    net.init_weights()
    sac = net.layer3[0].conv2
    assert sac.switch.weight.abs().sum() == 0 and sac.switch.bias.item() == 1
    assert sac.offset_s.weight.abs().sum() == 0 and sac.pre_context.weight.abs().sum() == 0
    assert net.layer3[0].rfp_conv.weight.abs().sum() == 0


@torch.no_grad()
def test_rfp_options(image):
    main = _randomize(MODELS.build(_backbone(output_img=True)), 6)
    feats = main(image)
    # no fusion: f^2 is the new pyramid itself
    neck = _randomize(MODELS.build(_neck(with_fusion=False)), 7)
    assert not hasattr(neck, 'rfp_weight')
    f1 = neck.pyramid(feats[1:])
    fb = [None] + [neck.rfp_aspp(f1[i]) for i in (1, 2, 3)]
    expected = neck.pyramid(neck.rfp_modules[0].rfp_forward(image, fb))
    for a, b in zip(neck(feats), expected):
        torch.testing.assert_close(a, b)
    # no ASPP: R is the identity
    neck = _randomize(MODELS.build(_neck(with_aspp=False)), 8)
    assert not hasattr(neck, 'rfp_aspp')
    f1 = neck.pyramid(feats[1:])
    new = neck.pyramid(neck.rfp_modules[0].rfp_forward(image, [None] + f1[1:4]))
    expected = [_fuse_reference(neck.rfp_weight, p, n) for p, n in zip(f1, new)]
    for a, b in zip(neck(feats), expected):
        torch.testing.assert_close(a, b)


@torch.no_grad()
def test_shared_backbone_runs_the_detector_backbone(image):
    shared = _randomize(MODELS.build(_backbone(output_img=True, rfp_inplanes=W)), 9)
    neck = _randomize(MODELS.build(_neck(share_backbone=True, rfp_backbone=None)), 10)
    assert not hasattr(neck, 'rfp_modules')
    feats = shared(image)
    f1 = neck.pyramid(feats[1:])
    fb = [None] + [_aspp_reference(neck.rfp_aspp, f1[i]) for i in (1, 2, 3)]
    new = neck.pyramid(shared.rfp_forward(image, fb))
    expected = [_fuse_reference(neck.rfp_weight, p, n) for p, n in zip(f1, new)]
    for a, b in zip(neck(feats, backbone=shared), expected):
        torch.testing.assert_close(a, b)
    with pytest.raises(TypeError, match='share_backbone=True needs the detector backbone'):
        neck(feats)


def test_bad_rfp_input():
    with pytest.raises(ValueError, match='rfp_steps must be an int >= 1'):
        MODELS.build(_neck(rfp_steps=0))
    with pytest.raises(TypeError, match='cannot take RFP feedback'):
        MODELS.build(_neck(rfp_backbone=dict(type='mmdet.ResNet', depth=18)))
    with pytest.raises(TypeError, match='without rfp_inplanes'):
        MODELS.build(_neck(rfp_backbone=_backbone()))
    with pytest.raises(ValueError, match='rfp_inplanes=4'):
        MODELS.build(_neck(rfp_backbone=_backbone(rfp_inplanes=4)))
    with pytest.raises(ValueError, match='needs rfp_backbone'):
        MODELS.build(_neck(rfp_backbone=None))


# ---------------------------------------------------------------------------------- detectors
def _detector(**neck):
    from mmengine.config import Config

    cfg = Config.fromfile('configs/detectors/cascade-rcnn_r50-detectors_1x_coco.py').model
    model = shrink_resnet_detector_cfg(cfg.to_dict())
    model['type'] = 'DetectoRSFasterRCNN'
    model['roi_head'] = dict(
        type='mmdet.StandardRoIHead',
        bbox_roi_extractor=model['roi_head']['bbox_roi_extractor'],
        bbox_head=dict(model['roi_head']['bbox_head'][0], num_classes=3),
    )
    model['train_cfg']['rcnn'] = model['train_cfg']['rcnn'][0]
    for k in ('sac', 'stage_with_sac'):
        model['backbone'].pop(k)
        model['neck']['rfp_backbone'].pop(k)
    model['neck'].update(neck)
    torch.manual_seed(0)
    det = MODELS.build(ConfigDict(model))
    return _randomize(det, 11)


def _samples(n, h=64, w=96):
    from mmdet.structures import DetDataSample

    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w), scale_factor=(1.0, 1.0))
    return [DetDataSample(metainfo=dict(meta, batch_input_shape=(h, w))) for _ in range(n)]


def test_detector_checks_backbone():
    from mmengine.config import Config

    cfg = Config.fromfile('configs/detectors/cascade-rcnn_r50-detectors_1x_coco.py').model
    model = shrink_resnet_detector_cfg(cfg.to_dict())
    model['backbone']['output_img'] = False
    with pytest.raises(ValueError, match='output_img=True'):
        MODELS.build(ConfigDict(model))
    model['backbone']['output_img'] = True
    model['neck'].update(share_backbone=True, rfp_backbone=None)
    with pytest.raises(TypeError, match='shared by every RFP step'):
        MODELS.build(ConfigDict(model))


@pytest.fixture(scope='module')
def detector():
    return _detector(rfp_steps=3)


@torch.no_grad()
def test_stream_cold_equals_per_image_detector(detector, image):
    """M = T from the zero state is the detector of the chapter; M = 1 is 'no feedback'."""
    z0 = detector.stream_zero_state(image)
    cold = detector.extract_feat(image)
    assert [tuple(t.shape) for t in z0] == [tuple(t.shape) for t in cold]
    assert all(t.abs().sum() == 0 for t in z0)
    preds, z, _, stats = detector.stream_step(image, None, None, Budget.steps(3), _samples(2))
    for a, b in zip(z, cold):
        torch.testing.assert_close(a, b)
    assert stats.nstep.tolist() == [3, 3]
    torch.testing.assert_close(stats.rel_trace[:, 0], torch.ones(2))  # ||G(0) - 0|| / ||G(0)||
    ref = detector.predict(image, _samples(2))
    torch.testing.assert_close(preds[0].pred_instances.bboxes, ref[0].pred_instances.bboxes)
    _, z1, _, _ = detector.stream_step(image, None, None, Budget.steps(1), _samples(2))
    for a, b in zip(z1, detector.neck.pyramid(detector.backbone(image)[1:])):
        torch.testing.assert_close(a, b)


@torch.no_grad()
def test_stream_warm_step_and_mixed_batch(detector, image):
    """A carried state takes feedback steps with the last backbone; streams are independent."""
    _, prev, _, _ = detector.stream_step(image, None, None, Budget.steps(2), _samples(2))
    _, warm, _, _ = detector.stream_step(image, prev, None, Budget.steps(1), _samples(2))
    expected = detector.neck.feedback_step(image, prev, step=2, backbone=detector.backbone)
    for a, b in zip(warm, expected):
        torch.testing.assert_close(a, b)
    # sample 0 cold, sample 1 warm, solved together == each alone
    zero = detector.stream_zero_state(image[:1])
    mixed0 = [torch.cat([a, b[1:]]) for a, b in zip(zero, prev)]
    _, mixed, _, _ = detector.stream_step(image, mixed0, None, Budget.steps(2), _samples(2))
    _, alone0, _, _ = detector.stream_step(image[:1], None, None, Budget.steps(2), _samples(1))
    _, alone1, _, _ = detector.stream_step(
        image[1:], [t[1:] for t in prev], None, Budget.steps(2), _samples(1)
    )
    for m, a0, a1 in zip(mixed, alone0, alone1):
        torch.testing.assert_close(m, torch.cat([a0, a1]), rtol=1e-5, atol=1e-5)


def test_stream_needs_rfp():
    model = _detector()
    model.neck = torch.nn.Identity()
    with pytest.raises(TypeError, match='RecursiveFeaturePyramid'):
        model.stream_zero_state(torch.zeros(1, 3, 32, 32))


def test_train_steps_draws_the_unroll_depth(image):
    """Training draws T' in [lo, hi] (steps past rfp_steps reuse the last backbone); eval: T."""
    main = _randomize(MODELS.build(_backbone(output_img=True)), 12)
    neck = _randomize(MODELS.build(_neck(train_steps=(1, 3))), 13)
    feats = main(image)
    with torch.no_grad():
        f1 = neck.pyramid(feats[1:])
        unrolled = [f1]
        for _ in range(2):  # the same (only) feedback backbone at steps 2 and 3
            unrolled.append(neck.feedback_step(image, unrolled[-1], 1))
        neck.train()
        seen = set()
        torch.manual_seed(0)
        for _ in range(12):
            out = neck(feats)
            match = [k for k, ref in enumerate(unrolled) if torch.allclose(out[0], ref[0])]
            assert len(match) == 1
            seen.add(match[0] + 1)
        assert seen == {1, 2, 3}
        neck.eval()
        torch.testing.assert_close(neck(feats)[0], unrolled[1][0])  # rfp_steps = 2
    with pytest.raises(ValueError, match='train_steps'):
        MODELS.build(_neck(train_steps=(0, 2)))


# ------------------------------------------------------------------------ bounded feedback
def test_feedback_bound_squashes_the_feedback():
    """R_c(f) = c tanh(R(f) / c) on the fed-back stages, ASPP written out."""
    neck = _randomize(MODELS.build(_neck(feedback_bound=0.5)), 3)
    gen = torch.Generator().manual_seed(4)
    z = [torch.randn(2, W, 16 // 2**i, 24 // 2**i, generator=gen) * 10 for i in range(5)]
    with torch.no_grad():
        out = neck.connect(z, (1, 2, 3))
        for i in (1, 2, 3):
            expected = 0.5 * torch.tanh(_aspp_reference(neck.rfp_aspp, z[i]) / 0.5)
            torch.testing.assert_close(out[i], expected)
            assert out[i].abs().max() <= 0.5
    assert out[0] is None and out[4] is None
    with pytest.raises(ValueError, match='feedback_bound must be finite and > 0'):
        MODELS.build(_neck(feedback_bound=0.0))
    with pytest.raises(TypeError, match='feedback_bound must be a number'):
        MODELS.build(_neck(feedback_bound='8'))


@torch.no_grad()
def test_bounded_recursion_stays_in_the_range_of_its_fresh_pyramids():
    """Carried for 20 steps on a model with large weights, the chapter's recursion grows by
    orders of magnitude; with feedback_bound every element of the carried pyramid stays within
    the largest magnitude of the fresh pyramids F(B(x, R_c(f))) it fused (the fusion is convex)."""
    img = torch.randn(1, 3, 32, 48, generator=torch.Generator().manual_seed(1))
    norms = {}
    for bound in (None, 1.0):
        main = randomize_(MODELS.build(_backbone(output_img=True)), 1, 0.5)
        neck = randomize_(MODELS.build(_neck(feedback_bound=bound)), 2, 0.5)
        net = neck.rfp_modules[0]
        f = neck.pyramid(main(img)[1:])
        hull = [t.abs() for t in f]
        for _ in range(20):
            out = neck.feedback_step(img, f, 1)
            if bound is not None:  # the step written out: squashed ASPP feedback, fusion gate
                r = (
                    [None]
                    + [
                        bound * torch.tanh(_aspp_reference(neck.rfp_aspp, f[i]) / bound)
                        for i in (1, 2, 3)
                    ]
                    + [None]
                )
                new = neck.pyramid(net.rfp_forward(img, r[:4]))
                expected = [_fuse_reference(neck.rfp_weight, p, n) for p, n in zip(f, new)]
                for a, b in zip(out, expected):
                    torch.testing.assert_close(a, b)
                hull = [torch.maximum(h, n.abs()) for h, n in zip(hull, new)]
                assert all((o.abs() <= h * (1 + 1e-6)).all() for o, h in zip(out, hull))
            f = out
        norms[bound] = float(sum(t.pow(2).sum() for t in f).sqrt())
    assert norms[None] > 1e6 * norms[1.0]
