# The MDEQ segmentation model of the reference (locuslab/mdeq, seg_mdeq_XL): MDEQ-XL backbone,
# all scales upsampled to the highest resolution and concatenated, 1x1 conv + BN + ReLU, 1x1
# classifier (mmseg's FCNHead with resize_concat, one 1x1 conv, no input concat).
# No pretrained weights are loaded; an official MDEQ-XL Cityscapes checkpoint converted by
# tools/model_converters/mdeq_to_mmvideoeq.py is loaded with `load_from`.
mdeq_channels = [88, 176, 352, 704]
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    _scope_='mmvideoeq',  # built in this scope also by mmdet's/mmseg's inferencers
    type='StreamDEQEncoderDecoder',
    # logits upsampled to the label size as locuslab/mdeq's validate() does (its test-time
    # inference() uses align_corners=False)
    upsample_align_corners=True,
    data_preprocessor=dict(
        type='mmseg.SegDataPreProcessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_val=0,
        seg_pad_val=255,
        size_divisor=32,
    ),
    backbone=dict(
        type='MDEQ',
        arch='xl',
        task='seg',
        deq_cfg=dict(
            solver='broyden',
            train_mode='implicit',
            grad='implicit',
            train_max_iter=26,
            test_max_iter=27,
            tol=None,
        ),
    ),
    decode_head=dict(
        type='mmseg.FCNHead',
        in_channels=mdeq_channels,
        in_index=[0, 1, 2, 3],
        input_transform='resize_concat',
        channels=sum(mdeq_channels),
        num_convs=1,
        kernel_size=1,
        concat_input=False,
        dropout_ratio=-1,
        num_classes=19,
        norm_cfg=norm_cfg,
        align_corners=True,  # as the reference head and loss
        loss_decode=dict(type='mmseg.CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
    ),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'),
)
