# The bundled benchmark's Cityscapes-DVPS part (real photographs rendered into the official
# layout by tools/data/make_benchmark.py). Training reads the 24 train sequences of the 'large'
# preset (256x512) resized to 64x128; evaluation reads the 2 val sequences of the 'small' preset,
# rendered at 64x128 (the splits are rendered from different seeds, so no val scene is trained on):
#   python tools/data/make_benchmark.py --out data/bundled_dvps_large --preset large \
#       --formats cityscapes_dvps
#   python tools/data/make_benchmark.py --out data/bundled_dvps --preset small \
#       --formats cityscapes_dvps
# Resizing the whole frame keeps metric depth (the focal length shrinks with it), so there is
# no ScaleDepthWithImage; augmentation is a horizontal flip.
_base_ = './cityscapes_dvps.py'
data_root = 'data/bundled_dvps/cityscapes_dvps/'
train_root = 'data/bundled_dvps_large/cityscapes_dvps/'
train_pipeline = [
    dict(type='mmseg.LoadImageFromFile'),
    dict(type='LoadNextImageFromFile'),
    dict(type='LoadPanopticAnnotation', with_next=True),
    dict(type='LoadKittiDepthAnnotation'),
    dict(type='mmseg.Resize', scale=(128, 64), keep_ratio=True),
    dict(type='mmseg.RandomFlip', prob=0.5),
    dict(type='PackDVPSInputs'),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=train_root, pipeline=train_pipeline),
)
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
# The official protocol averages over all 19 classes (a class absent from the whole val set
# gives NaN); the bundled scenes hold 8 of them, so classes are averaged over those present.
val_evaluator = [
    dict(type='DVPQMetric', protocol='cityscapes_dvps', average='valid'),
    dict(type='KittiDepthMetric'),
]
test_evaluator = val_evaluator
