"""A bundled video benchmark rendered from real photographs that install with the package registry.

ImageNet-VID, Cityscapes and KITTI cannot be downloaded everywhere, yet a fresh clone must be able
to train, stream and test. This package renders small labelled videos from real photographs
shipped inside scikit-image, scikit-learn and matplotlib (public domain, CC0 and CC BY 2.0; see
:data:`~.sources.SOURCES`) and writes them in the on-disk formats of the real datasets, so the
project's dataset classes read both alike::

    from benchgen import generate_benchmark
    generate_benchmark('data/bundled', preset='small', seed=0, formats=('vid', 'cityscapes'))

or ``python tools/data/make_benchmark.py --out data/bundled --preset small --seed 0``; every
part the project's configs read is built (or completed) by ``make data``
(``tools/data/make_benchmark.py --all``). A folder is added to part by part: parts already
written with the same preset and seed are kept (:mod:`.parts`).

The videos do what real video does to a streaming model: the camera pans, tilts, zooms or drives
forward over real-photo backgrounds; objects of several classes move, change scale, occlude each
other and enter and leave the frame; the exposure drifts and the sensor is noisy; some videos have
shot changes (listed per video). Ground truth: boxes with track ids (ImageNet-VID), per-pixel
Cityscapes classes and instances, and depth (Cityscapes disparity, KITTI depth PNGs).

Plain numpy / OpenCV / Pillow: nothing here imports an OpenMMLab package (the class lists come
from :mod:`mmvideoeq.class_names`, which imports nothing). It is a tool of the project, installed
beside ``mmvideoeq`` and never imported by it.
"""

from .benchmark import (
    FORMAT_DIRS,
    FORMATS,
    META_FILE,
    PRESETS,
    BenchmarkPreset,
    CityscapesPreset,
    KittiPreset,
    VidPreset,
    generate_benchmark,
    get_preset,
    plan_benchmark,
    render_benchmark_video,
)
from .classes import CITYSCAPES_LABELS, CLASSES, TO_CITYSCAPES, TO_VID
from .parts import PartPlan
from .scene import RenderedVideo, SceneStyle, render_video, sample_video
from .sources import SOURCES
from .writers import visible_boxes

__all__ = [
    'generate_benchmark',
    'plan_benchmark',
    'PartPlan',
    'render_benchmark_video',
    'get_preset',
    'PRESETS',
    'BenchmarkPreset',
    'VidPreset',
    'CityscapesPreset',
    'KittiPreset',
    'FORMATS',
    'FORMAT_DIRS',
    'META_FILE',
    'CLASSES',
    'CITYSCAPES_LABELS',
    'TO_VID',
    'TO_CITYSCAPES',
    'RenderedVideo',
    'SceneStyle',
    'render_video',
    'sample_video',
    'SOURCES',
    'visible_boxes',
]
