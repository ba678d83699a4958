"""Streaming PQ / DVPQ in the real-time simulation: RealtimeSweep on hand-made panoptic maps
(expected values from DVPQMetric itself on the pairs the schedule gives), the report of a
panoptic sweep, and one StreamingTestLoop run of the bundled ViP-DeepLab config and checkpoint on
the tiny rendered Cityscapes-DVPS benchmark."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmvideoeq.engine.loops.streaming_report import StreamingReport
from mmvideoeq.evaluation.functional import DVPQProtocol
from mmvideoeq.evaluation.metrics import DVPQMetric, DVPQScoring, PanopticFrame
from mmvideoeq.streaming.realtime import LatencyTable
from mmvideoeq.testing import dvpq_of_pairs, one_setting_sweep

ROOT = Path(__file__).resolve().parents[2]
DVPS = 'vip-deeplab_mdeq-tiny-sur8_600it_bundled-cityscapes-dvps'
PROTOCOL = DVPQProtocol(
    num_classes=3, label_divisor=100, ignore_label=9, thing_ids=(2,), windows=(1, 2, 3),
    thresholds=(0.5, 0.25), average='valid',
)  # fmt: skip
VIDEOS = {'a': 5, 'b': 3}


def _frames(seed=0):
    rng = np.random.default_rng(seed)
    gts, preds = {}, {}
    for v, n in VIDEOS.items():
        gts[v], preds[v] = [], []
        for _ in range(n):
            ids = rng.choice(np.array([0, 100, 201, 202, 900]), size=(6, 8))
            depth = rng.uniform(1.0, 5.0, (6, 8)).astype(np.float32)
            depth[rng.random((6, 8)) < 0.2] = 0.0  # invalid ground-truth depth
            pred = np.where(rng.random((6, 8)) < 0.8, ids, rng.choice([0, 201, 300], (6, 8)))
            pred_depth = depth * rng.uniform(0.7, 1.3, (6, 8)).astype(np.float32)
            gts[v].append(PanopticFrame(ids, depth))
            preds[v].append(PanopticFrame(pred, pred_depth))
    return gts, preds


def _sweep(tmp_path, ms):
    gts, preds = _frames()
    return one_setting_sweep(tmp_path, ms, gts, preds), gts, preds


def test_offline_equals_dvpq_metric_and_streaming_pairs_the_previous_frame(tmp_path):
    sweep, gts, preds = _sweep(tmp_path, 50.0)
    scoring = DVPQScoring(PROTOCOL)
    out = sweep.run(scoring)
    assert out['task'] == 'panoptic' and out['keys'] == ['DVPQ', 'PQ']
    assert out['protocol'] == dict(windows=[1, 2, 3], thresholds=[0.5, 0.25], average='valid')
    res = out['settings']['cold@1']
    expected = dvpq_of_pairs(PROTOCOL, {v: list(zip(gts[v], preds[v])) for v in VIDEOS})
    for key in ('DVPQ', 'VPQ', 'PQ', 'PQ_th', 'VPQ_k3', 'DVPQ_k2_l0.25'):
        assert res['offline'][key] == pytest.approx(expected[key], abs=1e-9)
    # 50 ms < 100 ms: every frame is taken, frame t's output is ready at t/10 + 0.05, so with
    # eta 0 frame t is answered by frame t - 1's output and frame 0 by nothing (empty)
    late = {v: [(g, preds[v][t - 1] if t else None) for t, g in enumerate(gts[v])] for v in VIDEOS}
    expected = dvpq_of_pairs(PROTOCOL, late)
    got = res['fps']['10']
    for key in ('DVPQ', 'VPQ', 'PQ', 'PQ_st', 'VPQ_k2', 'DVPQ_k3_l0.5'):
        assert got[key] == pytest.approx(expected[key], abs=1e-9)
    assert got['DVPQ'] < res['offline']['DVPQ']
    assert got['counts'] == dict(num_frames=8, in_time=0, miss=2, mismatch=6)
    assert got['num_windows_k3'] == 3 + 1
    assert out['best_fixed']['10'] == dict(setting='cold@1', DVPQ=got['DVPQ'])
    # eta -1 (each frame answered when the next arrives): its own output, the offline value
    sweep.eta = -1.0
    again = sweep.run(scoring)['settings']['cold@1']['fps']['10']
    assert again['DVPQ'] == res['offline']['DVPQ'] and again['counts']['in_time'] == 8


def test_report_table_flat_metrics_and_plot(tmp_path):
    sweep, _, _ = _sweep(tmp_path, 50.0)
    report = StreamingReport(str(tmp_path), metric=None)
    report.data['realtime'] = rt = sweep.run(DVPQScoring(PROTOCOL))
    table = report.format_realtime_table()
    lines = table.splitlines()
    assert 'DVPQMetric (windows k [1, 2, 3], depth thresholds [0.5, 0.25]' in lines[0]
    assert 'empty prediction (void ids, depth 0); DVPQ: every frame' in lines[0]
    assert [c.strip() for c in lines[1].split('|')[2:4]] == ['DVPQ', 'PQ']
    assert '10 fps: sDVPQ' in lines[1] and '| sPQ ' in lines[1]
    got = rt['settings']['cold@1']
    row = [c.strip() for c in lines[3].split('|')]
    assert row[2:5] == [f"{got['offline']['DVPQ']:.2f}", f"{got['offline']['PQ']:.2f}", '50.0']
    assert row[5:8] == [f"{got['fps']['10']['DVPQ']:.2f}", f"{got['fps']['10']['PQ']:.2f}", '0/2/6']
    assert f"best setting cold@1 (sDVPQ {got['fps']['10']['DVPQ']:.2f})" in table
    report.data['settings'] = {}
    assert report.flat_metrics() == {
        'cold@1/sDVPQ@10fps': got['fps']['10']['DVPQ'],
        'cold@1/sPQ@10fps': got['fps']['10']['PQ'],
    }
    path = report.plot_sap()
    assert path.endswith('dvpq_vs_fps.png') and Path(path).is_file()


@pytest.fixture(scope='module')
def loop_results(tmp_path_factory):
    from mmengine.config import Config

    from benchgen import generate_benchmark
    from mmvideoeq.testing import run_streaming_test, tiny_dvps_data_cfg
    from mmvideoeq.utils import register_all_modules

    ckpt = ROOT / 'checkpoints' / f'{DVPS}.pth'
    if not ckpt.is_file():
        pytest.skip(f'{ckpt.name} not shipped in this checkout')
    register_all_modules()
    tmp = tmp_path_factory.mktemp('rt_dvps')
    generate_benchmark(tmp / 'bench', preset='tiny', seed=0, formats=('cityscapes_dvps',))
    table = tmp / 'latency.json'
    LatencyTable(
        device='test', measured='by hand', latency_ms={'stream@1': 50.0, 'cold@1': 50.0}
    ).save(table)
    cfg = Config.fromfile(str(ROOT / 'configs/vip_deeplab' / f'{DVPS}.py'))
    cfg = tiny_dvps_data_cfg(cfg, tmp / 'bench')
    cfg.test_evaluator = dict(
        type='DVPQMetric', protocol='cityscapes_dvps', average='valid', ci_resamples=0
    )
    cfg.load_from = str(ckpt)
    return run_streaming_test(
        cfg,
        tmp / 'work',
        iters=[1],
        full_solve=False,
        # eta -1: frame i answered at (i + 1) / fps; at 10 fps the 50 ms output of frame i is
        # ready by then (its own); at 40 fps (25 ms a frame) the worker takes every other frame
        realtime=dict(fps=[10, 40], eta=-1, latency_table=str(table), scheduler=False),
    )


def test_loop_reports_streaming_dvpq_next_to_the_evaluator_dvpq(loop_results):
    metrics, data = loop_results
    rt = data['realtime']
    assert rt['task'] == 'panoptic' and rt['keys'] == ['DVPQ', 'PQ']
    assert list(rt['settings']) == ['stream@1', 'cold@1']
    for name, res in rt['settings'].items():
        evaluated = data['settings'][name]['metrics']
        n = data['settings'][name]['frames']
        for key in ('DVPQ', 'VPQ', 'PQ', 'VPQ_k4', 'DVPQ_k1_l0.1'):
            # the same scorer at fps inf: the DVPQMetric of the accuracy pass
            assert res['offline'][key] == pytest.approx(evaluated[f'dvps/{key}'], abs=1e-9)
            # at 10 fps with eta -1 every frame is answered by its own output: replayed
            # (stream@1) or not, the accuracy pass's value
            assert res['fps']['10'][key] == pytest.approx(evaluated[f'dvps/{key}'], abs=1e-9)
        assert res['fps']['10']['counts'] == dict(num_frames=n, in_time=n, miss=0, mismatch=0)
        # at 40 fps (frame i answered at (i + 1) * 25 ms) the simulated worker of the one
        # 6-frame video takes frames 0 and 2 (outputs at 50 and 100 ms): frame 0 has no answer
        # yet (empty), frames 1-2 get frame 0's output, frames 3-5 frame 2's (stale, same ids)
        slow = res['fps']['40']
        assert n == 6 and slow['traces']['000000']['input_index'] == [0, 2]
        assert slow['counts'] == dict(num_frames=6, in_time=0, miss=1, mismatch=1 + 2 + 1 + 2 + 3)
        assert slow['PQ'] != res['offline']['PQ'] and slow['VPQ'] != res['offline']['VPQ']
        assert metrics[f'{name}/sDVPQ@40fps'] == slow['DVPQ']
        assert metrics[f'{name}/sPQ@10fps'] == res['fps']['10']['PQ']


def test_panoptic_scoring_is_found_in_the_evaluator():
    from mmseg.evaluation import IoUMetric

    from mmvideoeq.engine.loops.realtime_driver import panoptic_scoring
    from mmvideoeq.evaluation.metrics import KittiDepthMetric

    metric = DVPQMetric('semkitti_dvps')
    assert panoptic_scoring([KittiDepthMetric(), metric]) == DVPQScoring(metric.protocol)
    assert panoptic_scoring([IoUMetric()]) is None
