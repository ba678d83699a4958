# Streaming ViP-DeepLab: MDEQ-XL backbone, Cityscapes-DVPS (no anchor reports this model).
#   python tools/test.py CONFIG CKPT --streaming --iters 1 2 4 8
_base_ = [
    '../_base_/models/vip-deeplab_mdeq-xl.py',
    '../_base_/datasets/cityscapes_dvps.py',
    '../_base_/vip_runtime.py',
    '../_base_/schedules/schedule_120k_vip.py',
]
streaming_test_cfg = dict(iters=[1, 2, 4, 8], init='zeros', full_iters=27)
