# SUR-StreamDEQ on the bundled benchmark, small enough to train on 2 CPU cores in minutes: a
# 4-branch MDEQ of widths 12-96, fixed-point solver, N ~ U[1, 8] unrollings per training step.
# This config trains the checkpoint that the README's main job evaluates:
#   python tools/train.py configs/streamdeq_vid/faster-rcnn_mdeq-tiny-sur8_16e_bundled-vid.py
_base_ = [
    '../_base_/models/faster-rcnn_mdeq-xl_fpn.py',
    '../_base_/datasets/bundled_vid.py',
    '../_base_/default_runtime.py',
]
mdeq_channels = [12, 24, 48, 96]
model = dict(
    backbone=dict(
        num_channels=mdeq_channels,
        num_blocks=[1, 1, 1, 1],
        expansion=2,
        num_groups=4,
        dropout=0.0,
        deq_cfg=dict(
            _delete_=True,
            solver='fixed_point',
            train_mode='stochastic_unroll',
            grad='unroll',
            unroll_max=8,
            train_max_iter=8,
            test_max_iter=8,
            tol=None,
            seed=0,
        ),
    ),
    neck=dict(in_channels=mdeq_channels, out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64, anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256),
    ),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=200), rcnn=dict(sampler=dict(num=64))
    ),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=100)),
)
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
streaming_test_cfg = dict(iters=[1, 2, 4, 8], init='zeros', full_iters=8)
