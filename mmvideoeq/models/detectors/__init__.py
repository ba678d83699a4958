from .detectors_rcnn import (
    DetectoRSCascadeRCNN,
    DetectoRSFasterRCNN,
    DetectoRSHTC,
    RecursiveFeedbackMixin,
)
from .streamdeq_faster_rcnn import StreamDEQFasterRCNN

__all__ = [
    'StreamDEQFasterRCNN',
    'DetectoRSFasterRCNN',
    'DetectoRSCascadeRCNN',
    'DetectoRSHTC',
    'RecursiveFeedbackMixin',
]
