# StreamDEQ-50: as StreamDEQ-26 with 50 Broyden iterations in training (and the full solve).
_base_ = '../streamdeq_vid.py'
model = dict(backbone=dict(deq_cfg=dict(train_max_iter=50, test_max_iter=50)))
