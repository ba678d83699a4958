# DetectoRS on Cascade R-CNN (boxes only, no COCO-stuff maps needed; mmdet model zoo
# detectors_cascade-rcnn_r50_1x_coco: 47.4 box AP). Same model as mmdet's
# configs/detectors/detectors_cascade-rcnn_r50_1x_coco.py; its checkpoints load strictly.
_base_ = [
    'mmdet::_base_/models/cascade-rcnn_r50_fpn.py',
    '../_base_/datasets/coco_detection.py',
    '../_base_/schedules/schedule_1x.py',
    '../_base_/default_runtime.py',
]
sac = dict(type='SwitchableAtrousConv', use_deform=True)
model = dict(
    # the base comes from mmdet (its unscoped types resolve there too): build in mmvideoeq's scope
    _scope_='mmvideoeq',
    type='DetectoRSCascadeRCNN',
    backbone=dict(
        _delete_=True,
        type='DetectoRSResNet',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        style='pytorch',
        conv_cfg=dict(type='ConvAWS'),
        sac=sac,
        stage_with_sac=(False, True, True, True),
        output_img=True,
    ),
    neck=dict(
        _delete_=True,
        type='RecursiveFeaturePyramid',
        in_channels=[256, 512, 1024, 2048],
        out_channels=256,
        num_outs=5,
        rfp_steps=2,
        aspp_out_channels=64,
        aspp_dilations=(1, 3, 6, 1),
        rfp_backbone=dict(
            type='DetectoRSResNet',
            rfp_inplanes=256,
            depth=50,
            num_stages=4,
            out_indices=(0, 1, 2, 3),
            frozen_stages=1,
            norm_cfg=dict(type='BN', requires_grad=True),
            norm_eval=True,
            conv_cfg=dict(type='ConvAWS'),
            sac=sac,
            stage_with_sac=(False, True, True, True),
            style='pytorch',
        ),
    ),
)
