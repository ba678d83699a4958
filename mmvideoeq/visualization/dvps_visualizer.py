"""Colouring of depth-aware video panoptic predictions: stable per-track colours, depth maps.

* :func:`panoptic_to_color`: stuff takes its class colour; a thing instance takes its class
  colour shifted by an offset derived from its panoptic id by a fixed hash. The colour depends
  only on the id, so a track keeps its colour in every frame (and in every run) without any
  state, and neighbouring instances of a class are told apart. deeplab2's
  ``ViP_DeepLab_Demo.ipynb`` reaches the same with a random perturbation remembered across frames.
* :func:`depth_to_color`: a matplotlib colour map over ``[0, max_depth]``; invalid depth (0) is
  black.
* :class:`DVPSLocalVisualizer`: ``add_datasample`` draws ``image | panoptic overlay | depth`` for
  the prediction (and a ground-truth row when present); it is what ``tools/test.py --show-dir``
  calls through mmdet's ``DetVisualizationHook``.
"""

from __future__ import annotations

import numpy as np
from mmengine.visualization import Visualizer

from mmvideoeq.registry import VISUALIZERS

__all__ = ['panoptic_to_color', 'depth_to_color', 'draw_dvps_row', 'DVPSLocalVisualizer']

#: Cityscapes train-id colours (cityscapesscripts ``labels.py``), the default palette.
CITYSCAPES_PALETTE = np.array(
    [
        [128, 64, 128],
        [244, 35, 232],
        [70, 70, 70],
        [102, 102, 156],
        [190, 153, 153],
        [153, 153, 153],
        [250, 170, 30],
        [220, 220, 0],
        [107, 142, 35],
        [152, 251, 152],
        [70, 130, 180],
        [220, 20, 60],
        [255, 0, 0],
        [0, 0, 142],
        [0, 0, 70],
        [0, 60, 100],
        [0, 80, 100],
        [0, 0, 230],
        [119, 11, 32],
    ],
    dtype=np.uint8,
)


def _id_jitter(ids: np.ndarray, spread: int) -> np.ndarray:
    """Deterministic per-id RGB offsets in ``[-spread, spread]`` (a multiplicative hash)."""
    h = (ids.astype(np.uint64) * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)
    parts = [(h >> np.uint64(s)) & np.uint64(0xFF) for s in (0, 8, 16)]
    return np.stack(parts, -1).astype(np.int64) * (2 * spread + 1) // 256 - spread


