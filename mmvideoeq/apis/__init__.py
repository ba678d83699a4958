from .inferencer import StreamingInferencer

__all__ = ['StreamingInferencer']
