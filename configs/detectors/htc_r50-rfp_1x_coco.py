# HTC + Recursive Feature Pyramid (thesis Table 6-II, "RFP": 46.2 box AP). Same settings as
# mmdet's configs/detectors/htc_r50-rfp_1x_coco.py: T = 2 unrolled steps, ASPP connection
# (4 x 64 channels, dilations 1/3/6 + global pooling), fusion module, a separate backbone for
# step 2 (rfp_backbone), feedback into stages 2-4, weight-standardised convolutions (ConvAWS) in
# both backbones. The other choices of Table 6-III are options of RecursiveFeaturePyramid
# (with_aspp, with_fusion, share_backbone, rfp_steps) and of the backbone (rfp_stages).
_base_ = './htc_r50_1x_coco.py'
model = dict(
    backbone=dict(conv_cfg=dict(type='ConvAWS'), output_img=True),
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
            style='pytorch',
        ),
    ),
)
