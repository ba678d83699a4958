# The reference MDEQ-XL Cityscapes evaluation setup (locuslab/mdeq seg_mdeq_XL: full 2048x1024
# images, 27 Broyden iterations, whole-image inference) on 20-frame clips (thesis ch. 4.1).
# With the official checkpoint converted by tools/model_converters/mdeq_to_mmvideoeq.py:
#   python tools/test.py configs/streamdeq_seg/mdeq-xl-broyden27_cityscapes-clips.py \
#       checkpoints/mdeq_xl_cityscapes_mmvideoeq.pth --streaming --iters 1 2 4 8
_base_ = [
    '../_base_/models/mdeq-xl_seg.py',
    '../_base_/datasets/cityscapes_clips.py',
    '../_base_/default_runtime.py',
]
visualizer = dict(
    type='mmseg.SegLocalVisualizer',
    _delete_=True,
    vis_backends=[dict(type='LocalVisBackend')],
    name='visualizer',
)
model = dict(backbone=dict(deq_cfg=dict(test_max_iter=27)))  # locuslab/mdeq F_THRES 27, memory 27
# the reference's seg training schedule (SGD, poly lr, 484 epochs of 2975 images / batch 12)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=120000, val_interval=10000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4)
)
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=120000, by_epoch=False)
]
log_processor = dict(by_epoch=False)
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=10000))
streaming_test_cfg = dict(iters=[1, 2, 4, 8], init='zeros')
