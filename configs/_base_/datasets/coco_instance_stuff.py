# COCO 2017 instances with COCO-stuff semantic maps (stuffthingmaps), as mmdet's HTC configs read
# them: data/coco/{train2017,val2017}/, annotations/instances_{train,val}2017.json,
# stuffthingmaps/{train2017,val2017}/*.png (COCO-stuff label = category id - 1, 255 = unlabeled).
# CocoInstanceStuffDataset is mmdet's CocoDataset that fails early when masks or stuff maps are
# missing (see mmvideoeq/datasets/coco_stuff.py). Box and mask AP: mmdet's CocoMetric
# (pycocotools), through CocoMetricWithSkips, which leaves out images the dataset could not read
# (missing, corrupt, or not of their listed size) and counts them.
dataset_type = 'CocoInstanceStuffDataset'
data_root = 'data/coco/'
backend_args = None
img_scale = (1333, 800)
train_pipeline = [
    dict(type='mmdet.LoadImageFromFile', backend_args=backend_args),
    dict(type='mmdet.LoadAnnotations', with_bbox=True, with_mask=True, with_seg=True),
    dict(type='mmdet.Resize', scale=img_scale, keep_ratio=True),
    dict(type='mmdet.RandomFlip', prob=0.5),
    dict(type='mmdet.PackDetInputs'),
]
test_pipeline = [
    # mmcv's loader, unprefixed: the name mmdet's/mmseg's inferencers replace by their own
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='mmdet.Resize', scale=img_scale, keep_ratio=True),
    dict(type='mmdet.LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='mmdet.PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'),
    ),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='mmdet.AspectRatioBatchSampler'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/', seg='stuffthingmaps/train2017/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=train_pipeline,
        backend_args=backend_args,
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        _scope_='mmvideoeq',  # built in this scope also by mmdet's DetInferencer
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(
    type='CocoMetricWithSkips',
    ann_file=data_root + 'annotations/instances_val2017.json',
    metric=['bbox', 'segm'],
    format_only=False,
    backend_args=backend_args,
)
test_evaluator = val_evaluator
