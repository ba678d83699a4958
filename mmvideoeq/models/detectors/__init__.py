from .streamdeq_faster_rcnn import StreamDEQFasterRCNN

__all__ = ['StreamDEQFasterRCNN']
