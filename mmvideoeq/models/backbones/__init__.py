from .mdeq import MDEQ

__all__ = ['MDEQ']
