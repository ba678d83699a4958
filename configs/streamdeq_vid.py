# Main entry point of the video object detection experiment (thesis ch. 4.2):
#   python tools/train.py configs/streamdeq_vid.py
#   python tools/test.py configs/streamdeq_vid.py CKPT --streaming --iters 1 2 4 8
# StreamDEQ-26 on ImageNet VID; the variants live in configs/streamdeq_vid/.
_base_ = './streamdeq_vid/faster-rcnn_mdeq-xl-broyden26_7e_imagenet-vid.py'
