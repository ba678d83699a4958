"""Helpers for tests and smoke runs (as ``mmdet.testing``): tiny models and tiny benchmarks."""

from .configs import shrink_model_cfg, tiny_benchmark, tiny_data_cfg

__all__ = ['shrink_model_cfg', 'tiny_benchmark', 'tiny_data_cfg']
