"""Quiet runs of the streaming test loop for tests."""

from __future__ import annotations

import json
from pathlib import Path

from mmengine.config import Config


def run_streaming_test(cfg: Config, work_dir: str | Path, **loop) -> tuple[dict, dict]:
    """Run ``cfg``'s model through a ``StreamingTestLoop`` in ``work_dir``, quietly.

    The loop is ``StreamingTestLoop(timing=False, plot=False, **loop)``; the logger and
    checkpoint hooks and the visualizer are off and the log level is ``WARNING``.

    Returns:
        tuple[dict, dict]: The runner's test metrics and the run's ``results.json``.
    """
    from mmengine.runner import Runner

    cfg.test_cfg = dict(type='StreamingTestLoop', timing=False, plot=False, **loop)
    cfg.work_dir = str(work_dir)
    cfg.log_level = 'WARNING'
    cfg.default_hooks.logger = None
    cfg.default_hooks.checkpoint = None
    cfg.visualizer = None
    metrics = Runner.from_cfg(cfg).test()
    results = json.loads((Path(work_dir) / 'streaming' / 'results.json').read_text())
    return metrics, results
