# DetectoRS = HTC + RFP + SAC, ResNet-50, 12 epochs (thesis Table 6-II: 49.0 box / 42.1 mask AP,
# 3.9 FPS; mmdet model zoo detectors_htc-r50_1x_coco: 49.1 / 42.6). Same model as mmdet's
# configs/detectors/detectors_htc-r50_1x_coco.py (its checkpoints load strictly:
# tests/models/test_detectors_checkpoint_layout.py).
_base_ = './htc_r50-rfp_1x_coco.py'
sac = dict(type='SwitchableAtrousConv', use_deform=True)
model = dict(
    backbone=dict(sac=sac, stage_with_sac=(False, True, True, True)),
    neck=dict(rfp_backbone=dict(sac=sac, stage_with_sac=(False, True, True, True))),
)
