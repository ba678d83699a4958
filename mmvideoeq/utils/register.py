"""Imported by configs through ``custom_imports``: registers all mmvideoeq, mmdet and mmseg modules
without changing the default scope (the config's ``default_scope`` does that)."""

from .setup_env import register_all_modules

register_all_modules(init_default_scope=False)
