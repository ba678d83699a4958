# The streaming DetectoRS Faster R-CNN trained for streaming: as
# faster-rcnn_r26-tiny-detectors_16e_bundled-vid.py, but every training step unrolls a number of
# RFP steps drawn uniformly from 1..4 (train_steps; the SUR-StreamDEQ recipe) instead of always
# T = 2, so the heads and the feedback backbone also see pyramids after 1, 3 and 4 steps.
# Evaluation as the chapter's detector (T = 2):
#   python tools/test.py configs/detectors/faster-rcnn_r26-tiny-detectors-sur4_16e_bundled-vid.py \
#       CKPT --streaming --iters 1 2
_base_ = './faster-rcnn_r26-tiny-detectors_16e_bundled-vid.py'
model = dict(neck=dict(train_steps=(1, 4)))
