"""Streaming mIoU in the real-time simulation: RealtimeSweep on hand-made label maps (expected
values from mmseg's own IoUMetric on the pairs the schedule gives), and one StreamingTestLoop
run of the bundled segmentation config and checkpoint on the tiny rendered benchmark."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from mmseg.evaluation import IoUMetric

from mmvideoeq.engine.loops.streaming_report import StreamingReport
from mmvideoeq.evaluation.metrics import IoUScoring
from mmvideoeq.streaming.realtime import LatencyTable
from mmvideoeq.testing import one_setting_sweep

ROOT = Path(__file__).resolve().parents[2]
SEG = 'mdeq-tiny-sur8_800it_bundled-cityscapes'
N_CLS = 4
VIDEOS = {'a': 5, 'b': 3}


def _maps(seed=0):
    rng = np.random.default_rng(seed)
    gts, preds = {}, {}
    for v, n in VIDEOS.items():
        gts[v] = [rng.integers(0, N_CLS, (6, 8)).astype(np.uint8) for _ in range(n)]
        for g in gts[v]:
            g[rng.random(g.shape) < 0.1] = 255
        gts[v][1] = None if v == 'b' else gts[v][1]  # a frame without annotation
        preds[v] = [
            np.where(rng.random((6, 8)) < 0.7, g if g is not None else 0, 0).astype(np.uint8)
            for g in gts[v]
        ]
    return gts, preds


def _sweep(tmp_path, ms):
    gts, preds = _maps()
    return one_setting_sweep(tmp_path, ms, gts, preds), gts, preds


def _mmseg(pairs):
    """mmseg's IoUMetric on (prediction, GT) pairs; a prediction None is the documented empty
    map (every pixel -1, no class)."""
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dict(classes=[str(k) for k in range(N_CLS)])
    for pred, gt in pairs:
        pred = np.full(gt.shape, -1) if pred is None else pred
        sample = dict(
            pred_sem_seg=dict(data=torch.from_numpy(pred.astype(np.int64))[None]),
            gt_sem_seg=dict(data=torch.from_numpy(gt.astype(np.int64))[None]),
        )
        metric.process({}, [sample])
    return metric.compute_metrics(metric.results)


def test_offline_equals_mmseg_and_streaming_pairs_the_previous_frame(tmp_path):
    sweep, gts, preds = _sweep(tmp_path, 50.0)
    scoring = IoUScoring(num_classes=N_CLS)
    out = sweep.run(scoring)
    assert out['task'] == 'segmentation' and out['keys'] == ['mIoU', 'aAcc']
    res = out['settings']['cold@1']
    own = [(preds[v][t], g) for v in VIDEOS for t, g in enumerate(gts[v]) if g is not None]
    expected = _mmseg(own)
    for key in ('mIoU', 'aAcc', 'mAcc'):
        assert res['offline'][key] == float(expected[key])
    # 50 ms < 100 ms: every frame is taken, frame t's output is ready at t/10 + 0.05, so with
    # eta 0 frame t is answered by frame t - 1's output and frame 0 by nothing (empty)
    late = [
        (preds[v][t - 1] if t else None, g)
        for v in VIDEOS
        for t, g in enumerate(gts[v])
        if g is not None
    ]
    expected = _mmseg(late)
    got = res['fps']['10']
    for key in ('mIoU', 'aAcc', 'mAcc'):
        assert got[key] == float(expected[key])
    assert got['mIoU'] < res['offline']['mIoU']
    assert got['counts'] == dict(num_frames=7, in_time=0, miss=2, mismatch=5)
    assert out['best_fixed']['10'] == dict(setting='cold@1', mIoU=got['mIoU'])
    # eta -1 (each frame answered when the next arrives): the frame's own output, the offline value
    sweep.eta = -1.0
    again = sweep.run(scoring)['settings']['cold@1']['fps']['10']
    assert again['mIoU'] == res['offline']['mIoU'] and again['counts']['in_time'] == 7


def test_report_table_flat_metrics_and_plot(tmp_path):
    sweep, _, _ = _sweep(tmp_path, 50.0)
    report = StreamingReport(str(tmp_path), metric=None)
    report.data['realtime'] = rt = sweep.run(IoUScoring(num_classes=N_CLS))
    table = report.format_realtime_table()
    lines = table.splitlines()
    assert 'mmseg mIoU' in lines[0] and 'COCO' not in lines[0]
    assert lines[1].split('|')[2].strip() == 'mIoU' and '10 fps: smIoU' in lines[1]
    got = rt['settings']['cold@1']
    row = [c.strip() for c in lines[3].split('|')]
    assert row[2:5] == [f"{got['offline']['mIoU']:.2f}", f"{got['offline']['aAcc']:.2f}", '50.0']
    assert row[5:7] == [f"{got['fps']['10']['mIoU']:.2f}", f"{got['fps']['10']['aAcc']:.2f}"]
    assert f"best setting cold@1 (smIoU {got['fps']['10']['mIoU']:.2f})" in table
    report.data['settings'] = {}
    flat = report.flat_metrics()
    assert flat == {
        'cold@1/smIoU@10fps': got['fps']['10']['mIoU'],
        'cold@1/saAcc@10fps': got['fps']['10']['aAcc'],
    }
    path = report.plot_sap()
    assert path.endswith('miou_vs_fps.png') and Path(path).is_file()


@pytest.fixture(scope='module')
def loop_results(tmp_path_factory):
    from mmengine.config import Config

    from benchgen import generate_benchmark
    from mmvideoeq.testing import run_streaming_test, tiny_data_cfg
    from mmvideoeq.utils import register_all_modules

    register_all_modules()
    tmp = tmp_path_factory.mktemp('rt_seg')
    generate_benchmark(tmp / 'bench', preset='tiny', seed=0, formats=('cityscapes',))
    table = tmp / 'latency.json'
    LatencyTable(
        device='test', measured='by hand', latency_ms={'stream@1': 50.0, 'cold@1': 50.0}
    ).save(table)
    cfg = Config.fromfile(str(ROOT / 'configs/streamdeq_seg' / f'{SEG}.py'))
    cfg = tiny_data_cfg(cfg, tmp / 'bench', 'seg')
    cfg.test_evaluator = dict(type='StreamingIoUMetric', iou_metrics=['mIoU'], ci_resamples=0)
    cfg.load_from = str(ROOT / 'checkpoints' / f'{SEG}.pth')
    return run_streaming_test(
        cfg,
        tmp / 'work',
        iters=[1],
        full_solve=False,
        # eta -1: frame i answered at (i + 1) / fps; at 10 fps the 50 ms output of frame i is
        # ready by then (its own), at 80 fps the first output is ready 4 frames after the start
        realtime=dict(fps=[10, 80], eta=-1, latency_table=str(table), scheduler=False),
    )


def test_loop_reports_streaming_miou_next_to_the_evaluator_miou(loop_results):
    metrics, data = loop_results
    rt = data['realtime']
    assert rt['task'] == 'segmentation' and list(rt['settings']) == ['stream@1', 'cold@1']
    for name, res in rt['settings'].items():
        miou = data['settings'][name]['metrics']['mIoU']
        assert res['offline']['mIoU'] == pytest.approx(miou, abs=1e-9)  # same scorer, fps inf
        # every annotated frame (the last of each clip of 1, 2, 5, 10, 20 frames) answered
        # by its own output at 10 fps; replayed (stream@1) or not, the accuracy pass's value
        fast = res['fps']['10']
        assert fast['mIoU'] == pytest.approx(miou, abs=1e-9)
        assert fast['counts'] == dict(num_frames=5, in_time=5, miss=0, mismatch=0)
        # at 80 fps the annotated frames 0 and 1 (clips of 1 and 2 frames) have no output
        slow = res['fps']['80']
        assert slow['counts']['num_frames'] == 5 and slow['counts']['miss'] == 2
        assert slow['mIoU'] < miou
        assert metrics[f'{name}/smIoU@80fps'] == slow['mIoU']


def test_segmentation_scoring_is_found_in_the_evaluator(tmp_path):
    from mmvideoeq.engine.loops.realtime_driver import segmentation_scoring
    from mmvideoeq.evaluation.metrics import StreamingIoUMetric

    metric = StreamingIoUMetric(iou_metrics=['mIoU', 'mDice'], ignore_index=250)
    metric.dataset_meta = dict(classes=('a', 'b', 'c'))
    writer = IoUMetric(format_only=True, output_dir=str(tmp_path))  # scores nothing: not used
    writer.dataset_meta = metric.dataset_meta
    assert segmentation_scoring([writer, metric]) == IoUScoring(
        num_classes=3, ignore_index=250, iou_metrics=('mIoU', 'mDice')
    )
    assert segmentation_scoring([writer]) is None
