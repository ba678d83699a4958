from .vip_deeplab_head import ViPDeepLabHead

__all__ = ['ViPDeepLabHead']
