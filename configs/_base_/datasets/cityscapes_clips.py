# Cityscapes 20-frame clips (thesis ch. 4.1.1): every annotated val frame with its preceding
# frames from leftImg8bit_sequence, evaluated on the annotated (20th) frame with the 19 train
# classes. Training uses mmseg's own CityscapesDataset. See docs/cityscapes_clips.md.
data_root = 'data/cityscapes/'
crop_size = (512, 1024)
seg_meta_keys = (
    'img_path',
    'seg_map_path',
    'ori_shape',
    'img_shape',
    'pad_shape',
    'scale_factor',
    'flip',
    'flip_direction',
    'reduce_zero_label',
    'video_id',
    'frame_id',
    'video_length',
    'is_annotated',
    'is_init_frame',
)
train_pipeline = [
    dict(type='mmseg.LoadImageFromFile'),
    dict(type='mmseg.LoadAnnotations'),
    dict(type='mmseg.RandomResize', scale=(2048, 1024), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='mmseg.RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='mmseg.RandomFlip', prob=0.5),
    dict(type='mmseg.PhotoMetricDistortion'),
    dict(type='mmseg.PackSegInputs'),
]
test_pipeline = [
    # mmcv's loader, unprefixed: the name mmdet's/mmseg's inferencers replace by their own
    dict(type='LoadImageFromFile'),
    dict(type='mmseg.Resize', scale=(2048, 1024), keep_ratio=True),
    # scoped by _scope_ so that MMSegInferencer finds (and drops) it by name
    dict(type='LoadAnnotations', _scope_='mmseg'),
    dict(type='mmseg.PackSegInputs', meta_keys=seg_meta_keys),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='mmseg.CityscapesDataset',
        data_root=data_root,
        data_prefix=dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train'),
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    # whole videos per process, frames in order (the streaming loop carries the state)
    sampler=dict(type='VideoDistributedSampler'),
    dataset=dict(
        _scope_='mmvideoeq',  # built in this scope also by mmdet's DetInferencer
        type='CityscapesClipDataset',
        data_root=data_root,
        clip_length=20,
        label_type='trainIds',
        data_prefix=dict(img_path='leftImg8bit_sequence/val', seg_map_path='gtFine/val'),
        pipeline=test_pipeline,
        test_mode=True,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='StreamingIoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
