# HTC + RFP (T = 2, ASPP, fusion, separate step-2 backbone: the chapter's RFP) on the bundled COCO
# part, same schedule as the baseline.
_base_ = './htc_r26-tiny_bundled-coco.py'
model = dict(
    backbone=dict(conv_cfg=dict(type='ConvAWS'), output_img=True),
    neck=dict(
        _delete_=True,
        type='RecursiveFeaturePyramid',
        in_channels=[32, 64, 128, 256],
        out_channels=32,
        num_outs=5,
        rfp_steps=2,
        aspp_out_channels=8,
        aspp_dilations=(1, 3, 6, 1),
        rfp_backbone=dict(
            type='DetectoRSResNet',
            rfp_inplanes=32,
            depth=26,
            base_channels=8,
            num_stages=4,
            out_indices=(0, 1, 2, 3),
            frozen_stages=-1,
            norm_cfg=dict(type='BN', requires_grad=True),
            norm_eval=False,
            conv_cfg=dict(type='ConvAWS'),
            style='pytorch',
        ),
    ),
)