def panoptic_to_color(
    panoptic: np.ndarray,
    label_divisor: int,
    palette: np.ndarray | None = None,
    void_color: tuple[int, int, int] = (0, 0, 0),
    spread: int = 60,
) -> np.ndarray:
    """Colour a panoptic map ``(H, W)`` of ``class * label_divisor + id`` as ``(H, W, 3)`` RGB.

    Args:
        panoptic: Panoptic ids (numpy or torch).
        label_divisor: Panoptic label divisor.
        palette: ``(C, 3)`` class colours (default: Cityscapes train ids); classes outside it
            (the void label) get ``void_color``.
        void_color: Colour of void pixels.
        spread: Largest per-channel shift of an instance from its class colour.

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    pan = np.asarray(getattr(panoptic, 'cpu', lambda: panoptic)()).astype(np.int64)
    pal = CITYSCAPES_PALETTE if palette is None else np.asarray(palette, dtype=np.uint8)
    ids, inverse = np.unique(pan, return_inverse=True)
    cls, ins = ids // label_divisor, ids % label_divisor
    known = (cls >= 0) & (cls < len(pal))
    colors = np.tile(np.asarray(void_color, dtype=np.int64), (len(ids), 1))
    colors[known] = pal[cls[known]]
    thing = known & (ins > 0)
    colors[thing] = np.clip(colors[thing] + _id_jitter(ids[thing], spread), 0, 255)
    return colors.astype(np.uint8)[inverse.reshape(pan.shape)]


def depth_to_color(depth: np.ndarray, max_depth: float | None = None, cmap: str = 'turbo'):
    """Colour a depth map ``(H, W)`` in metres as ``(H, W, 3)`` RGB; ``<= 0`` is black.

    Args:
        depth: Depth in metres (numpy or torch).
        max_depth: Top of the colour scale (default: the largest valid depth).
        cmap: A matplotlib colour map name.
    """
    import matplotlib

    d = np.asarray(getattr(depth, 'cpu', lambda: depth)(), dtype=np.float64).reshape(
        np.shape(depth)[-2:]
    )
    valid = np.isfinite(d) & (d > 0)
    top = max_depth if max_depth is not None else (d[valid].max() if valid.any() else 1.0)
    rgb = matplotlib.colormaps[cmap](np.clip(d / max(top, 1e-6), 0, 1))[..., :3]
    rgb = (rgb * 255).round().astype(np.uint8)
    rgb[~valid] = 0
    return rgb


def draw_dvps_row(
    image: np.ndarray,
    panoptic=None,
    depth=None,
    *,
    label_divisor: int,
    palette: np.ndarray | None = None,
    alpha: float = 0.6,
    max_depth: float | None = 80.0,
) -> np.ndarray:
    """``image | panoptic overlay | depth colours`` side by side (missing parts left out).

    Args:
        image: ``(H, W, 3)`` uint8 (RGB or BGR: the colours are written in the image's order
            only for the overlay base; track colours are RGB).
        panoptic: ``(H, W)`` panoptic ids or None.
        depth: ``(H, W)`` metres or None.
        label_divisor, palette: See :func:`panoptic_to_color`.
        alpha: Weight of the panoptic colours over the image.
        max_depth: See :func:`depth_to_color`.

    Returns:
        ``(H, k * W, 3)`` uint8.
    """
    h, w = image.shape[:2]
    tiles = [image]
    if panoptic is not None:
        col = panoptic_to_color(np.asarray(panoptic).reshape(h, w), label_divisor, palette)
        tiles.append((image * (1 - alpha) + col * alpha).astype(np.uint8))
    if depth is not None:
        tiles.append(depth_to_color(np.asarray(depth).reshape(h, w), max_depth))
    return np.concatenate(tiles, axis=1)


@VISUALIZERS.register_module()
class DVPSLocalVisualizer(Visualizer):
    """Draws ``image | panoptic overlay | depth`` rows for prediction and ground truth.

    Args:
        name: Instance name.
        alpha: Weight of the panoptic colours over the image.
        max_depth: Top of the depth colour scale (default: each map's largest depth).
        label_divisor: Panoptic label divisor when ``dataset_meta`` has none.
        **kwargs: ``mmengine.visualization.Visualizer`` arguments (``vis_backends``, ...).
    """

    def __init__(
        self,
        name: str = 'visualizer',
        alpha: float = 0.6,
        max_depth: float | None = 80.0,
        label_divisor: int = 1000,
        **kwargs,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.alpha = float(alpha)
        self.max_depth = max_depth
        self.label_divisor = int(label_divisor)

    def draw_row(self, image: np.ndarray, panoptic, depth) -> np.ndarray:
        """``image | overlay | depth`` of one sample (RGB uint8, depth optional)."""
        meta = self.dataset_meta or {}
        return draw_dvps_row(
            image,
            panoptic,
            depth,
            label_divisor=int(meta.get('label_divisor', self.label_divisor)),
            palette=meta.get('palette'),
            alpha=self.alpha,
            max_depth=self.max_depth,
        )

    def add_datasample(
        self,
        name: str,
        image: np.ndarray,
        data_sample=None,
        draw_gt: bool = True,
        draw_pred: bool = True,
        show: bool = False,
        wait_time: float = 0,
        out_file: str | None = None,
        step: int = 0,
        **kwargs,
    ) -> None:
        """Draw a data sample's prediction (and ground truth) and show/save it.

        ``image`` is RGB ``(H, W, 3)`` at the original size; extra keyword arguments of other
        visualization hooks (``pred_score_thr``) are ignored.
        """

        def field(key):
            val = data_sample.get(key) if data_sample is not None else None
            return None if val is None else val.data.cpu().numpy()

        rows = []
        if draw_pred and data_sample is not None:
            rows.append(self.draw_row(image, field('pred_panoptic'), field('pred_depth')))
        if draw_gt and data_sample is not None and field('gt_panoptic') is not None:
            rows.append(self.draw_row(image, field('gt_panoptic'), field('gt_depth')))
        if rows:
            width = max(r.shape[1] for r in rows)
            rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
        drawn = np.concatenate(rows, axis=0) if rows else image
        if show:
            self.show(drawn, win_name=name, wait_time=wait_time)
        if out_file is not None:
            import mmcv

            mmcv.imwrite(drawn[..., ::-1], out_file)
        else:
            self.add_image(name, drawn, step)
