"""Helpers for tests and smoke runs (as ``mmdet.testing``): tiny models, and configs pointed at
the tiny bundled benchmark (``benchgen.generate_benchmark(root, preset='tiny')``)."""

from .configs import shrink_model_cfg, tiny_data_cfg, tiny_dvps_data_cfg

__all__ = ['shrink_model_cfg', 'tiny_data_cfg', 'tiny_dvps_data_cfg']
