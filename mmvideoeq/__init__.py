"""mmvideoeq: streaming video perception with implicit (DEQ) and recursive backbones.

Importing the top-level package is cheap and imports no OpenMMLab library: ``mmvideoeq.deq`` and
``mmvideoeq.streaming`` are plain PyTorch and run with nothing but torch installed. The registered
mm modules live in ``mmvideoeq.models``, ``mmvideoeq.datasets``, ``mmvideoeq.evaluation`` and
``mmvideoeq.engine``; ``mmvideoeq.utils.register_all_modules()`` imports them all.
"""

from .version import __version__

__all__ = ['__version__']
