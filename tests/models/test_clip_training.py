"""Training on carried states (mmvideoeq.models.clip_training) and its two users: the streaming RFP
detector and the MDEQ detector (a streaming-aware SUR).

The truncation test uses a scalar recursion ``z_t = a z_{t-1} + w x_t`` whose gradients are written
out by hand; the detector tests check, on tiny models, that a frame's loss reaches the frames of
its window and no earlier one, and that the training step is the streamed test's step.
"""

import pytest
import torch
from mmengine.config import Config, ConfigDict

from mmvideoeq.models.clip_training import ClipSchedule, ClipTrainConfig, carried_state_loss
from mmvideoeq.registry import MODELS
from mmvideoeq.structures import CLIP_INDEX_KEY, CLIP_STEP_KEY
from mmvideoeq.testing import shrink_model_cfg
from mmvideoeq.utils import register_all_modules

register_all_modules()


def _meta(clip, step, video=None, frame=None):
    meta = {CLIP_INDEX_KEY: clip, CLIP_STEP_KEY: step}
    if video is not None:
        meta.update(video_id=video, frame_id=frame)
    return meta


class Toy(torch.nn.Module):
    """``z_t = a z_{t-1} + w mean(x_t)``; the loss of a step is the mean of its frames' ``z``."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(0.5))
        self.w = torch.nn.Parameter(torch.tensor(2.0))
        self.seen = []

    def clip_train_step(self, x, z0, cfg):
        self.seen.append(None if z0 is None else z0[0])
        z = self.w * x.mean((1, 2, 3))
        if z0 is not None:
            z = z + self.a * z0[0]
        return [z], z, {}

    def loss_from_feats(self, feats, samples):
        assert len(samples) == feats.shape[0]
        return {'loss': feats.mean()}


def test_truncated_backprop_matches_hand_gradients():
    toy = Toy()
    c = torch.tensor([1.0, -2.0, 3.0, 0.5])  # one clip of 4 frames, frame t is the constant c_t
    x = (c[:, None, None, None] * torch.ones(4, 1, 2, 2)).requires_grad_()
    samples = [_meta(0, t, 'v', 10 + t) for t in range(4)]
    schedule = ClipSchedule.from_samples(samples)
    loss = carried_state_loss(toy, x, samples, schedule, ClipTrainConfig(truncate=2))['loss']
    a, w = 0.5, 2.0
    z0 = w * c[0]
    z1 = a * z0 + w * c[1]
    z2 = a * z1 + w * c[2]
    z3 = a * z2 + w * c[3]
    torch.testing.assert_close(loss, (z0 + z1 + z2 + z3) / 4)  # the loss of every frame
    loss.backward()
    # dL/dc_t: frame t's own loss and the later frames of its window (windows {0, 1}, {2, 3})
    dc = torch.tensor([w * (1 + a), w, w * (1 + a), w]) / 4
    torch.testing.assert_close(x.grad.sum((1, 2, 3)), dc)
    # dL/da: the state entering frame 2 is a constant (detached), so dz3/da = z2 + a z1
    torch.testing.assert_close(toy.a.grad, (z0 + z1 + z2 + a * z1) / 4)
    assert toy.seen[0] is None and toy.seen[1].requires_grad and not toy.seen[2].requires_grad
    # without truncation the gradient reaches back to frame 0 from every frame
    toy2 = Toy()
    x2 = x.detach().clone().requires_grad_()
    full = ClipTrainConfig(truncate=4)
    carried_state_loss(toy2, x2, samples, schedule, full)['loss'].backward()
    dc_full = torch.tensor([w * (1 + a + a**2 + a**3), w * (1 + a + a**2), w * (1 + a), w]) / 4
    torch.testing.assert_close(x2.grad.sum((1, 2, 3)), dc_full)


def test_ragged_clips_and_frame_weights():
    """Clips of 3 and 1 frames given in any order; the loss is the mean over all 4 frames."""
    toy = Toy()
    samples = [_meta(1, 0), _meta(0, 2), _meta(0, 0), _meta(0, 1)]
    schedule = ClipSchedule.from_samples(samples)
    assert schedule.steps == ((2, 0), (3,), (1,)) and schedule.clips == ((0, 1), (0,), (0,))
    c = torch.tensor([4.0, 3.0, 1.0, 2.0])
    x = c[:, None, None, None] * torch.ones(4, 1, 1, 1)
    loss = carried_state_loss(toy, x, samples, schedule, ClipTrainConfig(truncate=8))['loss']
    za0 = 2.0 * 1.0
    za1 = 0.5 * za0 + 2.0 * 2.0
    za2 = 0.5 * za1 + 2.0 * 3.0
    zb0 = 2.0 * 4.0
    torch.testing.assert_close(loss.detach(), torch.tensor((za0 + za1 + za2 + zb0) / 4))


def test_schedule_and_config_errors():
    assert ClipSchedule.from_samples([{'video_id': 1}, {}]) is None  # a per-frame batch
    with pytest.raises(ValueError, match='1 of 2 samples have no clip_index'):
        ClipSchedule.from_samples([_meta(0, 0), {}])
    with pytest.raises(ValueError, match='steps 0..L-1'):
        ClipSchedule.from_samples([_meta(0, 0), _meta(0, 2)])
    with pytest.raises(ValueError, match='step 0 twice'):
        ClipSchedule.from_samples([_meta(0, 0), _meta(0, 0)])
    with pytest.raises(ValueError, match='not consecutive frames of one video'):
        ClipSchedule.from_samples([_meta(0, 0, 'v', 3), _meta(0, 1, 'v', 5)])
    with pytest.raises(ValueError, match='not consecutive frames of one video'):
        ClipSchedule.from_samples([_meta(0, 0, 'v', 3), _meta(0, 1, 'w', 4)])
    with pytest.raises(ValueError, match='truncate must be >= 1'):
        ClipTrainConfig(truncate=0)
    with pytest.raises(ValueError, match='stream_steps must be'):
        ClipTrainConfig(stream_steps=(3, 1))
    with pytest.raises(ValueError, match='unknown keys'):
        ClipTrainConfig.build(dict(truncation=2))
    assert ClipTrainConfig.build(dict(cold_steps=[1, 2])).cold_steps == (1, 2)


# ------------------------------------------------------------------------------ real detectors
def _det_samples(n_frames, h=64, w=96, clip=0, video=7):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    samples = []
    for t in range(n_frames):
        meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w), scale_factor=(1.0, 1.0))
        meta.update(batch_input_shape=(h, w), **_meta(clip, t, video, t))
        s = DetDataSample(metainfo=meta)
        box = torch.tensor([[8.0 + 4 * t, 10.0, 40.0 + 4 * t, 50.0]])
        s.gt_instances = InstanceData(bboxes=box, labels=torch.tensor([1]))
        samples.append(s)
    return samples


def _build(path):
    cfg = Config.fromfile(path)
    torch.manual_seed(0)
    model = MODELS.build(ConfigDict(shrink_model_cfg(cfg.model.to_dict())))
    model.init_weights()
    return model


@pytest.fixture(scope='module')
def rfp_detector():
    return _build('configs/detectors/faster-rcnn_r26-tiny-detectors-stream_16e_bundled-vid.py')


def _total(losses):
    return sum(v.sum() if torch.is_tensor(v) else sum(v) for k, v in losses.items() if 'loss' in k)


def _frame_losses(model, inputs, samples, cfg):
    """Run carried_state_loss, keeping each time step's own total loss."""
    per_step = []
    inner = model.loss_from_feats

    def record(feats, step_samples):
        losses = inner(feats, step_samples)
        per_step.append(
            sum(v.sum() if torch.is_tensor(v) else sum(v) for k, v in losses.items() if 'loss' in k)
        )
        return losses

    model.loss_from_feats = record
    try:
        carried_state_loss(model, inputs, samples, ClipSchedule.from_samples(samples), cfg)
    finally:
        del model.loss_from_feats
    return per_step


