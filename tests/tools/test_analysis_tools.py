"""tools/analysis_tools: analyze_logs (matplotlib only), get_flops per budget, browse_dataset."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
VID = ROOT / 'configs' / 'streamdeq_vid' / 'faster-rcnn_mdeq-tiny-sur8_16e_bundled-vid.py'


def _load_tool(name):
    path = ROOT / 'tools' / 'analysis_tools' / name
    spec = importlib.util.spec_from_file_location(f'analysis_{path.stem}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LOGS, FLOPS, BROWSE = (
    _load_tool(n) for n in ('analyze_logs.py', 'get_flops.py', 'browse_dataset.py')
)


def _run(module, monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, 'argv', ['tool.py', *map(str, args)])
    try:
        module.main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def work_dir(tmp_path):
    """A work dir as mmengine writes it: <timestamp>/vis_data/scalars.json, JSON lines."""
    lines = []
    for epoch in (1, 2):
        for i, (loss, t) in enumerate(((2.0, 0.9), (1.5, 0.5), (1.0, 0.4))):
            step = (epoch - 1) * 3 + i + 1
            lines.append(dict(lr=0.01, loss=loss / epoch, time=t * epoch, epoch=epoch, step=step))
        lines.append({'coco/bbox_mAP': 0.1 * epoch, 'data_time': 0.01, 'step': epoch})
    run = tmp_path / 'work' / '20250101_000000' / 'vis_data'
    run.mkdir(parents=True)
    (run / 'scalars.json').write_text('\n'.join(json.dumps(x) for x in lines) + '\n')
    return tmp_path / 'work'


def test_logs_are_split_into_training_and_evaluation(work_dir):
    logs = LOGS.load_scalars(LOGS.find_scalars(str(work_dir)))
    assert len(logs['train']) == 6 and len(logs['val']) == 2
    steps, values = LOGS.series(logs, 'loss')
    assert steps.tolist() == [1, 2, 3, 4, 5, 6]
    assert values.tolist() == [2.0, 1.5, 1.0, 1.0, 0.75, 0.5]
    steps, values = LOGS.series(logs, 'coco/bbox_mAP')
    assert steps.tolist() == [1, 2] and values.tolist() == [0.1, 0.2]
    assert LOGS._label('coco/bbox_mAP_50') == 'bbox mAP 50 (coco)'  # no internal key as title


def test_plot_curve_writes_one_panel_per_key(work_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / 'curves.png'
    args = ('plot_curve', work_dir, '--keys', 'loss', 'coco/bbox_mAP', '--dpi', '50', '--out', out)
    code, stdout, err = _run(LOGS, monkeypatch, capsys, *args)
    assert code == 0, err
    img = cv2.imread(str(out))
    assert img.shape == (int(2 * 2.6 * 50), 7 * 50, 3)  # figsize (7, 2.6 per key) at 50 dpi
    line = np.all(np.abs(img.astype(int) - (180, 119, 31)) < 40, axis=2)  # matplotlib C0, BGR
    half = img.shape[0] // 2
    assert line[:half].sum() > 50 and line[half:].sum() > 20  # a curve in each panel
    code, _, err = _run(LOGS, monkeypatch, capsys, 'plot_curve', work_dir, '--keys', 'nope')
    assert code == 2 and "no log holds the key 'nope'" in err


def test_train_time(work_dir, monkeypatch, capsys):
    code, out, err = _run(LOGS, monkeypatch, capsys, 'cal_train_time', work_dir)
    assert code == 0, err
    # times 0.9 0.5 0.4 | 1.8 1.0 0.8; mmdet leaves out each epoch's first logged time
    assert 'slowest epoch 2, average time is 0.9000' in out  # (1.0 + 0.8) / 2
    assert 'fastest epoch 1, average time is 0.4500' in out  # (0.5 + 0.4) / 2
    assert 'time std over epochs is 0.2250' in out  # std of (0.45, 0.9)
    assert 'average iter time: 0.6750 s/iter over 4 logged iterations' in out
    code, out, _ = _run(LOGS, monkeypatch, capsys, 'cal_train_time', work_dir, '--include-outliers')
    assert 'average iter time: 0.9000 s/iter over 6' in out  # 5.4 / 6


def test_flop_counter_counts_a_convolution():
    conv = torch.nn.Conv2d(4, 8, 3, padding=1, bias=False)
    flops = FLOPS.count_flops(lambda: conv(torch.zeros(1, 4, 10, 12)))
    assert flops == 2 * 4 * 8 * 9 * 10 * 12  # 2 x multiply-adds


def test_flops_per_budget(tmp_path, monkeypatch, capsys):
    out = tmp_path / 'flops.json'
    args = (VID, '--iters', '1', '2', '8', '--shape', '48', '80', '--out', out)
    code, stdout, err = _run(FLOPS, monkeypatch, capsys, *args)
    assert code == 0, err
    summary = json.loads(out.read_text())
    flops = {r['setting']: r['flops'] for r in summary['rows']}
    # one fixed-point step costs the same at every budget: the count is affine in M
    step = flops['stream@2'] - flops['stream@1']
    assert step > 0 and flops['stream@8'] - flops['stream@1'] == 7 * step
    assert summary['per_step_flops'] == pytest.approx(step)
    # the config's full solve is 8 fixed-point steps: the cost of stream@8
    assert flops['full'] == flops['stream@8']
    assert 'one solver step:' in stdout and 'stream@8' in stdout


@pytest.fixture(scope='module')
def tiny_vid(tmp_path_factory):
    root = tmp_path_factory.mktemp('bundled')
    subprocess.run(
        [sys.executable, str(ROOT / 'tools' / 'data' / 'make_benchmark.py'), '--out', str(root),
         '--preset', 'tiny', '--formats', 'vid'],
        check=True, capture_output=True, env={'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1'},
    )  # fmt: skip
    return root / 'ILSVRC'


def test_browse_dataset_keeps_every_frame_of_every_video(tiny_vid, tmp_path, monkeypatch, capsys):
    frames = sorted((tiny_vid / 'Data' / 'VID' / 'val').glob('*/*.JPEG'))
    assert len(frames) == 8 and len({f.name for f in frames}) == 4  # names repeat across videos
    out = tmp_path / 'browse'
    args = ('--phase', 'val', '--output-dir', out, '--cfg-options')
    args += (f'val_dataloader.dataset.data_root={tiny_vid}/',)
    code, stdout, err = _run(BROWSE, monkeypatch, capsys, VID, *args)
    assert code == 0, err
    written = sorted(out.rglob('*.JPEG'))
    assert len(written) == 8 and len({p.parent.name for p in written}) == 2  # one folder a video
    import mmcv

    h, w = cv2.imread(str(frames[0])).shape[:2]
    size = mmcv.rescale_size((w, h), (240, 144))  # the test pipeline's keep-ratio Resize
    for path in written:
        drawn = cv2.imread(str(path))
        assert drawn.shape == (size[1], size[0], 3)
    plain = cv2.resize(cv2.imread(str(frames[0])), size)
    first = cv2.imread(str(written[0]))
    assert np.abs(first.astype(int) - plain).max() > 100  # the ground-truth boxes are drawn
