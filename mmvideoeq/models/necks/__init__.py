from .rfp import RecursiveFeaturePyramid

__all__ = ['RecursiveFeaturePyramid']
