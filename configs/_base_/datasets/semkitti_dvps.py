# SemKITTI-DVPS (ViP-DeepLab, thesis ch. 7.4.2): video_sequence/{train,val} of the official
# release under data/semkitti-dvps/ (sparse labels where LiDAR points project; void 255).
# deeplab2's configs/semkitti_dvps/vip_deeplab/*.textproto: crop 385x1281, scale 0.5-2.0, flip.
_base_ = './cityscapes_dvps.py'
dataset_type = 'SemKITTIDVPSDataset'
data_root = 'data/semkitti-dvps/'
crop_size = (385, 1281)
train_pipeline = [
    dict(type='mmseg.LoadImageFromFile'),
    dict(type='LoadNextImageFromFile'),
    dict(type='LoadPanopticAnnotation', with_next=True),
    dict(type='LoadKittiDepthAnnotation'),
    dict(type='mmseg.RandomResize', scale=(1241, 376), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='ScaleDepthWithImage'),
    dict(type='mmseg.RandomCrop', crop_size=crop_size),
    dict(type='mmseg.RandomFlip', prob=0.5),
    dict(type='PackDVPSInputs'),
]
train_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root, pipeline=train_pipeline)
)
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = [
    dict(type='DVPQMetric', protocol='semkitti_dvps'),
    dict(type='KittiDepthMetric'),
]
test_evaluator = val_evaluator
