# Shot-change experiment (thesis Sec. 4.1.3, Fig. 4.4) on the bundled benchmark: every clip is
# preceded by a frame of another clip whose fixed point is solved in full (init='reference', Eq.
# 3.4); StreamDEQ then continues from that foreign fixed point into the clip.
#   python tools/test.py configs/streamdeq_seg/mdeq-tiny-sur8_800it_bundled-cityscapes-shotchange.py \
#       checkpoints/mdeq-tiny-sur8_800it_bundled-cityscapes.pth --streaming --iters 1 2 4
_base_ = './mdeq-tiny-sur8_800it_bundled-cityscapes.py'
val_dataloader = dict(dataset=dict(init_from='other_clip', seed=0))
test_dataloader = val_dataloader
streaming_test_cfg = dict(init='reference', reference_iters=8)
