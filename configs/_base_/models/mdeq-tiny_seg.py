# The CPU-sized MDEQ segmentor of the bundled benchmark: a 4-branch MDEQ of widths 12-96
# (expansion 2, 4 groups), SUR-StreamDEQ training (fixed-point solver, N ~ U[1, 8] unrollings per
# training step, 8 steps in the full solve), the reference's resize-concat head.
_base_ = './mdeq-xl_seg.py'
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
    decode_head=dict(in_channels=mdeq_channels, channels=sum(mdeq_channels)),
)
