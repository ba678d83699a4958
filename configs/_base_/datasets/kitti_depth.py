# KITTI depth prediction (thesis Table 7-IV): train on data_depth_annotated/train with the KITTI
# raw frames ('annotated' layout), evaluate on the official 1000-image val selection
# (depth_selection/val_selection_cropped). The chapter trains with +-5 degrees of random rotation
# (mmseg's RandomRotate, nearest-neighbour for the depth map) and horizontal flips.
dataset_type = 'KittiDepthDataset'
data_root = 'data/kitti/'
crop_size = (352, 1216)  # the val selection's crop (KITTI depth benchmark)
train_pipeline = [
    dict(type='mmseg.LoadImageFromFile'),
    dict(type='LoadKittiDepthAnnotation'),
    dict(type='mmseg.RandomRotate', prob=1.0, degree=5.0, pad_val=0, seg_pad_val=0),
    dict(type='mmseg.RandomCrop', crop_size=crop_size),
    dict(type='mmseg.RandomFlip', prob=0.5),
    dict(type='PackDVPSInputs'),
]
test_pipeline = [
    dict(type='mmseg.LoadImageFromFile'),
    dict(type='LoadKittiDepthAnnotation'),
    dict(type='PackDVPSInputs'),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        layout='annotated',
        data_prefix=dict(img_path='raw', depth_path='data_depth_annotated/train'),
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        layout='selection',
        test_mode=True,
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='KittiDepthMetric')
test_evaluator = val_evaluator
