from . import (
    backbones,  # noqa: F401  (registers mmvideoeq.MDEQ, DetectoRSResNet/ResNeXt)
    detectors,  # noqa: F401
    layers,  # noqa: F401  (registers SwitchableAtrousConv)
    necks,  # noqa: F401  (registers RecursiveFeaturePyramid)
    segmentors,  # noqa: F401
)
from .streaming import StreamingMixin  # noqa: F401