def test_rfp_clip_gradient_stays_in_its_window(rfp_detector):
    """truncate=2 over 3 frames: frame 1's loss reaches frame 0, frame 2's does not."""
    model = rfp_detector
    model.train()
    torch.manual_seed(1)
    x = torch.randn(3, 3, 64, 96, requires_grad=True)
    cfg = ClipTrainConfig(stream_steps=1, cold_steps=1, truncate=2)
    losses = _frame_losses(model, x, _det_samples(3), cfg)
    assert len(losses) == 3
    g1 = torch.autograd.grad(losses[1], x, retain_graph=True)[0]
    g2 = torch.autograd.grad(losses[2], x)[0]
    assert g1[0].abs().sum() > 0 and g1[2].abs().sum() == 0
    assert g2[0].abs().sum() == 0 and g2[1].abs().sum() == 0 and g2[2].abs().sum() > 0


def test_rfp_clip_step_is_the_streamed_step(rfp_detector):
    """In eval mode the training step's pyramids equal stream_step's (cold T, then warm 1)."""
    from mmvideoeq.deq import Budget

    model = rfp_detector
    model.eval()
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        cold, _, _ = model.clip_train_step(x, None, ClipTrainConfig(cold_steps=2))
        ref = model.stream_step(x, None, [None] * 2, Budget.steps(2), _det_samples(2)).z
        for a, b in zip(cold, ref):
            torch.testing.assert_close(a, b)
        warm, _, _ = model.clip_train_step(x, ref, ClipTrainConfig(stream_steps=1))
        ref2 = model.stream_step(x, ref, [None] * 2, Budget.steps(1), _det_samples(2)).z
        for a, b in zip(warm, ref2):
            torch.testing.assert_close(a, b)


