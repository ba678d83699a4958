# HTC + Switchable Atrous Convolution (thesis Table 6-II, "SAC": 46.3 box AP). As mmdet's
# configs/detectors/htc_r50-sac_1x_coco.py: every 3x3 conv of stages 2-4 becomes SAC (atrous rate
# 3, weight lock, global context, deformable convolutions), weight-standardised convs elsewhere.
# The ablations of Table 6-III are SwitchableAtrousConv options (use_deform, global_context,
# weight_locking, dual_switch).
_base_ = './htc_r50_1x_coco.py'
model = dict(
    backbone=dict(
        conv_cfg=dict(type='ConvAWS'),
        sac=dict(type='SwitchableAtrousConv', use_deform=True),
        stage_with_sac=(False, True, True, True),
    )
)
