"""MDEQ presets (locuslab/mdeq's experiment files)."""

from __future__ import annotations

from typing import Any

__all__ = ['MDEQ_PRESETS']

# Values from locuslab/mdeq experiments/imagenet/cls_mdeq_{SMALL,XL}.yaml and
# experiments/cityscapes/seg_mdeq_{SMALL,XL}.yaml. ``num_layers`` is the reference's NUM_LAYERS (the
# number of unrolled f applications used during its pretraining phase); ``f_thres``/``b_thres`` are
# the forward/backward solver iteration limits.
MDEQ_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    'small': {
        'cls': dict(
            num_channels=(32, 64, 128, 256),
            num_blocks=(1, 1, 1, 1),
            expansion=4,
            num_groups=8,
            dropout=0.0,
            f_thres=24,
            b_thres=24,
            num_layers=5,
            downsample_times=2,
            wnorm=True,
            bn_momentum=0.1,
            num_classes=1000,
            head_channels=(28, 56, 112, 224),
            final_chansize=2048,
            final_conv_kernel=1,
        ),
        'seg': dict(
            num_channels=(32, 64, 128, 256),
            num_blocks=(1, 1, 1, 1),
            expansion=4,
            num_groups=8,
            dropout=0.02,
            f_thres=26,
            b_thres=26,
            num_layers=4,
            downsample_times=2,
            wnorm=True,
            bn_momentum=0.01,
            num_classes=19,
            head_channels=(28, 56, 112, 224),
            final_chansize=2048,
            final_conv_kernel=1,
        ),
    },
    'xl': {
        'cls': dict(
            num_channels=(88, 176, 352, 704),
            num_blocks=(1, 1, 1, 1),
            expansion=6,
            num_groups=8,
            dropout=0.0,
            f_thres=27,
            b_thres=27,
            num_layers=4,
            downsample_times=2,
            wnorm=True,
            bn_momentum=0.1,
            num_classes=1000,
            head_channels=(32, 64, 128, 256),
            final_chansize=2048,
            final_conv_kernel=1,
        ),
        'seg': dict(
            num_channels=(88, 176, 352, 704),
            num_blocks=(1, 1, 1, 1),
            expansion=6,
            num_groups=8,
            dropout=0.04,
            f_thres=26,
            b_thres=26,
            num_layers=3,
            downsample_times=2,
            wnorm=True,
            bn_momentum=0.01,
            num_classes=19,
            head_channels=(32, 64, 128, 256),
            final_chansize=2048,
            final_conv_kernel=1,
        ),
    },
}
