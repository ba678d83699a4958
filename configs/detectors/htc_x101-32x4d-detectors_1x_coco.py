# DetectoRS HTC with ResNeXt-101 32x4d in both RFP steps (thesis Tables 6-IV/6-V use it with
# multi-scale training; here the 12-epoch schedule of the R50 config).
_base_ = './htc_r50-detectors_1x_coco.py'
resnext = dict(type='DetectoRSResNeXt', depth=101, groups=32, base_width=4)
model = dict(backbone=resnext, neck=dict(rfp_backbone=resnext))
train_dataloader = dict(batch_size=1, num_workers=1)
