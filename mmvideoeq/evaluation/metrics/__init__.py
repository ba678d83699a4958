from .coco_metric import CocoMetricWithSkips  # noqa: F401
from .coco_panoptic_metric import CocoPanopticPQMetric  # noqa: F401
from .dvps_metric import DVPQMetric  # noqa: F401
from .frame_offset import OffsetBuckets, aggregate_by_offset, frame_offsets  # noqa: F401
from .kitti_depth_metric import KittiDepthMetric  # noqa: F401
from .seg_metric import StreamingIoUMetric  # noqa: F401
from .stq_metric import STQMetric  # noqa: F401
from .vid_metric import VIDMetric  # noqa: F401
