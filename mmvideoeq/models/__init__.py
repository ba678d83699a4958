from . import (
    backbones,  # noqa: F401  (registers mmvideoeq.MDEQ, DetectoRSResNet/ResNeXt)
    data_preprocessors,  # noqa: F401
    detectors,  # noqa: F401
    heads,  # noqa: F401
    layers,  # noqa: F401  (registers SwitchableAtrousConv)
    losses,  # noqa: F401
    necks,  # noqa: F401  (registers RecursiveFeaturePyramid)
    segmentors,  # noqa: F401
)
from .streaming import DEQStreamingMixin  # noqa: F401
