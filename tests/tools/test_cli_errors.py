"""Bad command-line input ends with one line naming the problem, not a traceback; checkpoints are
loaded weights-only on every path, whatever the environment says."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
CFG = ROOT / 'configs' / 'streamdeq_vid.py'


def _load_tool(tool):
    spec = importlib.util.spec_from_file_location(f'tool_{tool[:-3]}', ROOT / 'tools' / tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TOOLS = {name: _load_tool(name) for name in ('train.py', 'test.py')}


@pytest.fixture
def run_tool(capsys, monkeypatch):
    """Runs a tool's main() in this process (as its command line would) and returns (exit code,
    stderr); in-process because every subprocess would import the OpenMMLab stack again."""

    def run(tool, *args, env=None):
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr(sys, 'argv', [tool, *map(str, args)])
        monkeypatch.chdir(ROOT)
        try:
            TOOLS[tool].main()
            code = 0
        except SystemExit as exc:
            code = exc.code
        return code, capsys.readouterr().err.strip()

    return run


def _one_line_error(rc, err, pattern):
    assert rc == 2, err[-2000:]
    lines = err.splitlines()
    assert 'Traceback' not in err, err[-2000:]
    assert lines[-1].startswith('error: ')
    assert re.search(pattern, lines[-1]), lines[-1]


def _dummy_checkpoint(path):
    torch.save(dict(state_dict=dict(w=torch.zeros(1))), path)
    return path


def test_missing_config(tmp_path, run_tool):
    rc, err = run_tool('train.py', tmp_path / 'nope.py')
    _one_line_error(rc, err, r'config file not found: .*nope\.py')


def test_new_cfg_options_key_is_added_with_a_warning(tmp_path, run_tool):
    """As mmdet: a key the config lacks is added (here the model then refuses it by name)."""
    rc, err = run_tool(
        'train.py', CFG, '--work-dir', tmp_path, '--cfg-options', 'model.backbone.no_such_key=3'
    )
    assert "warning: --cfg-options adds 'model.backbone.no_such_key'" in err
    _one_line_error(rc, err, r"MDEQ has no argument 'no_such_key'")


def test_unknown_registry_type(tmp_path, run_tool):
    cfg = tmp_path / 'bad.py'
    cfg.write_text(f"_base_ = '{CFG}'\nmodel = dict(type='NoSuchDetector')\n")
    rc, err = run_tool(
        'test.py', cfg, _dummy_checkpoint(tmp_path / 'c.pth'), '--work-dir', tmp_path
    )
    _one_line_error(rc, err, r'unknown type NoSuchDetector')


def test_missing_checkpoint(tmp_path, run_tool):
    rc, err = run_tool('test.py', CFG, tmp_path / 'missing.pth', '--work-dir', tmp_path)
    _one_line_error(rc, err, r'checkpoint not found: .*missing\.pth')


def test_swapped_arguments_and_work_dir_file_are_named(tmp_path, run_tool):
    ckpt = _dummy_checkpoint(tmp_path / 'c.pth')
    rc, err = run_tool('test.py', ckpt, CFG)
    _one_line_error(rc, err, r'is a \.py file; the arguments are CONFIG CHECKPOINT')
    rc, err = run_tool('train.py', ckpt)
    _one_line_error(rc, err, r'looks like a checkpoint, not a config')
    work = tmp_path / 'a_file'
    work.write_text('')
    rc, err = run_tool('test.py', CFG, ckpt, '--work-dir', work)
    _one_line_error(rc, err, r'--work-dir .* is a file')


def _broken_checkpoints(tmp_path):
    data = _dummy_checkpoint(tmp_path / 'ok.pth').read_bytes()
    (tmp_path / 'empty.pth').write_bytes(b'')
    (tmp_path / 'text.pth').write_text('<html>404 Not Found</html>')
    (tmp_path / 'truncated.pth').write_bytes(data[: len(data) // 2])
    legacy = tmp_path / 'legacy.pth'
    torch.save(
        dict(state_dict=dict(w=torch.zeros(64))), legacy, _use_new_zipfile_serialization=False
    )
    raw = legacy.read_bytes()
    (tmp_path / 'truncated_legacy.pth').write_bytes(raw[: len(raw) // 2])
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / 'script.pth')
    return {
        'empty.pth': r'empty file \(0 bytes\)',
        'text.pth': r'is a text file, not a checkpoint',
        'truncated.pth': r'truncated or corrupt',
        'truncated_legacy.pth': r'truncated or corrupt',
        'script.pth': r'TorchScript archive',
    }


def test_broken_checkpoint_files_get_one_clear_message_each(tmp_path, run_tool):
    for name, pattern in _broken_checkpoints(tmp_path).items():
        rc, err = run_tool('test.py', CFG, tmp_path / name, '--work-dir', tmp_path / 'w')
        _one_line_error(rc, err, pattern)
        assert 'weights_only' not in err and 'trust' not in err, err  # no unsafe advice


class _Evil:
    """Pickles as a call that creates a marker file: what a malicious checkpoint would carry."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


@pytest.mark.parametrize('legacy', [False, True])
def test_force_no_weights_only_env_cannot_run_checkpoint_code(tmp_path, legacy, run_tool):
    """TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 switches torch.load's default off; mmvideoeq passes
    weights_only=True explicitly, so a malicious checkpoint is refused (zip and legacy format)
    by tools/test.py and by StreamingInferencer."""
    marker = tmp_path / 'PWNED'
    ckpt = tmp_path / 'evil.pth'
    torch.save(
        dict(state_dict={}, meta=dict(x=_Evil(marker))),
        ckpt,
        _use_new_zipfile_serialization=not legacy,
    )
    env = dict(TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD='1')
    rc, err = run_tool('test.py', CFG, ckpt, '--work-dir', tmp_path, env=env)
    _one_line_error(rc, err, r'refused to load checkpoint')
    code = (
        'from mmvideoeq.apis import StreamingInferencer\n'
        f'StreamingInferencer({str(CFG)!r}, {str(ckpt)!r})\n'
    )
    out = subprocess.run(
        [sys.executable, '-c', code],
        capture_output=True,
        text=True,
        env=dict(os.environ, **env),
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode != 0 and 'refused to load checkpoint' in out.stderr, out.stderr[-2000:]
    assert not marker.exists(), 'the pickled callable must never run'
