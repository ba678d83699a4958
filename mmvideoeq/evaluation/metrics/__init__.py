from .coco_metric import CocoMetricWithSkips  # noqa: F401
from .coco_panoptic_metric import CocoPanopticPQMetric  # noqa: F401
from .dvps_metric import DVPQMetric  # noqa: F401
from .frame_offset import OffsetBuckets, aggregate_by_offset, frame_offsets  # noqa: F401
from .kitti_depth_metric import KittiDepthMetric  # noqa: F401
from .seg_metric import StreamingIoUMetric  # noqa: F401
from .stq_metric import STQMetric  # noqa: F401
from .streaming_dvpq import (  # noqa: F401
    EMPTY_DEPTH,
    DVPQScoring,
    PanopticFrame,
    StreamingDVPQResult,
    empty_prediction,
    streaming_dvpq,
)
from .streaming_miou import (  # noqa: F401
    EMPTY_LABEL,
    IoUScoring,
    StreamingIoUResult,
    streaming_miou,
)
from .vid_metric import VIDMetric  # noqa: F401
