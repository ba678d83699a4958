from .detectors_resnet import DetectoRSResNet, DetectoRSResNeXt
from .mdeq import MDEQ

__all__ = ['MDEQ', 'DetectoRSResNet', 'DetectoRSResNeXt']
