"""Registration of all mmvideoeq modules (the mmdet/mmseg ``register_all_modules`` pattern)."""

import datetime
import warnings

from mmengine import DefaultScope


def register_all_modules(init_default_scope: bool = True) -> None:
    """Import every mmvideoeq module (and mmdet's and mmseg's) so that they are registered.

    Args:
        init_default_scope: Whether to set the default scope to ``'mmvideoeq'``. Configs name
            mmdet/mmseg modules with their scope prefix (``'mmdet.FPN'``), see
            ``docs/architecture.md``.
    """
    import mmdet.utils
    import mmseg.utils

    mmdet.utils.register_all_modules(init_default_scope=False)
    mmseg.utils.register_all_modules(init_default_scope=False)

    import mmvideoeq.datasets  # noqa: F401
    import mmvideoeq.engine  # noqa: F401
    import mmvideoeq.evaluation  # noqa: F401
    import mmvideoeq.models  # noqa: F401
    import mmvideoeq.visualization  # noqa: F401

    from .checkpoint import allow_mmengine_checkpoint_types
    from .checkpoint_schemes import install_safe_checkpoint_loader

    allow_mmengine_checkpoint_types()
    install_safe_checkpoint_loader()

    if init_default_scope:
        never_created = (
            DefaultScope.get_current_instance() is None
            or not DefaultScope.check_instance_created('mmvideoeq')
        )
        if never_created:
            DefaultScope.get_instance('mmvideoeq', scope_name='mmvideoeq')
            return
        current_scope = DefaultScope.get_current_instance()
        if current_scope.scope_name != 'mmvideoeq':
            warnings.warn(
                'The current default scope '
                f'"{current_scope.scope_name}" is not "mmvideoeq", '
                '`register_all_modules` will force the current '
                'default scope to be "mmvideoeq". If this is not '
                'expected, please set `init_default_scope=False`.'
            )
            new_instance_name = f'mmvideoeq-{datetime.datetime.now()}'
            DefaultScope.get_instance(new_instance_name, scope_name='mmvideoeq')
