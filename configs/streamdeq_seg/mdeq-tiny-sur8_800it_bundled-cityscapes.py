# SUR-StreamDEQ segmentation on the bundled benchmark, trainable on 2 CPU cores in minutes:
#   python tools/train.py configs/streamdeq_seg/mdeq-tiny-sur8_800it_bundled-cityscapes.py
_base_ = [
    '../_base_/models/mdeq-xl_seg.py',
    '../_base_/datasets/bundled_cityscapes.py',
    '../_base_/default_runtime.py',
]
visualizer = dict(
    type='mmseg.SegLocalVisualizer',
    _delete_=True,
    vis_backends=[dict(type='LocalVisBackend')],
    name='visualizer',
)
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
    decode_head=dict(in_channels=mdeq_channels, channels=sum(mdeq_channels)),
)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=800, val_interval=800)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=2e-3, weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', eta_min=1e-5, power=0.9, begin=50, end=800, by_epoch=False),
]
log_processor = dict(by_epoch=False)
default_hooks = dict(
    logger=dict(interval=50), checkpoint=dict(by_epoch=False, interval=200, max_keep_ckpts=2)
)
randomness = dict(seed=0)
streaming_test_cfg = dict(iters=[1, 2, 4, 8], init='zeros', full_iters=8)
