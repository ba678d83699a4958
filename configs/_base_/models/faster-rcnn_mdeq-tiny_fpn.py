# The CPU-sized Faster R-CNN + FPN on MDEQ of the bundled benchmark: a 4-branch MDEQ of widths
# 12-96 (expansion 2, 4 groups), SUR-StreamDEQ training (fixed-point solver, N ~ U[1, 8]
# unrollings per training step, 8 steps in the full solve), a 64-channel FPN and small heads.
_base_ = './faster-rcnn_mdeq-xl_fpn.py'
mdeq_channels = [12, 24, 48, 96]
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
    neck=dict(in_channels=mdeq_channels, out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64, anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256),
    ),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=200), rcnn=dict(sampler=dict(num=64))
    ),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=100)),
)
