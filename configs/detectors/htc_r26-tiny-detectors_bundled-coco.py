# DetectoRS (HTC + RFP + SAC) on the bundled COCO part, same schedule as the baseline.
_base_ = './htc_r26-tiny-rfp_bundled-coco.py'
sac = dict(type='SwitchableAtrousConv', use_deform=True)
model = dict(
    backbone=dict(sac=sac, stage_with_sac=(False, True, True, True)),
    neck=dict(rfp_backbone=dict(sac=sac, stage_with_sac=(False, True, True, True))),
)
