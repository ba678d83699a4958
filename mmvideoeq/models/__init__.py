from . import backbones  # noqa: F401  (registers mmvideoeq.MDEQ)
from . import detectors  # noqa: F401
from . import segmentors  # noqa: F401
from .streaming import StreamingMixin  # noqa: F401
