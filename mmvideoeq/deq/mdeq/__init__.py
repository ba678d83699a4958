"""Multiscale Deep Equilibrium network (MDEQ), plain PyTorch.

Implements the architecture of MDEQ (Bai, Koltun, Kolter, "Multiscale Deep Equilibrium Models",
NeurIPS 2020) as released in locuslab/mdeq (MIT licence). The code here is written from scratch;
the following facts were taken from the reference (``lib/models/mdeq_core.py``,
``lib/models/mdeq.py``, ``lib/modules/optimizations.py``, ``experiments/*/*.yaml``):

* stem (``downsample`` there): two 3x3 convolutions (stride 2 each when ``DOWNSAMPLE_TIMES=2``)
  with BatchNorm + ReLU; injection (``stage0``): 1x1 conv + BN + ReLU, added to the
  highest-resolution branch only (the other branches get zero injection);
* the layer :math:`f_\\theta` (``fullstage``, one ``MDEQModule``): per resolution ``s`` a residual
  block (``BasicBlock``)::

      u   = relu(gn1(conv1(z_s)))                       # conv1: C_s -> E*C_s, 3x3
      v   = gn2(drop(conv2(u)) + x_s)                   # conv2: E*C_s -> C_s, 3x3
      b_s = gn3(relu(v + z_s))

  followed by multiscale fusion ``y_i = sum_j F_ij(b_j)`` (``F_ii`` = identity, ``F_ij`` for
  ``j < i``: ``i-j`` stride-2 3x3 conv + GN (+ ReLU between), for ``j > i``: 1x1 conv + GN +
  nearest upsampling) and the post-fusion ``z_i' = gn(conv1x1(relu(y_i)))`` with ``G/2`` groups;
* weight normalisation (``WNORM: true``) on ``conv1``/``conv2`` of every block and on the
  post-fusion 1x1 convs, with parameters ``weight_g`` ``(C_out, 1, 1, 1)`` and ``weight_v``,
  ``w = v * g / ||v||`` (norm over all dims but 0);
* variational dropout: one Bernoulli mask of shape ``(B, C_s, 1, 1)`` per block, drawn once per
  forward pass and shared by every solver iteration (training only);
* heads: classification (``incre_modules`` Bottlenecks, ``downsamp_modules``, ``final_layer``,
  global average pool, ``classifier``) and segmentation (``last_layer``: all scales bilinearly
  upsampled, ``align_corners=True``, to the highest resolution, concatenated, 1x1 conv + BN + ReLU +
  classifier conv).

The module names below the top level keep the reference's names (``branches.i.blocks.k.conv1``,
``fuse_layers.i.j.net...``, ``post_fuse_layers.i.conv``, ``incre_modules`` ...) and weight norm is
implemented by hand with the reference's parameter names (``weight_g``/``weight_v``), so an official
checkpoint converts by renaming top-level prefixes only (see :mod:`mmvideoeq.deq.mdeq_convert`).
The solver is *not* part of the network: the equilibrium is found by :class:`DEQSolver`.
"""

from .heads import MDEQClsHead, MDEQSegHead
from .layers import MDEQLayer, WNConv2d, frozen_weight_norm
from .net import MDEQNet, MDEQOutput
from .presets import MDEQ_PRESETS

__all__ = [
    'MDEQNet',
    'MDEQOutput',
    'MDEQ_PRESETS',
    'MDEQLayer',
    'WNConv2d',
    'frozen_weight_norm',
    'MDEQClsHead',
    'MDEQSegHead',
]
