# SUR-StreamDEQ segmentation on the bundled benchmark, trainable on 2 CPU cores in minutes:
#   python tools/train.py configs/streamdeq_seg/mdeq-tiny-sur8_800it_bundled-cityscapes.py
_base_ = [
    '../_base_/models/mdeq-tiny_seg.py',
    '../_base_/datasets/bundled_cityscapes.py',
    '../_base_/default_runtime.py',
]
visualizer = dict(
    type='mmseg.SegLocalVisualizer',
    _delete_=True,
    vis_backends=[dict(type='LocalVisBackend')],
    name='visualizer',
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
streaming_test_cfg = dict(iters=[1, 2, 4, 8], init='zeros')
