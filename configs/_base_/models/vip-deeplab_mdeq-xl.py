# ViP-DeepLab on the MDEQ-XL backbone (segmentation preset of locuslab/mdeq): the four
# equilibrium scales (strides 4, 8, 16, 32) replace res2..res5. The backbone is a DEQ, so the model
# also runs the streaming protocol (tools/test.py --streaming: warm-started solves, one frame at
# a time, with the chapter's stitching; docs/vip_deeplab.md).
_base_ = './vip-deeplab_r50-os32.py'
mdeq_channels = [88, 176, 352, 704]
model = dict(
    backbone=dict(
        _delete_=True,
        type='MDEQ',
        arch='xl',
        task='seg',
        deq_cfg=dict(
            solver='broyden',
            train_mode='implicit',
            grad='implicit',
            train_max_iter=26,
            test_max_iter=27,
            tol=None,
        ),
    ),
    decode_head=dict(in_channels=mdeq_channels),
)
