from .streaming_test_loop import StreamingTestLoop

__all__ = ['StreamingTestLoop']
