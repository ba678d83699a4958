"""mmvideoeq registries (scope ``'mmvideoeq'``), children of mmdet's registries.

Modules of mmvideoeq register here; configs name modules of other libraries with their scope
prefix (``type='mmdet.FPN'``, ``type='mmseg.FCNHead'``). Each registry imports its ``locations``
lazily the first time a key is looked up, as mmdet's ``mmdet/registry.py`` does.

Why mmdet's registries are the parents (not mmengine's roots directly): mmdet modules build their
own sub-modules from unscoped defaults (``AnchorHead`` builds ``dict(type='BboxOverlaps2D')``) in
the *current* default scope. With ``default_scope='mmvideoeq'`` an unscoped lookup searches this
registry and then its ancestors only, so with mmengine's roots as parents such defaults would not
be found. Through mmdet's registries, the chain is mmvideoeq -> mmdet -> mmengine. mmseg modules
are always named with their ``mmseg.`` prefix in the configs.
"""

from mmdet.registry import DATA_SAMPLERS as MMDET_DATA_SAMPLERS
from mmdet.registry import DATASETS as MMDET_DATASETS
from mmdet.registry import EVALUATOR as MMDET_EVALUATOR
from mmdet.registry import HOOKS as MMDET_HOOKS
from mmdet.registry import LOG_PROCESSORS as MMDET_LOG_PROCESSORS
from mmdet.registry import LOOPS as MMDET_LOOPS
from mmdet.registry import METRICS as MMDET_METRICS
from mmdet.registry import MODEL_WRAPPERS as MMDET_MODEL_WRAPPERS
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMDET_OPTIM_WRAPPER_CONSTRUCTORS
from mmdet.registry import OPTIM_WRAPPERS as MMDET_OPTIM_WRAPPERS
from mmdet.registry import OPTIMIZERS as MMDET_OPTIMIZERS
from mmdet.registry import PARAM_SCHEDULERS as MMDET_PARAM_SCHEDULERS
from mmdet.registry import RUNNERS as MMDET_RUNNERS
from mmdet.registry import TASK_UTILS as MMDET_TASK_UTILS
from mmdet.registry import TRANSFORMS as MMDET_TRANSFORMS
from mmdet.registry import VISBACKENDS as MMDET_VISBACKENDS
from mmdet.registry import VISUALIZERS as MMDET_VISUALIZERS
from mmengine.registry import Registry

RUNNERS = Registry('runner', parent=MMDET_RUNNERS, locations=['mmvideoeq.engine'])
LOOPS = Registry('loop', parent=MMDET_LOOPS, locations=['mmvideoeq.engine.loops'])
HOOKS = Registry('hook', parent=MMDET_HOOKS, locations=['mmvideoeq.engine.hooks'])
DATASETS = Registry('dataset', parent=MMDET_DATASETS, locations=['mmvideoeq.datasets'])
DATA_SAMPLERS = Registry(
    'data sampler', parent=MMDET_DATA_SAMPLERS, locations=['mmvideoeq.datasets']
)
TRANSFORMS = Registry(
    'transform', parent=MMDET_TRANSFORMS, locations=['mmvideoeq.datasets.transforms']
)
MODELS = Registry('model', parent=MMDET_MODELS, locations=['mmvideoeq.models'])
MODEL_WRAPPERS = Registry(
    'model_wrapper', parent=MMDET_MODEL_WRAPPERS, locations=['mmvideoeq.models']
)
OPTIMIZERS = Registry('optimizer', parent=MMDET_OPTIMIZERS, locations=['mmvideoeq.engine'])
OPTIM_WRAPPERS = Registry(
    'optim_wrapper', parent=MMDET_OPTIM_WRAPPERS, locations=['mmvideoeq.engine']
)
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=MMDET_OPTIM_WRAPPER_CONSTRUCTORS,
    locations=['mmvideoeq.engine'],
)
PARAM_SCHEDULERS = Registry(
    'parameter scheduler', parent=MMDET_PARAM_SCHEDULERS, locations=['mmvideoeq.engine']
)
METRICS = Registry('metric', parent=MMDET_METRICS, locations=['mmvideoeq.evaluation'])
EVALUATOR = Registry('evaluator', parent=MMDET_EVALUATOR, locations=['mmvideoeq.evaluation'])
TASK_UTILS = Registry('task util', parent=MMDET_TASK_UTILS, locations=['mmvideoeq.models'])
VISUALIZERS = Registry('visualizer', parent=MMDET_VISUALIZERS, locations=['mmvideoeq.engine'])
VISBACKENDS = Registry('vis_backend', parent=MMDET_VISBACKENDS, locations=['mmvideoeq.engine'])
LOG_PROCESSORS = Registry(
    'log_processor', parent=MMDET_LOG_PROCESSORS, locations=['mmvideoeq.engine']
)
