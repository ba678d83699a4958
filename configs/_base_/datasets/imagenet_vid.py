# ImageNet VID (+ DET for training) in OpenMMLab's CocoVID conversion; see docs/imagenet_vid.md.
# Shorter side 600 (thesis ch. 4.2.1), per-frame training with 4 images per batch, every
# validation frame evaluated in order.
dataset_type = 'ImagenetVIDDataset'
data_root = 'data/ILSVRC/'
# The 30 ImageNet VID classes (mmvideoeq.class_names.VID_CLASSES) are the dataset's default; give
# metainfo=dict(classes=(...)) to evaluate or train on a subset (matched by name).
metainfo = dict()
backend_args = None
video_meta_keys = (
    'img_id',
    'img_path',
    'ori_shape',
    'img_shape',
    'scale_factor',
    'flip',
    'flip_direction',
    'video_id',
    'frame_id',
    'video_length',
)
train_pipeline = [
    dict(type='mmdet.LoadImageFromFile', backend_args=backend_args),
    dict(type='mmdet.LoadAnnotations', with_bbox=True),
    dict(type='mmdet.Resize', scale=(1000, 600), keep_ratio=True),
    dict(type='mmdet.RandomFlip', prob=0.5),
    dict(type='mmdet.PackDetInputs', meta_keys=video_meta_keys),
]
test_pipeline = [
    # mmcv's loader, unprefixed: the name mmdet's/mmseg's inferencers replace by their own
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='mmdet.Resize', scale=(1000, 600), keep_ratio=True),
    dict(type='mmdet.LoadAnnotations', with_bbox=True),
    dict(type='mmdet.PackDetInputs', meta_keys=video_meta_keys),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='mmdet.AspectRatioBatchSampler'),
    dataset=dict(
        type='ConcatDataset',
        datasets=[
            dict(
                type=dataset_type,
                data_root=data_root,
                metainfo=metainfo,
                ann_file='annotations/imagenet_vid_train.json',
                data_prefix=dict(img_path='Data/VID'),
                train_frame_sampling='flag',
                filter_cfg=dict(filter_empty_gt=True, min_size=16),
                pipeline=train_pipeline,
            ),
            dict(
                type=dataset_type,
                data_root=data_root,
                metainfo=metainfo,
                ann_format='coco',
                ann_file='annotations/imagenet_det_30plus1cls.json',
                data_prefix=dict(img_path='Data/DET'),
                train_frame_sampling='flag',
                filter_cfg=dict(filter_empty_gt=True, min_size=16),
                pipeline=train_pipeline,
            ),
        ],
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    # whole videos per process, frames in order (the streaming loop carries the state)
    sampler=dict(type='VideoDistributedSampler'),
    dataset=dict(
        _scope_='mmvideoeq',  # built in this scope also by mmdet's DetInferencer
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/imagenet_vid_val.json',
        data_prefix=dict(img_path='Data/VID'),
        test_mode=True,
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='VIDMetric', ann_file=data_root + 'annotations/imagenet_vid_val.json')
test_evaluator = val_evaluator
