"""Bad command-line input ends with one line naming the problem, not a traceback (issue 2)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CFG = ROOT / 'configs' / 'streamdeq_vid.py'


def _run(tool, *args):
    out = subprocess.run(
        [sys.executable, str(ROOT / 'tools' / tool), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    return out.returncode, out.stderr.strip()


def _one_line_error(rc, err, pattern):
    assert rc == 2, err[-2000:]
    lines = err.splitlines()
    assert 'Traceback' not in err, err[-2000:]
    assert lines[-1].startswith('error: ')
    assert pytest.importorskip('re').search(pattern, lines[-1]), lines[-1]


def test_missing_config(tmp_path):
    rc, err = _run('train.py', tmp_path / 'nope.py')
    _one_line_error(rc, err, r'config file not found: .*nope\.py')


def test_unknown_cfg_options_key(tmp_path):
    rc, err = _run(
        'train.py', CFG, '--work-dir', tmp_path, '--cfg-options', 'model.backbone.no_such_key=3'
    )
    _one_line_error(rc, err, r"key 'model\.backbone\.no_such_key' does not exist")


def test_unknown_registry_type(tmp_path):
    cfg = tmp_path / 'bad.py'
    cfg.write_text(f"_base_ = '{CFG}'\nmodel = dict(type='NoSuchDetector')\n")
    rc, err = _run('test.py', cfg, ROOT / 'README.md', '--work-dir', tmp_path)
    _one_line_error(rc, err, r'unknown type NoSuchDetector')


def test_missing_checkpoint(tmp_path):
    rc, err = _run('test.py', CFG, tmp_path / 'missing.pth', '--work-dir', tmp_path)
    _one_line_error(rc, err, r'checkpoint not found: .*missing\.pth')


def test_unsafe_checkpoint_is_refused(tmp_path):
    import os

    import torch

    class Evil:
        def __reduce__(self):
            return (os.system, ('true',))

    ckpt = tmp_path / 'evil.pth'
    torch.save(dict(state_dict={}, meta=dict(x=Evil())), ckpt)
    rc, err = _run('test.py', CFG, ckpt, '--work-dir', tmp_path)
    _one_line_error(rc, err, r'refused to load checkpoint')
