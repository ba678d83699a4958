# The bundled benchmark's Cityscapes-DVPS part (real photographs rendered into the official
# layout; `python tools/data/make_benchmark.py --out data/bundled_dvps --preset small
# --formats cityscapes_dvps`): 64x128 frames, 4 train and 2 val sequences of 6 frames.
_base_ = './cityscapes_dvps.py'
data_root = 'data/bundled_dvps/cityscapes_dvps/'
crop_size = (64, 128)
train_pipeline = [
    dict(type='mmseg.LoadImageFromFile'),
    dict(type='LoadNextImageFromFile'),
    dict(type='LoadPanopticAnnotation', with_next=True),
    dict(type='LoadDepthAnnotation'),
    dict(type='mmseg.RandomResize', scale=(128, 64), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='ScaleDepthWithImage'),
    dict(type='mmseg.RandomCrop', crop_size=crop_size),
    dict(type='mmseg.RandomFlip', prob=0.5),
    dict(type='PackDVPSInputs'),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline),
)
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
# The official protocol averages over all 19 classes (a class absent from the whole val set
# gives NaN); the bundled scenes hold 8 of them, so classes are averaged over those present.
val_evaluator = [
    dict(type='DVPQMetric', protocol='cityscapes_dvps', average='valid'),
    dict(type='DepthMetric'),
]
test_evaluator = val_evaluator
