"""Helpers for tests and smoke runs (as ``mmdet.testing``): tiny models, and configs pointed at
the tiny bundled benchmark (``benchgen.generate_benchmark(root, preset='tiny')``), quiet
streaming test runs."""

from .configs import shrink_model_cfg, tiny_data_cfg, tiny_dvps_data_cfg
from .runs import one_setting_sweep, run_streaming_test
from .scoring import dvpq_of_pairs

__all__ = [
    'shrink_model_cfg',
    'tiny_data_cfg',
    'tiny_dvps_data_cfg',
    'run_streaming_test',
    'one_setting_sweep',
    'dvpq_of_pairs',
]
