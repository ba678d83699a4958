# Streaming ViP-DeepLab on the bundled benchmark, trainable on 2 CPU cores (docs/results.md;
# data: configs/_base_/datasets/bundled_cityscapes_dvps.py):
#   python tools/train.py configs/vip_deeplab/vip-deeplab_mdeq-tiny-sur8_600it_bundled-cityscapes-dvps.py
_base_ = [
    '../_base_/models/vip-deeplab_mdeq-tiny.py',
    '../_base_/datasets/bundled_cityscapes_dvps.py',
    '../_base_/vip_runtime.py',
    '../_base_/schedules/schedule_120k_vip.py',
]
optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=50, end=600, by_epoch=False),
]
train_cfg = dict(max_iters=600, val_interval=600)
default_hooks = dict(checkpoint=dict(interval=200, max_keep_ckpts=2))
randomness = dict(seed=0)
streaming_test_cfg = dict(iters=[1, 2, 4, 8], init='zeros', full_iters=8)
