"""tools/test.py's real-time flags: they become the StreamingTestLoop's ``realtime`` config."""

import importlib.util
from pathlib import Path

import pytest
from mmengine.config import Config

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location('tool_test_rt', ROOT / 'tools' / 'test.py')
TOOL = importlib.util.module_from_spec(spec)
spec.loader.exec_module(TOOL)


def _loop(*flags):
    args = TOOL.parse_args(['CFG', 'CKPT', '--streaming', *flags])
    cfg = Config(dict(streaming_test_cfg=dict(iters=[1, 2])))
    TOOL.apply_streaming_args(cfg, args)
    return cfg.test_cfg


def test_realtime_flags(tmp_path):
    table = tmp_path / 'lat.json'
    table.write_text('{}')
    loop = _loop('--realtime-fps', '10', '30', '--eta', '-1', '--latency-table', str(table))
    assert loop['realtime'] == dict(fps=[10.0, 30.0], eta=-1.0, latency_table=str(table))
    assert loop['iters'] == [1, 2]
    assert 'realtime' not in _loop()
    assert _loop('--realtime-fps', '60', '--realtime-latency', 'timing')['realtime'] == dict(
        fps=[60.0], latency='timing'
    )
    loop = _loop('--realtime-fps', '30', '--realtime-pipeline', '--save-latency-table', 'out.json')
    assert loop['realtime'] == dict(fps=[30.0], pipeline=True, save_latency_table='out.json')


def test_realtime_flag_errors(tmp_path):
    with pytest.raises(TOOL.CLIError, match='need --realtime-fps'):
        _loop('--eta', '0')
    with pytest.raises(TOOL.CLIError, match='need --realtime-fps'):
        _loop('--realtime-pipeline')
    with pytest.raises(TOOL.CLIError, match='latency table not found'):
        _loop('--realtime-fps', '30', '--latency-table', str(tmp_path / 'missing.json'))
    with pytest.raises(TOOL.CLIError, match='positive frame rates'):
        _loop('--realtime-fps', '0')
