# StreamDEQ-26 (thesis Table 4.2/4.3): implicit MDEQ-XL, 26 Broyden iterations in training (IFT
# backward), Faster R-CNN + FPN, ImageNet VID + DET, 7 epochs.
_base_ = [
    '../_base_/models/faster-rcnn_mdeq-xl_fpn.py',
    '../_base_/datasets/imagenet_vid.py',
    '../_base_/schedules/schedule_7e_vid.py',
    '../_base_/default_runtime.py',
]
model = dict(
    backbone=dict(
        deq_cfg=dict(
            solver='broyden',
            train_mode='implicit',
            grad='implicit',
            train_max_iter=26,
            test_max_iter=26,
            tol=None,
        )
    )
)
# tools/test.py --streaming settings (flags override them)
streaming_test_cfg = dict(iters=[1, 2, 4, 8], init='zeros', full_iters=26)
