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


def one_setting_sweep(table_dir: str | Path, ms: float, gts: dict, preds: dict):
    """A ``RealtimeSweep`` at 10 fps of one setting, ``cold@1``, that took ``ms`` per frame.

    The latency comes from a latency table written to ``table_dir``; every frame ``t`` of video
    ``v`` is logged with prediction ``preds[v][t]`` and ground truth ``gts[v][t]`` (the scored
    frame logs of the segmentation and panoptic tasks).

    Returns:
        RealtimeSweep: The sweep, ready to ``run`` with a task's scoring.
    """
    from mmvideoeq.engine.loops.realtime_eval import FrameLog, RealtimeSweep
    from mmvideoeq.streaming.realtime import LatencyTable

    table = Path(table_dir) / 'lat.json'
    LatencyTable(device='test', measured='by hand', latency_ms={'cold@1': ms}).save(table)
    sweep = RealtimeSweep(fps=[10.0], latency_table=str(table), scheduler=False)
    logs = [
        FrameLog(v, t, None, ms, pred, 0.0, gts[v][t])
        for v, frames in preds.items()
        for t, pred in enumerate(frames)
    ]
    sweep.add(dict(name='cold@1', iters=1, warm=False, policy={}), logs)
    return sweep
