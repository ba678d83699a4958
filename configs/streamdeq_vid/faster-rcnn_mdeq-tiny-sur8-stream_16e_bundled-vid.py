# SUR-StreamDEQ trained on carried states (a streaming-aware SUR, docs/detectors.md "Training on
# carried states"): the model of faster-rcnn_mdeq-tiny-sur8_16e_bundled-vid.py, every batch 2 clips
# of K consecutive training frames (K drawn from 1..6 per batch); a clip's first frame is solved
# from zeros with SUR's drawn unroll depth (1..8), every later frame warm-started from the previous
# frame's fixed point with one unrolled step (stream@1), the loss on every frame, backpropagation
# truncated every 3 frames.
#   python tools/train.py configs/streamdeq_vid/faster-rcnn_mdeq-tiny-sur8-stream_16e_bundled-vid.py
_base_ = './faster-rcnn_mdeq-tiny-sur8_16e_bundled-vid.py'
model = dict(clip_train_cfg=dict(stream_steps=1, cold_steps=None, truncate=3))
train_dataloader = dict(
    batch_size=2,  # clips per batch
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(
        _delete_=True, type='VideoClipBatchSampler', clip_len=(1, 6), num_batches=30
    ),
    dataset=dict(
        _delete_=True, type='VideoClipDataset', dataset={{_base_.train_dataloader.dataset}}
    ),
)
