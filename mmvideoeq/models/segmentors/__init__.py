from .streamdeq_encoder_decoder import StreamDEQEncoderDecoder
from .vip_deeplab import ViPDeepLab

__all__ = ['StreamDEQEncoderDecoder', 'ViPDeepLab']
