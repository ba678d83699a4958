# StreamDEQ-26 on ImageNet VID (thesis ch. 4.2, Tables 4.2/4.3): implicit MDEQ-XL, 26 Broyden
# steps in training (IFT backward) and in the full solve, Faster R-CNN + FPN, ImageNet VID + DET,
# 7 epochs. The variants (StreamDEQ-50, UR-, SUR-StreamDEQ, the bundled CPU models) are in
# configs/streamdeq_vid/.
#   python tools/train.py configs/streamdeq_vid.py
#   python tools/test.py configs/streamdeq_vid.py CKPT --streaming --iters 1 2 4 8
_base_ = [
    './_base_/models/faster-rcnn_mdeq-xl_fpn.py',
    './_base_/datasets/imagenet_vid.py',
    './_base_/schedules/schedule_7e_vid.py',
    './_base_/default_runtime.py',
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
# tools/test.py --streaming settings (flags override them); full = the backbone's 26-step solve
streaming_test_cfg = dict(iters=[1, 2, 4, 8], init='zeros')
