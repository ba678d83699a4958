from .vip_deeplab_losses import (
    TopKCrossEntropyLoss,
    ViPDepthLoss,
    WeightedPixelLoss,
    average_top_k,
)

__all__ = ['TopKCrossEntropyLoss', 'WeightedPixelLoss', 'ViPDepthLoss', 'average_top_k']
