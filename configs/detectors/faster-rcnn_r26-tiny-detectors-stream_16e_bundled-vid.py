# The streaming DetectoRS Faster R-CNN: the model of faster-rcnn_r26-tiny-detectors_16e_bundled-vid.py
# (RFP T = 2 + SAC) trained on carried states (docs/detectors.md, "Training on carried states"):
# every batch holds 4 clips of K consecutive training frames, K drawn from 1..4 per batch; a
# clip's first frame runs 1 or 2 RFP steps from zeros (drawn per batch; 1 = what the stream
# runs on its first frame, 2 = the chapter's T = 2), every later frame one feedback step from
# the previous frame's pyramid (stream@1), the loss on every frame, backpropagation truncated
# every 2 frames. The feedback is bounded (feedback_bound=8: R(f) -> 8 tanh(R(f) / 8)), so the
# carried pyramid cannot grow without bound. 44 batches per epoch (704 optimizer steps against
# the per-frame detector's 544; about 440 frames an epoch against its 136 images, a streamed
# frame running one backbone pass where a T = 2 image runs two). Recipes compared in
# docs/results.md, "Streaming RFP".
#   python tools/train.py configs/detectors/faster-rcnn_r26-tiny-detectors-stream_16e_bundled-vid.py
#   python tools/test.py configs/detectors/faster-rcnn_r26-tiny-detectors-stream_16e_bundled-vid.py \
#       CKPT --streaming --iters 1 2
_base_ = './faster-rcnn_r26-tiny-detectors_16e_bundled-vid.py'
model = dict(
    neck=dict(feedback_bound=8.0),
    clip_train_cfg=dict(stream_steps=1, cold_steps=(1, 2), truncate=2),
)
train_dataloader = dict(
    batch_size=4,  # clips per batch
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(
        _delete_=True, type='VideoClipBatchSampler', clip_len=(1, 4), num_batches=44
    ),
    dataset=dict(
        _delete_=True, type='VideoClipDataset', dataset={{_base_.train_dataloader.dataset}}
    ),
)
