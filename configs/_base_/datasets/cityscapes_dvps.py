# Cityscapes-DVPS (ViP-DeepLab, thesis ch. 7.4.1): video_sequence/{train,val} of the official
# release under data/cityscapes-dvps/. Training reads pairs (t, t+1) stacked on channels so that
# every geometric transform moves both frames and all label maps alike; evaluation walks each
# sequence frame by frame at full resolution (1024x2048).
# Augmentation follows deeplab2's configs/cityscapes_dvps/vip_deeplab/*.textproto: random scale
# 0.5-2.0 (deeplab2: steps of 0.1; here continuous), crop 513x1025, horizontal flip, depth
# divided by the scale factor (deeplab2 input_preprocessing.py).
dataset_type = 'CityscapesDVPSDataset'
data_root = 'data/cityscapes-dvps/'
crop_size = (513, 1025)  # (H, W)
train_pipeline = [
    dict(type='mmseg.LoadImageFromFile'),
    dict(type='LoadNextImageFromFile'),
    dict(type='LoadPanopticAnnotation', with_next=True),
    dict(type='LoadKittiDepthAnnotation'),
    dict(type='mmseg.RandomResize', scale=(2048, 1024), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='ScaleDepthWithImage'),
    dict(type='mmseg.RandomCrop', crop_size=crop_size),
    dict(type='mmseg.RandomFlip', prob=0.5),
    dict(type='PackDVPSInputs'),
]
test_pipeline = [
    dict(type='mmseg.LoadImageFromFile'),
    dict(type='LoadPanopticAnnotation'),
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
        data_prefix=dict(img_path='video_sequence/train'),
        with_next_frame=True,
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=1,  # frames of one video in order: the streaming loop carries the state
    num_workers=2,
    persistent_workers=True,
    # whole videos per process, frames in order (the streaming loop carries the state)
    sampler=dict(type='VideoDistributedSampler'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='video_sequence/val'),
        test_mode=True,
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = [
    dict(type='DVPQMetric', protocol='cityscapes_dvps'),
    dict(type='KittiDepthMetric'),
]
test_evaluator = val_evaluator
