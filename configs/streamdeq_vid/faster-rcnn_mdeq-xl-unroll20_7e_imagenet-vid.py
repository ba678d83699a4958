# UR-StreamDEQ (thesis ch. 3.3): the same f, trained as a weight-tied network of 20 fixed-point
# unrollings with plain backpropagation; inference by fixed-point iteration.
_base_ = '../streamdeq_vid.py'
model = dict(
    backbone=dict(
        deq_cfg=dict(
            _delete_=True,
            solver='fixed_point',
            train_mode='unroll',
            grad='unroll',
            unroll_iters=20,
            train_max_iter=20,
            test_max_iter=20,
            tol=None,
        )
    )
)
