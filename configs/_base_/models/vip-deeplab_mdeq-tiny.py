# The CPU-sized ViP-DeepLab on MDEQ of the bundled benchmark: a 4-branch MDEQ of widths 8-64
# (expansion 2, 4 groups), SUR-StreamDEQ training (fixed-point solver, N ~ U[1, 8] unrollings per
# training step, 8 steps in the full solve), decoders and heads of 16-32 channels, post-processing
# sized for 64x128 frames.
_base_ = './vip-deeplab_mdeq-xl.py'
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
