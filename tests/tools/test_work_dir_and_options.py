"""tools/train.py and tools/test.py: a work dir in use, unwritable or reused, ``dict(...)`` values
in ``--cfg-options``, and a test whose settings end without a metric (NaN weights)."""

import builtins
import errno
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from mmvideoeq.utils.cli import LOCK_NAME, claim_work_dir, settings_without_metric

ROOT = Path(__file__).resolve().parents[2]
CFG = ROOT / 'configs' / 'streamdeq_vid.py'
VID = ROOT / 'configs' / 'streamdeq_vid' / 'faster-rcnn_mdeq-tiny-sur8_16e_bundled-vid.py'


def _load_tool(tool):
    spec = importlib.util.spec_from_file_location(f'tool_{tool[:-3]}', ROOT / 'tools' / tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TOOLS = {name: _load_tool(name) for name in ('train.py', 'test.py')}


@pytest.fixture
def run_tool(capsys, monkeypatch):
    """Runs a tool's main() in this process; returns (exit code, stderr)."""

    def run(tool, *args):
        monkeypatch.setattr(sys, 'argv', [tool, *map(str, args)])
        monkeypatch.chdir(ROOT)
        try:
            TOOLS[tool].main()
            code = 0
        except SystemExit as exc:
            code = exc.code
        return code, capsys.readouterr().err.strip()

    return run


def _last_error(err):
    assert 'Traceback' not in err, err[-3000:]
    return err.splitlines()[-1]


def _checkpoint(path):
    torch.save(dict(state_dict=dict(w=torch.zeros(1))), path)
    return path


def test_cfg_options_dict_values_are_parsed():
    """mmengine's DictAction recurses without end on ``dict(...)`` (RecursionError)."""
    args = TOOLS['train.py'].parse_args(
        [
            str(CFG),
            '--cfg-options',
            "model.backbone.init_cfg=dict(type='Pretrained', checkpoint='x.pth', prefix=None)",
            'a.b={"k": [1, -2.5, (3, 4)]}',
            'c=[1,2]',
            'd=word',
        ]
    )
    assert args.cfg_options == {
        'model.backbone.init_cfg': dict(type='Pretrained', checkpoint='x.pth', prefix=None),
        'a.b': {'k': [1, -2.5, (3, 4)]},
        'c': [1, 2],
        'd': 'word',
    }
    cfg = TOOLS['train.py'].build_cfg(args)
    assert cfg.model.backbone.init_cfg.checkpoint == 'x.pth'


def test_unreadable_cfg_options_value_is_one_line(run_tool, tmp_path):
    rc, err = run_tool(
        'train.py', CFG, '--work-dir', tmp_path, '--cfg-options', 'a=dict(type=f(1))'
    )
    assert rc == 2
    assert _last_error(err).startswith("error: --cfg-options a: cannot read 'dict(type=f(1))'")


def test_work_dir_in_use_is_refused(run_tool, tmp_path):
    work = tmp_path / 'work'
    work.mkdir()
    other = subprocess.Popen(['sleep', '60'])
    try:
        (work / LOCK_NAME).write_text(
            json.dumps(
                dict(
                    pid=other.pid,
                    host=socket.gethostname(),
                    started='now',
                    argv=['tools/test.py', 'x.py'],
                )
            )
        )
        rc, err = run_tool('test.py', CFG, _checkpoint(tmp_path / 'c.pth'), '--work-dir', work)
        assert rc == 2
        line = _last_error(err)
        assert f"--work-dir '{work}' is in use by another run (pid {other.pid}" in line
        assert 'tools/test.py x.py' in line
        rc, err = run_tool('train.py', CFG, '--work-dir', work)
        assert rc == 2 and 'is in use by another run' in _last_error(err)
    finally:
        other.kill()
        other.wait()
    assert (work / LOCK_NAME).exists()  # the other run's lock is left alone


def test_stale_lock_is_taken_over_and_released(tmp_path):
    dead = subprocess.Popen(['true'])
    dead.wait()
    (tmp_path / LOCK_NAME).write_text(json.dumps(dict(pid=dead.pid, host=socket.gethostname())))
    with claim_work_dir(str(tmp_path)):
        assert json.loads((tmp_path / LOCK_NAME).read_text())['pid'] == os.getpid()
        with pytest.raises(Exception, match='is in use by another run'):
            with claim_work_dir(str(tmp_path)):
                pass
    assert not (tmp_path / LOCK_NAME).exists()


@pytest.mark.parametrize(
    'code, where',
    [(errno.EROFS, 'makedirs'), (errno.EACCES, 'makedirs'), (errno.ENOSPC, 'open')],
)
def test_unwritable_work_dir_is_one_line(run_tool, tmp_path, monkeypatch, code, where):
    """A read-only, forbidden or full work dir (simulated: the tests run as root)."""
    ckpt = _checkpoint(tmp_path / 'c.pth')
    work = tmp_path / 'work'
    real_makedirs, real_open = os.makedirs, builtins.open

    def makedirs(path, *a, **k):
        if str(path).startswith(str(work)):
            raise OSError(code, os.strerror(code), str(path))
        return real_makedirs(path, *a, **k)

    def open_(path, mode='r', *a, **k):
        if str(path).startswith(str(work)) and any(c in mode for c in 'wax+'):
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, mode, *a, **k)

    if where == 'makedirs':
        monkeypatch.setattr(os, 'makedirs', makedirs)
    monkeypatch.setattr(builtins, 'open', open_)
    rc, err = run_tool('test.py', CFG, ckpt, '--work-dir', work)
    assert rc == 2
    line = _last_error(err)
    assert line.startswith(f"error: cannot write to the work dir '{work}': {os.strerror(code)}")


