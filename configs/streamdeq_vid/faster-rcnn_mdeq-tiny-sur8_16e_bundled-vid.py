# SUR-StreamDEQ on the bundled benchmark, small enough to train on 2 CPU cores in minutes (the
# tiny model of _base_/models/faster-rcnn_mdeq-tiny_fpn.py), 16 epochs.
# This config trains the checkpoint that the README's main job evaluates:
#   python tools/train.py configs/streamdeq_vid/faster-rcnn_mdeq-tiny-sur8_16e_bundled-vid.py
_base_ = [
    '../_base_/models/faster-rcnn_mdeq-tiny_fpn.py',
    '../_base_/datasets/bundled_vid.py',
    '../_base_/default_runtime.py',
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=16, val_interval=16)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-4),
    clip_grad=dict(max_norm=10, norm_type=2),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', begin=0, end=16, by_epoch=True, milestones=[12, 15], gamma=0.1),
]
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(interval=4, max_keep_ckpts=2))
randomness = dict(seed=0)
streaming_test_cfg = dict(iters=[1, 2, 4, 8], init='zeros')
