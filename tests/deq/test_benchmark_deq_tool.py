"""``tools/benchmark_deq.py`` runs end to end on a tiny input and reports a median and a range
for every row (its timings are not checked: speed claims come from full runs, docs/mdeq.md)."""

import importlib.util
import os.path as osp

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _tool():
    spec = importlib.util.spec_from_file_location(
        'benchmark_deq', osp.join(ROOT, 'tools', 'benchmark_deq.py')
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_rows_have_median_and_range(capsys):
    tool = _tool()
    argv = ['--size', '16', '16', '--iters', '2', '--train-iters', '2', '--unroll', '2']
    res = tool.main(argv + ['--repeats', '2', '--threads', '1'])
    rows = res['inference']['solvers']
    assert set(rows) == {'no solver', 'broyden', 'anderson', 'fixed_point'}
    assert rows['broyden']['evaluations'] == 3 and rows['anderson']['evaluations'] == 2
    for row in rows.values():
        s = row['overhead']
        assert s['min'] <= s['median'] <= s['max']
    modes = res['training']['modes']
    assert set(modes) == {'implicit', 'UR', 'UR@1', 'UR@2', 'SUR'}
    assert modes['implicit']['vs_implicit']['median'] == 1.0
    out = capsys.readouterr().out
    assert out.count('[') >= 8  # ranges printed


def test_benchmark_rejects_missing_peer_checkout():
    tool = _tool()
    with pytest.raises(SystemExit):
        tool.parse_args(['--peers', 'mdeq', '--mdeq-repo', '/nonexistent'])
