from . import (
    backbones,  # noqa: F401  (registers mmvideoeq.MDEQ)
    data_preprocessors,  # noqa: F401
    detectors,  # noqa: F401
    heads,  # noqa: F401
    losses,  # noqa: F401
    segmentors,  # noqa: F401
)
from .streaming import StreamingMixin  # noqa: F401
