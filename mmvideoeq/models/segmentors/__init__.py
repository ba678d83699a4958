from .streamdeq_encoder_decoder import StreamDEQEncoderDecoder

__all__ = ['StreamDEQEncoderDecoder']
