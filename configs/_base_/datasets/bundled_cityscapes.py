# The bundled benchmark's Cityscapes part (real photographs; `tools/data/make_benchmark.py`):
# 30-frame snippets of 64x128 in the real file naming, read by the same CityscapesClipDataset.
# Training reads every frame's labels from gtFine_sequence/ (written by the generator only).
_base_ = './cityscapes_clips.py'
data_root = 'data/bundled/cityscapes/'
img_scale = (256, 128)  # 2x the small preset's 128x64 frames
train_pipeline = [
    dict(type='mmseg.LoadImageFromFile'),
    dict(type='mmseg.LoadAnnotations'),
    dict(type='mmseg.Resize', scale=img_scale, keep_ratio=True),
    dict(type='mmseg.RandomFlip', prob=0.5),
    dict(type='mmseg.PackSegInputs'),
]
test_pipeline = [
    # mmcv's loader, unprefixed: the name mmdet's/mmseg's inferencers replace by their own
    dict(type='LoadImageFromFile'),
    dict(type='mmseg.Resize', scale=img_scale, keep_ratio=True),
    # scoped by _scope_ so that MMSegInferencer finds (and drops) it by name
    dict(type='LoadAnnotations', _scope_='mmseg'),
    dict(type='mmseg.PackSegInputs', meta_keys={{_base_.seg_meta_keys}}),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        data_root=data_root,
        data_prefix=dict(
            img_path='leftImg8bit_sequence/train', seg_map_path='gtFine_sequence/train'
        ),
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    # clips of 1..20 frames ending on each annotated frame: the by-frame-offset curve (Fig. 4.2)
    dataset=dict(data_root=data_root, clip_length=[1, 2, 5, 10, 20], pipeline=test_pipeline),
)
test_dataloader = val_dataloader
