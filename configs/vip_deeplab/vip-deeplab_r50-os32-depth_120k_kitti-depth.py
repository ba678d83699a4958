# ViP-DeepLab's depth branch alone on KITTI depth prediction (thesis Table 7-IV, SILog 10.80):
# semantic decoder + depth head (Eq. 7.3, MaxDepth 88), depth loss Eq. 7.4, +-5 degree rotation.
# The chapter fine-tunes its Cityscapes-pretrained model and adds a stride-2 decoder stage and
# flip test-time augmentation; neither is reproduced here (see docs/vip_deeplab.md).
_base_ = [
    '../_base_/models/vip-deeplab_r50-os32.py',
    '../_base_/datasets/kitti_depth.py',
    '../_base_/vip_runtime.py',
    '../_base_/schedules/schedule_120k_vip.py',
]
model = dict(decode_head=dict(panoptic=False, next_frame=None))
custom_hooks = [  # no class set to check
    dict(type='CheckpointCheckHook'),
    dict(type='RNGStateHook'),
    dict(type='NonFiniteLossHook', action='raise'),
]
