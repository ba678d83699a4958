from .cityscapes_clips import CityscapesClipDataset  # noqa: F401
from .coco_stuff import CocoInstanceStuffDataset  # noqa: F401
from .dvps import CityscapesDVPSDataset, SemKITTIDVPSDataset  # noqa: F401
from .imagenet_vid import IMAGENET_VID_CLASSES, ImagenetVIDDataset  # noqa: F401
from .kitti_depth import KittiDepthDataset  # noqa: F401
from .samplers import VideoClipBatchSampler, VideoInterleavedBatchSampler  # noqa: F401
from .transforms import *  # noqa: F401,F403
from .video_clips import ClipFrame, VideoClipDataset  # noqa: F401
