# ViP-DeepLab (thesis ch. 7, Fig. 7-3) with a ResNet-50 at output stride 32: mmseg's ResNetV1c
# (deep stem, the closest OpenMMLab match of deeplab2's "resnet50_beta"), trained from scratch
# (no pretrained weights are loaded; point init_cfg at a local ImageNet checkpoint to use one).
# Head widths, ASPP rates, depth range and loss weights: deeplab2's
# configs/cityscapes_dvps/vip_deeplab/resnet50_beta_os32.textproto.
norm_cfg = dict(type='BN', requires_grad=True)  # SyncBN for multi-GPU training
model = dict(
    type='ViPDeepLab',
    data_preprocessor=dict(
        type='FramesDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_val=0,
        seg_pad_val=255,
        size_divisor=32,
        test_cfg=dict(size_divisor=32),
    ),
    backbone=dict(
        type='mmseg.ResNetV1c',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 1, 1),
        strides=(1, 2, 2, 2),
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        contract_dilation=True,
    ),
    decode_head=dict(
        type='ViPDeepLabHead',
        in_channels=[256, 512, 1024, 2048],
        high_index=3,  # res5, stride 32
        low_indices=(1, 0),  # res3 (stride 8), res2 (stride 4)
        num_classes=19,
        thing_ids=tuple(range(11, 19)),
        label_divisor=1000,
        ignore_label=32,
        semantic_decoder=dict(
            aspp_channels=256, decoder_channels=256, low_project=(64, 32), atrous_rates=(3, 6, 9)
        ),
        instance_decoder=dict(
            aspp_channels=256, decoder_channels=128, low_project=(32, 16), atrous_rates=(3, 6, 9)
        ),
        semantic_head_channels=256,
        center_head_channels=32,
        offset_head_channels=32,
        depth_head=dict(channels=64, min_depth=0.0, max_depth=88.0),
        next_frame=dict(channels=32, num_cascade=1),  # num_cascade=4: the chapter's Cascade-ASPP
        norm_cfg=norm_cfg,
        target_cfg=dict(sigma=8.0, small_instance_area=4096, small_instance_weight=3.0),
        loss_semantic=dict(type='TopKCrossEntropyLoss', top_k_percent=0.2, loss_weight=1.0),
        loss_center=dict(
            type='WeightedPixelLoss', mode='mse', loss_weight=200.0, loss_name='loss_ctr'
        ),
        loss_offset=dict(
            type='WeightedPixelLoss', mode='l1', loss_weight=0.01, loss_name='loss_off'
        ),
        loss_next_offset=dict(
            type='WeightedPixelLoss', mode='l1', loss_weight=0.01, loss_name='loss_next'
        ),
        loss_depth=dict(type='ViPDepthLoss', loss_weight=0.1),
    ),
    # deeplab2 evaluator options of the ViP-DeepLab configs (keep_k_centers: proto default)
    test_cfg=dict(center_threshold=0.1, nms_kernel=13, top_k=400, stuff_area=2048),
)
