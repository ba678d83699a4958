from .frames_preprocessor import FramesDataPreprocessor

__all__ = ['FramesDataPreprocessor']
