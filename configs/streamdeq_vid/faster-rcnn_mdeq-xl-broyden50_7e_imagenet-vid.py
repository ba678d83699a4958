# StreamDEQ-50: as StreamDEQ-26 with 50 Broyden iterations in training (and the full solve).
_base_ = './faster-rcnn_mdeq-xl-broyden26_7e_imagenet-vid.py'
model = dict(backbone=dict(deq_cfg=dict(train_max_iter=50, test_max_iter=50)))
streaming_test_cfg = dict(full_iters=50)
