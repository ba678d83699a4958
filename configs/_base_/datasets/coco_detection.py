# COCO 2017 boxes only (no masks, no stuff maps): the data of the DetectoRS Cascade R-CNN config,
# for users without COCO-stuff. Box AP: mmdet's CocoMetric (pycocotools).
_base_ = './coco_instance_stuff.py'
train_pipeline = [
    dict(type='mmdet.LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='mmdet.LoadAnnotations', with_bbox=True),
    dict(type='mmdet.Resize', scale={{_base_.img_scale}}, keep_ratio=True),
    dict(type='mmdet.RandomFlip', prob=0.5),
    dict(type='mmdet.PackDetInputs'),
]
test_pipeline = [
    # mmcv's loader, unprefixed: the name mmdet's/mmseg's inferencers replace by their own
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='mmdet.Resize', scale={{_base_.img_scale}}, keep_ratio=True),
    dict(type='mmdet.LoadAnnotations', with_bbox=True),
    dict(
        type='mmdet.PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'),
    ),
]
train_dataloader = dict(
    dataset=dict(data_prefix=dict(_delete_=True, img='train2017/'), pipeline=train_pipeline)
)
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(metric='bbox')
test_evaluator = val_evaluator