def test_settings_without_metric():
    metrics = {
        'stream@1/vid/num_frames': 0,
        'stream@1/vid/num_skipped_frames': 4,
        'full/vid/bbox_mAP_50': 0.5,
        'full/vid/offset_curve/x': [1.0],
    }
    assert settings_without_metric(metrics, ['stream@1', 'cold@1', 'full']) == [
        'stream@1',
        'cold@1',
    ]
    assert settings_without_metric({'coco/bbox_mAP': 0.0, 'coco/num_x': 1}) == []
    assert settings_without_metric({'coco/num_frames': 0}) == ['coco']


@pytest.fixture(scope='module')
def tiny_vid(tmp_path_factory):
    """The bundled VID config on a tiny benchmark (a config file) and an all-NaN checkpoint."""
    from benchgen import generate_benchmark
    from mmvideoeq.registry import MODELS
    from mmvideoeq.testing import shrink_model_cfg, tiny_data_cfg
    from mmvideoeq.utils import register_all_modules

    root = tmp_path_factory.mktemp('tiny_vid')
    generate_benchmark(root / 'data', preset='tiny', seed=0, formats=('vid',))
    register_all_modules()
    cfg = Config.fromfile(str(VID))
    cfg.model = shrink_model_cfg(cfg.model.to_dict())
    cfg = tiny_data_cfg(cfg, root / 'data', 'vid')
    cfg.test_dataloader.dataset.indices = [0, 1, 2]
    cfg.log_level = 'WARNING'
    cfg.dump(str(root / 'cfg.py'))
    state = MODELS.build(cfg.model).state_dict()
    state = {k: v.fill_(float('nan')) if v.is_floating_point() else v for k, v in state.items()}
    torch.save(dict(state_dict=state), root / 'nan.pth')
    return root


def test_nan_checkpoint_refused_and_no_metric_exits_non_zero(run_tool, tiny_vid, tmp_path):
    cfg, ckpt, work = tiny_vid / 'cfg.py', tiny_vid / 'nan.pth', tmp_path / 'work'
    stream = ['--streaming', '--iters', '1', '--no-baseline', '--no-full-solve', '--no-timing']
    rc, err = run_tool('test.py', cfg, ckpt, '--work-dir', work, *stream)
    assert rc == 2
    assert re.search(
        r"checkpoint '.*nan\.pth' holds non-finite \(NaN/inf\) values in \d+ tensor\(s\) "
        r'\(backbone\.',
        _last_error(err),
    ), err
    # evaluated anyway: every frame diverges, results are written, the exit status says so
    for run in (1, 2):
        rc, err = run_tool(
            'test.py', cfg, ckpt, '--work-dir', work, *stream, '--allow-nonfinite-weights'
        )
        assert rc == 1, err[-3000:]
        assert _last_error(err).startswith(
            'error: no metric for stream@1: every frame was skipped or diverged'
        )
        report = json.loads((work / 'streaming' / 'results.json').read_text())
        assert len(report['settings']['stream@1']['diverged']) == 3
        if run == 2:
            assert f'note: {work / "streaming"} holds the results of an earlier run' in err
    # each run's results stay in its own timestamped run folder, beside its own log
    copies = sorted(work.glob('*/streaming/results.json'))
    assert len(copies) == 2
    assert all(len(list(p.parent.parent.glob('*.log'))) == 1 for p in copies)
    assert not (work / LOCK_NAME).exists()
