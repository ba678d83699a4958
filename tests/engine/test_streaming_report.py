"""The streaming report's plots: cold curves beside the streamed ones, readable axis titles, a
legend instead of point labels, bootstrap bands; the PNGs are read back."""

import json

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgb
from matplotlib.image import imread

from mmvideoeq.engine.loops.streaming_report import StreamingReport, metric_label

LABELS = ['0', '1', '2', '3+']


def _setting(name, level, timing_ms):
    """A setting of a DVPS-like sweep: DVPQ and PQ curves with bootstrap intervals."""
    iters = 8 if name == 'full' else int(name.split('@')[1])
    dvpq = [level + 2 * i for i in range(4)]
    pq = [v + 10 for v in dvpq]
    metrics = {
        'dvps/DVPQ': float(np.mean(dvpq)),
        'dvps/PQ': float(np.mean(pq)),
        'dvps/VPQ_k1': 1.0,
        'dvps/offset_curve/DVPQ': dict(zip(LABELS, dvpq)),
        'dvps/offset_curve/PQ': dict(zip(LABELS, pq)),
        'dvps/offset_curve/num_frames': dict.fromkeys(LABELS, 2),
        'dvps/offset_curve_ci/DVPQ': {k: [v - 1, v + 1] for k, v in zip(LABELS, dvpq)},
        'dvps/offset_curve_ci/PQ': {k: [v - 3, v + 3] for k, v in zip(LABELS, pq)},
        'depth/offset_curve/image/silog': dict(zip(LABELS, [30.0] * 4)),
    }
    return dict(
        iters=iters, warm=name.startswith('stream'), metrics=metrics, frames=8,
        mean_iters=iters, mean_evals=iters, mean_ms=timing_ms,
        timing=dict(median_ms=timing_ms, min_ms=timing_ms - 1, max_ms=timing_ms + 1),
        mid_stream_resets=0, skipped=[], diverged=[], residual_outliers=0,
    )  # fmt: skip


@pytest.fixture
def report(tmp_path):
    report = StreamingReport(str(tmp_path), solver='fixed_point')
    # cold@8 and full share a point, where labels used to collide
    for name, level, ms in (
        ('stream@1', 20, 10), ('stream@2', 22, 12), ('cold@1', 10, 9), ('cold@2', 21, 11),
        ('full', 23, 20),
    ):  # fmt: skip
        report.add(name, _setting(name, level, ms))
    return report


def test_metric_labels():
    assert metric_label('vid/exact/bbox_mAP_50') == 'box mAP@0.5 (ImageNet-VID protocol)'
    assert metric_label('mIoU') == 'mIoU (%)'
    assert metric_label('dvps/DVPQ').startswith('DVPQ (%')
    assert metric_label('depth/image/silog') == 'SILog (x100) (depth, image)'
    assert metric_label('some/new_metric_key') == 'new metric key'


def test_curves_panels_cold_dashed_bands(report):
    fig = report.curves_figure()
    axes = np.array(fig.axes[:4]).reshape(2, 2)  # rows DVPQ, PQ; columns M = 1, 2
    assert [ax.get_title() for ax in axes[0]] == ['M = 1 step', 'M = 2 steps']
    assert axes[0][0].get_ylabel().startswith('DVPQ (%') and axes[1][0].get_ylabel() == 'PQ (%)'
    for row, key in zip(axes, ('DVPQ', 'PQ')):
        for ax, m in zip(row, (1, 2)):
            lines = {(line.get_linestyle(), to_rgb(line.get_color())) for line in ax.lines}
            color = to_rgb(f'C{m - 1}')
            assert lines == {('-', color), ('--', color), (':', (0.0, 0.0, 0.0))}, (key, m)
            # the streamed curve's values and its band's edges are the metric's numbers
            stream = next(line for line in ax.lines if line.get_linestyle() == '-')
            curve = report.data['settings'][f'stream@{m}']['metrics'][f'dvps/offset_curve/{key}']
            assert list(stream.get_ydata()) == list(curve.values())
            bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
            assert len(bands) == 2  # streamed, cold (the full solve is the reference line)
            ci = report.data['settings'][f'stream@{m}']['metrics'][f'dvps/offset_curve_ci/{key}']
            ys = bands[0].get_paths()[0].vertices[:, 1]
            assert min(ys) == min(lo for lo, _ in ci.values())
            assert max(ys) == max(hi for _, hi in ci.values())
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [
        'streamed (warm start)',
        'cold start, same M',
        'full solve',
        '95 % bootstrap interval over videos',
    ]
    assert '2 frames per offset' in fig._suptitle.get_text()


def test_cost_figure_has_a_legend_not_labels(report):
    fig = report.cost_figure()
    assert len(fig.axes) == 4  # DVPQ and PQ rows, f evals and ms columns
    assert all(not ax.texts for ax in fig.axes)  # no point labels that could overlap
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ['streamed (warm start)', 'cold start', 'full solve', 'M = 1', 'M = 2']
    assert fig.axes[0].get_ylabel().startswith('DVPQ') and fig.axes[2].get_ylabel() == 'PQ (%)'
    assert 'n = 8 frames per point' in fig._suptitle.get_text()


def test_pngs_are_written_and_show_the_curves(report, tmp_path):
    for path in (report.plot_curves(), report.plot_cost()):
        image = imread(path)[..., :3]
        height, width = image.shape[:2]
        assert width >= 700 and height >= 400, path
        ink = (image < 0.9).any(-1).mean()
        assert 0.02 < ink < 0.6, (path, ink)  # neither blank nor a filled canvas
        for color in ('C0', 'C1'):  # the streamed and cold colours are drawn
            near = np.abs(image - np.array(to_rgb(color))).max(-1) < 0.05
            assert near.sum() > 100, (path, color)


def test_mAP_gaps_and_settings_without_budget(tmp_path):
    report = StreamingReport(str(tmp_path))
    metrics = {
        'vid/bbox_mAP_50': 0.5,
        'vid/offset_curve/bbox_mAP_50': {'0': 0.5, '1': -1, '2+': 0.4},
        'vid/offset_curve_ci/bbox_mAP_50': {'0': [0.4, 0.6], '1': [-1, -1], '2+': [0.3, 0.5]},
    }
    curves = report.curves_of(metrics)
    labels, ys, bands = curves['vid/bbox_mAP_50']
    assert labels == ['0', '1', '2+'] and ys[0] == 0.5 and np.isnan(ys[1])
    assert bands[0] == (0.4, 0.6) and np.isnan(bands[1][0])
    # a model without a solver state streams as one setting, 'stream'
    report.add('stream', dict(_setting('stream@1', 20, 10), metrics=metrics, mean_evals=0))
    fig = report.curves_figure()
    assert fig.axes[0].get_title() == 'streamed'
    assert report.cost_figure().axes[0].get_xscale() == 'linear'  # 0 evaluations: no log axis
    assert imread(report.plot_curves()).shape[1] >= 400
    saved = json.loads(open(report.write_json()).read())
    assert saved['settings']['stream']['metrics']['vid/offset_curve_ci/bbox_mAP_50']['0'] == [
        0.4,
        0.6,
    ]
