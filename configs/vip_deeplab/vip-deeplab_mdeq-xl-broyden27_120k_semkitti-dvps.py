# Streaming ViP-DeepLab: MDEQ-XL backbone, SemKITTI-DVPS.
_base_ = [
    '../_base_/models/vip-deeplab_mdeq-xl.py',
    '../_base_/datasets/semkitti_dvps.py',
    '../_base_/vip_runtime.py',
    '../_base_/schedules/schedule_120k_vip.py',
]
model = dict(
    decode_head=dict(
        num_classes=19, thing_ids=tuple(range(8)), label_divisor=65536, ignore_label=255
    )
)
streaming_test_cfg = dict(iters=[1, 2, 4, 8], init='zeros', full_iters=27)
