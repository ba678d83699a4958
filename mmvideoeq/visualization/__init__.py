"""Drawing of mmvideoeq predictions (panoptic tracks, depth)."""

from .dvps_visualizer import (
    DVPSLocalVisualizer,
    depth_to_color,
    draw_dvps_row,
    panoptic_to_color,
)

__all__ = ['DVPSLocalVisualizer', 'depth_to_color', 'draw_dvps_row', 'panoptic_to_color']
