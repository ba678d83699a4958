"""Layers of the DetectoRS family: Switchable Atrous Convolution and a plain-PyTorch DCN."""

from .deform_conv import deform_conv2d, deform_conv2d_torch
from .sac import SwitchableAtrousConv

__all__ = ['SwitchableAtrousConv', 'deform_conv2d', 'deform_conv2d_torch']
