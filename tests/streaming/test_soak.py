"""A shorter version of ``tools/soak_stream.py``: long streams run in constant memory.

The full soak (100,000 frames per mode) is ``python tools/soak_stream.py``; here a few thousand
frames through the generator driver (one video; many interleaved videos in reused slots) and the
inferencer, and the same checks: the stream states and their histories stay the same size and
the process's memory does not grow.
"""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _tool():
    spec = importlib.util.spec_from_file_location('soak_stream', ROOT / 'tools' / 'soak_stream.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize(
    'mode, frames', [('one', 3000), ('interleaved', 3000), ('inferencer', 600)]
)
def test_a_long_stream_keeps_its_memory_flat(mode, frames):
    tool = _tool()
    reports = tool.soak(mode, frames, report_every=frames // 3, log=lambda *_: None)
    assert [r['frames'] for r in reports] == [frames // 3, 2 * frames // 3, frames]
    assert tool.check(reports, max_rss_growth_mb=8.0) == []
    assert reports[-1]['states'] == (8 if mode == 'interleaved' else 1)
    assert reports[-1]['history'] <= (8 * 50 if mode == 'interleaved' else 1000)


def test_the_check_reports_growth():
    tool = _tool()
    base = dict(frames=1, rss_mb=100.0, state_bytes=64, states=1, history=10, fps=1.0)
    grown = dict(base, frames=2, rss_mb=150.0, state_bytes=128, history=20)
    problems = tool.check([base, dict(base, frames=2), grown], max_rss_growth_mb=20.0)
    assert any('state_bytes changed from 64 to 128' in p for p in problems)
    assert any('RSS grew by 50.0 MiB' in p for p in problems)
    assert any('history grew from at most 10 to 20' in p for p in problems)