def test_rfp_detector_trains_on_a_clip_batch(rfp_detector):
    """Two clips (3 and 1 frames) through model.loss; every loss finite, parameters get grads."""
    model = rfp_detector
    model.train()
    samples = _det_samples(3, clip=0, video=1) + _det_samples(1, clip=1, video=2)
    x = torch.randn(4, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    losses = model.loss(x, samples)
    total = _total(losses)
    assert torch.isfinite(total)
    total.backward()
    feedback = model.neck.rfp_modules[0].layer2[0].rfp_conv.weight.grad
    assert feedback is not None and feedback.abs().sum() > 0  # carried frames train the feedback


def test_mdeq_detector_trains_on_carried_states():
    """The MDEQ (SUR) detector: warm frames take stream_steps unrolled steps from the carried
    fixed point, and with truncate=2 frame 1's loss reaches frame 0."""
    model = _build('configs/streamdeq_vid/faster-rcnn_mdeq-tiny-sur8-stream_16e_bundled-vid.py')
    model.train()
    x = torch.randn(3, 3, 64, 96, generator=torch.Generator().manual_seed(4)).requires_grad_()
    cfg = ClipTrainConfig(stream_steps=1, cold_steps=2, truncate=2)
    losses = _frame_losses(model, x, _det_samples(3), cfg)
    g1 = torch.autograd.grad(losses[1], x, retain_graph=True)[0]
    g2 = torch.autograd.grad(losses[2], x)[0]
    assert g1[0].abs().sum() > 0 and g2[0].abs().sum() == 0 and g2[1].abs().sum() == 0
    z0 = [t.detach() for t in model.backbone.init_stream_state(x[:1])]
    z0 = [t + 0.1 for t in z0]
    model.eval()
    with torch.no_grad():
        z, _, _ = model.clip_train_step(x[:1], z0, ClipTrainConfig(stream_steps=2))
        inj = model.backbone.net.injection_features(x[:1])
        ref = model.backbone.net.layer(model.backbone.net.layer(z0, inj), inj)
    for a, b in zip(z, ref):
        torch.testing.assert_close(a, b)
