# SUR-StreamDEQ: stochastically unrolled training, N ~ U[1, 20] fixed-point unrollings per
# training step; inference by fixed-point iteration.
_base_ = './faster-rcnn_mdeq-xl-unroll20_7e_imagenet-vid.py'
model = dict(backbone=dict(deq_cfg=dict(train_mode='stochastic_unroll', unroll_max=20)))
