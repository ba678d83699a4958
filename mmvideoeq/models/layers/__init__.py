"""Layers of the DetectoRS family: Switchable Atrous Convolution, weight-standardised convolution
(ConvAWS) and a plain-PyTorch DCN."""

from .conv_aws import ConvAWS2d, standardise_weight
from .deform_conv import deform_conv2d, deform_conv2d_torch
from .sac import SwitchableAtrousConv

__all__ = [
    'ConvAWS2d',
    'SwitchableAtrousConv',
    'deform_conv2d',
    'deform_conv2d_torch',
    'standardise_weight',
]
