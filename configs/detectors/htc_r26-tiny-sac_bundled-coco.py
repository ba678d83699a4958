# HTC + SAC (stages 2-4, deformable, weight lock, global context: the chapter's SAC) on the
# bundled COCO part, same schedule as the baseline.
_base_ = './htc_r26-tiny_bundled-coco.py'
model = dict(
    backbone=dict(
        conv_cfg=dict(type='ConvAWS'),
        sac=dict(type='SwitchableAtrousConv', use_deform=True),
        stage_with_sac=(False, True, True, True),
    )
)
