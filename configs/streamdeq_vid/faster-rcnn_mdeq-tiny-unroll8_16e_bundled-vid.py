# UR-StreamDEQ counterpart of the bundled SUR model: always 8 fixed-point unrollings in training.
# Trained to compare how the cold-start baseline degrades with few iterations (docs/results.md).
_base_ = './faster-rcnn_mdeq-tiny-sur8_16e_bundled-vid.py'
model = dict(backbone=dict(deq_cfg=dict(train_mode='unroll', unroll_iters=8)))
