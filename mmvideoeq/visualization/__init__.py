"""Drawing of mmvideoeq predictions (detections with a semantic map, panoptic tracks, depth)."""

from .det_visualizer import DetStuffLocalVisualizer, coco_stuff_label_meta
from .dvps_visualizer import (
    DVPSLocalVisualizer,
    depth_scale_top,
    depth_to_color,
    draw_depth_colorbar,
    draw_dvps_row,
    draw_legend,
    panoptic_to_color,
)

__all__ = [
    'DetStuffLocalVisualizer',
    'coco_stuff_label_meta',
    'DVPSLocalVisualizer',
    'depth_scale_top',
    'depth_to_color',
    'draw_depth_colorbar',
    'draw_dvps_row',
    'draw_legend',
    'panoptic_to_color',
]
