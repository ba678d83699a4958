# Streaming ViP-DeepLab on the bundled benchmark, trainable on 2 CPU cores (docs/results.md;
# data: configs/_base_/datasets/bundled_cityscapes_dvps.py):
#   python tools/train.py configs/vip_deeplab/vip-deeplab_mdeq-tiny-sur8_600it_bundled-cityscapes-dvps.py
_base_ = [
    '../_base_/models/vip-deeplab_mdeq-xl.py',
    '../_base_/datasets/bundled_cityscapes_dvps.py',
    '../_base_/vip_runtime.py',
    '../_base_/schedules/schedule_120k_vip.py',
]
mdeq_channels = [8, 16, 32, 64]
model = dict(
    backbone=dict(
        num_channels=mdeq_channels,
        num_blocks=[1, 1, 1, 1],
        expansion=2,
        num_groups=4,
        dropout=0.0,
        deq_cfg=dict(
            _delete_=True,
            solver='fixed_point',
            train_mode='stochastic_unroll',
            grad='unroll',
            unroll_max=8,
            train_max_iter=8,
            test_max_iter=8,
            tol=None,
            seed=0,
        ),
    ),
    decode_head=dict(
        in_channels=mdeq_channels,
        semantic_decoder=dict(aspp_channels=32, decoder_channels=32, low_project=(16, 8)),
        instance_decoder=dict(aspp_channels=32, decoder_channels=16, low_project=(8, 8)),
        semantic_head_channels=32,
        center_head_channels=16,
        offset_head_channels=16,
        depth_head=dict(channels=16, max_depth=128.0),  # rendered depth reaches ~115 m
        next_frame=dict(channels=16),
        # 64x128 frames: Gaussians and small-instance area scaled down with the image
        target_cfg=dict(sigma=2.0, small_instance_area=256),
    ),
    # a 13-pixel NMS window and a 2048-pixel stuff area fit 1024x2048 frames, not 64x128
    test_cfg=dict(nms_kernel=5, stuff_area=32),
)
optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=50, end=600, by_epoch=False),
]
train_cfg = dict(max_iters=600, val_interval=600)
default_hooks = dict(checkpoint=dict(interval=200, max_keep_ckpts=2))
randomness = dict(seed=0)
streaming_test_cfg = dict(iters=[1, 2, 4, 8], init='zeros', full_iters=8)
