# DetectoRS (RFP T = 2 + SAC) Faster R-CNN on the bundled ImageNet-VID part, CPU-sized: the
# streaming-RFP experiment of docs/detectors.md. Trained per frame with the chapter's cold T = 2
# recursion; evaluated per video with
#   python tools/test.py configs/detectors/faster-rcnn_r26-tiny-detectors_16e_bundled-vid.py \
#       CKPT --streaming --iters 1 2
# which compares, frame by frame: stream@M (M RFP steps fed with the previous frame's pyramid),
# cold@1 (no feedback), cold@2 = full (T = 2 from zeros, the chapter's detector).
_base_ = [
    '../_base_/models/faster-rcnn_mdeq-tiny_fpn.py',  # its detector; backbone and neck replaced
    '../_base_/datasets/bundled_vid.py',
    '../_base_/default_runtime.py',
]
width = 32
sac = dict(type='SwitchableAtrousConv', use_deform=True)
resnet = dict(
    type='DetectoRSResNet',
    depth=26,
    base_channels=8,
    num_stages=4,
    out_indices=(0, 1, 2, 3),
    frozen_stages=-1,
    norm_cfg=dict(type='BN', requires_grad=True),
    norm_eval=False,
    conv_cfg=dict(type='ConvAWS'),
    sac=sac,
    stage_with_sac=(False, True, True, True),
    style='pytorch',
)
model = dict(
    type='DetectoRSFasterRCNN',
    backbone=dict(_delete_=True, output_img=True, **resnet),
    neck=dict(
        _delete_=True,
        type='RecursiveFeaturePyramid',
        in_channels=[32, 64, 128, 256],
        out_channels=width,
        num_outs=5,
        rfp_steps=2,
        aspp_out_channels=width // 4,
        aspp_dilations=(1, 3, 6, 1),
        rfp_backbone=dict(rfp_inplanes=width, **resnet),
    ),
    rpn_head=dict(in_channels=width, feat_channels=width, anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=dict(in_channels=width, fc_out_channels=128),
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
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(interval=4, max_keep_ckpts=1))
randomness = dict(seed=0)
# ms/frame: after the accuracy pass every setting re-runs its first 8 frames 3 times (median)
streaming_test_cfg = dict(
    iters=[1, 2], init='zeros', full_iters=2, timing=dict(batches=8, repeats=3, warmup=1)
)
