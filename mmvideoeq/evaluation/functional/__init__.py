"""Metric functions in plain numpy (no OpenMMLab import): PQ / VPQ / DVPQ, STQ / DSTQ, depth,
streaming AP (sAP) and the streaming pairing."""

from .coco_panoptic_quality import COCO_VOID, coco_pq_stats, coco_pq_stats_from_pairs  # noqa: F401
from .depth_metrics import (  # noqa: F401
    DEPTH_METRICS,
    DepthSums,
    depth_metrics,
    depth_metrics_from_sums,
    depth_sums,
    reduce_depth_sums,
)
from .panoptic_quality import (  # noqa: F401
    PairCounts,
    PQStats,
    check_panoptic,
    panoptic_pairs,
    pq_stats,
    pq_stats_from_pairs,
    pq_summary,
)
from .stq import DSTQuality, STQuality  # noqa: F401
from .streaming_ap import (  # noqa: F401
    SAP_STAT_NAMES,
    StreamingAPResult,
    annotation_sequences,
    coco_streaming_ap,
    evaluate_record,
    realtime_streaming_ap,
)
from .streaming_pairs import StreamCounts, StreamPairing, pair_stream, simulate_pairs  # noqa: F401
from .video_panoptic_quality import (  # noqa: F401
    DVPQ_PROTOCOLS,
    DVPQProtocol,
    depth_outlier_void,
    dvpq_from_pairs,
    frame_pairs,
    vpq_stats,
    window_starts,
)
