"""The staged streaming interface of the DEQ models, on the shipped bundled-VID MDEQ detector:
``stream_step`` is the stages composed and gives the solver's ``z^[M]`` and the heads on it; a
pipelined stream gives exactly the sequential stream's predictions."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
import torch

from mmvideoeq.deq import Budget
from mmvideoeq.streaming import PipelinedStream, StreamFrame, StreamPolicy, run_stream

ROOT = Path(__file__).resolve().parents[2]
CFG = ROOT / 'configs' / 'streamdeq_vid' / 'faster-rcnn_mdeq-tiny-sur8_16e_bundled-vid.py'
CKPT = ROOT / 'checkpoints' / 'faster-rcnn_mdeq-tiny-sur8_16e_bundled-vid.pth'


@pytest.fixture(scope='module')
def detector():
    from mmengine.config import Config

    from mmvideoeq.registry import MODELS
    from mmvideoeq.utils import register_all_modules
    from mmvideoeq.utils.checkpoint import load_weights

    register_all_modules()
    model = MODELS.build(Config.fromfile(str(CFG)).model)
    load_weights(model, str(CKPT))
    return model.eval()


@pytest.fixture(scope='module')
def frames(detector):
    """The first 4 frames of the bundled benchmark's first VID val video, as the test pipeline
    gives them (BGR, resized 1.5x to 240x144), pre-processed by the model."""
    from mmdet.structures import DetDataSample

    from benchgen.benchmark import render_benchmark_video

    video = render_benchmark_video('vid', 'val', 0, preset='small', seed=0)
    out = []
    for t in range(4):
        img = cv2.resize(video.frames[t][..., ::-1], (240, 144), interpolation=cv2.INTER_LINEAR)
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(144, 240),
                ori_shape=video.frames[t].shape[:2],
                scale_factor=(1.5, 1.5),
                video_id='val0',
                frame_id=t,
            )
        )
        inputs = torch.from_numpy(img.copy()).permute(2, 0, 1)
        data = detector.data_preprocessor(dict(inputs=[inputs], data_samples=[sample]), False)
        out.append((data['inputs'], data['data_samples'][0]))
    return out


def _stream_frames(frames):
    return [StreamFrame(x.clone(), 'val0', t, payload=s.clone()) for t, (x, s) in enumerate(frames)]


def _dets(sample):
    p = sample.pred_instances
    return p.bboxes, p.scores, p.labels


@torch.no_grad()
def test_stream_step_is_m_layer_applications_then_the_heads(detector, frames):
    x, sample = frames[0]
    net = detector.backbone.net
    inj = net.injection(net.stem(x))
    z = net.init_state(x)
    for _ in range(3):  # the fixed-point solver: z^[3] = f(f(f(0)))
        z = net.layer(z, [inj] + [None] * (len(z) - 1))
    expected = detector.predict_from_feats(tuple(z), [sample.clone()])[0]
    out = detector.stream_step(x, None, [None], Budget.steps(3), [sample.clone()])
    assert out.memory == [None] and out.stats.n_eval == 3
    for a, b in zip(out.z, z):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    for a, b in zip(_dets(out.outputs[0]), _dets(expected)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
    stages = detector.stream_stages()
    composed = stages.step(x, None, [None], Budget.steps(3), [sample.clone()])
    assert all(torch.equal(a, b) for a, b in zip(composed.z, out.z))


def test_pipelined_stream_gives_the_sequential_predictions(detector, frames):
    policy = lambda: StreamPolicy(budget=dict(type='FixedBudget', iters=2))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the pipeline's stages run 1 intra-op thread each, as here
    try:
        seq = run_stream(
            detector.stream_step,
            _stream_frames(frames),
            policy(),
            zeros_like_fn=detector.stream_zero_state,
        )
    finally:
        torch.set_num_threads(threads)
    pipe = PipelinedStream(
        detector.stream_stages(), policy(), zeros_like_fn=detector.stream_zero_state
    )
    run = pipe.run(_stream_frames(frames))
    assert [r.init for r in run.records] == ['zeros', 'warm', 'warm', 'warm']
    assert sum(len(o.pred_instances) for o in run.outputs) > 0
    for a, b in zip(seq.outputs, run.outputs):
        assert all(torch.equal(u, v) for u, v in zip(_dets(a), _dets(b)))
    assert all(torch.equal(a, b) for a, b in zip(seq.states['val0'].z, run.states['val0'].z))
