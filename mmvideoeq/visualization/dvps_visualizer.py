"""Colouring of depth-aware video panoptic predictions: stable per-track colours, depth maps.

* :func:`panoptic_to_color`: stuff takes its class colour; a thing instance takes its class
  colour shifted by an offset derived from its panoptic id by a fixed hash. The colour depends
  only on the id, so a track keeps its colour in every frame (and in every run) without any
  state, and neighbouring instances of a class are told apart. deeplab2's
  ``ViP_DeepLab_Demo.ipynb`` reaches the same with a random perturbation remembered across frames.
* :func:`depth_to_color`: a matplotlib colour map over ``[0, max_depth]``; invalid depth (0) is
  black.
* :func:`draw_dvps_row`: ``image | panoptic overlay | depth`` side by side, over a footer with a
  legend (the colour and name of every class in the map) and a depth colour bar with its scale
  in metres.
* :class:`DVPSLocalVisualizer`: ``add_datasample`` draws that row for the prediction (and a
  ground-truth row when asked: ``VideoVisualizationHook(draw_gt=True)``); it is what
  ``tools/test.py --show-dir`` calls through the ``VideoVisualizationHook``.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
from mmengine.visualization import Visualizer

from mmvideoeq.registry import VISUALIZERS

__all__ = [
    'panoptic_to_color',
    'depth_to_color',
    'depth_scale_top',
    'draw_dvps_row',
    'draw_legend',
    'draw_depth_colorbar',
    'DVPSLocalVisualizer',
]

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


def _as_depth(depth) -> np.ndarray:
    d = np.asarray(getattr(depth, 'cpu', lambda: depth)(), dtype=np.float64)
    return d.reshape(d.shape[-2:])


def depth_scale_top(depth, max_depth: float | None = None) -> float:
    """Top of the depth colour scale: ``max_depth``, else the largest valid depth (else 1)."""
    if max_depth is not None:
        return float(max_depth)
    d = _as_depth(depth)
    valid = np.isfinite(d) & (d > 0)
    return float(d[valid].max()) if valid.any() else 1.0


def depth_to_color(depth: np.ndarray, max_depth: float | None = None, cmap: str = 'turbo'):
    """Colour a depth map ``(H, W)`` in metres as ``(H, W, 3)`` RGB; ``<= 0`` is black.

    Args:
        depth: Depth in metres (numpy or torch).
        max_depth: Top of the colour scale (default: the largest valid depth).
        cmap: A matplotlib colour map name.
    """
    import matplotlib

    d = _as_depth(depth)
    valid = np.isfinite(d) & (d > 0)
    top = depth_scale_top(d, max_depth)
    rgb = matplotlib.colormaps[cmap](np.clip(d / max(top, 1e-6), 0, 1))[..., :3]
    rgb = (rgb * 255).round().astype(np.uint8)
    rgb[~valid] = 0
    return rgb


def _font_scale(height: int) -> float:
    """cv2 font scale for a tile ``height`` pixels tall (7-px text at 64 px, ~20 px at 720)."""
    return float(np.clip(height / 240.0, 0.3, 1.0))


def _text_box(text: str, scale: float) -> tuple[int, int, int]:
    thick = max(1, int(round(scale * 1.5)))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    return w, h + base, thick


def _legend_layout(names: Sequence[str], width: int, scale: float) -> list[tuple[int, int]]:
    """Top-left corner of each legend entry (swatch + name), wrapped to ``width``."""
    _, line_h, _ = _text_box('Ag', scale)
    pad, sw = max(2, line_h // 4), line_h
    x, y, out = pad, pad, []
    for name in names:
        w = sw + pad + _text_box(name, scale)[0]
        if x > pad and x + w > width - pad:
            x, y = pad, y + line_h + pad
        out.append((x, y))
        x += w + 2 * pad
    return out


def draw_legend(
    names: Sequence[str],
    colors: Sequence[Sequence[int]],
    width: int,
    *,
    scale: float,
    height: int | None = None,
) -> np.ndarray:
    """A legend strip: a colour swatch and the name of each class, wrapped to ``width``.

    Args:
        names: Class names, in drawing order.
        colors: Their RGB colours.
        width: Strip width in pixels.
        scale: cv2 font scale.
        height: Strip height (default: what the entries need).

    Returns:
        ``(height, width, 3)`` uint8 RGB (black background, white names).
    """
    corners = _legend_layout(names, width, scale)
    _, line_h, thick = _text_box('Ag', scale)
    pad = max(2, line_h // 4)
    need = (corners[-1][1] + line_h + pad) if corners else 0
    strip = np.zeros((need if height is None else height, width, 3), np.uint8)
    for (x, y), name, color in zip(corners, names, colors):
        strip[y : y + line_h, x : x + line_h] = np.asarray(color, np.uint8)
        cv2.putText(
            strip,
            name,
            (x + line_h + pad, y + line_h - max(1, line_h // 5)),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (255, 255, 255),
            thick,
            cv2.LINE_AA,
        )
    return strip


def draw_depth_colorbar(
    width: int, height: int, top: float, *, scale: float, cmap: str = 'turbo'
) -> np.ndarray:
    """A horizontal depth colour bar over ``[0, top]`` metres with its end labels.

    The bar's pixel column ``x`` (of ``margin <= x < width - margin``) has the colour of depth
    ``top * (x - margin) / (bar width - 1)``, exactly as :func:`depth_to_color` colours it.

    Returns:
        ``(height, width, 3)`` uint8 RGB.
    """
    strip = np.zeros((height, width, 3), np.uint8)
    _, line_h, thick = _text_box('0', scale)
    margin = max(2, line_h // 4)
    bar_h = max(3, min(line_h, height - line_h - 3 * margin))
    bar_w = width - 2 * margin
    if bar_w < 2 or height < bar_h + 2 * margin:
        return strip
    ramp = np.linspace(0.0, top, bar_w)[None].repeat(bar_h, 0)
    ramp[:, 0] = 1e-9 * top  # the first column is depth 0+, not "invalid" (black)
    strip[margin : margin + bar_h, margin : margin + bar_w] = depth_to_color(ramp, top, cmap)
    y = margin + bar_h + margin + line_h - max(1, line_h // 5)
    if y < height:
        label = f'{top:.3g} m'
        lw = _text_box(label, scale)[0]
        for text, x in (('0', margin), (label, width - margin - lw)):
            cv2.putText(
                strip, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick
            )
    return strip


def _fit(arr: np.ndarray, h: int, w: int) -> np.ndarray:
    """Nearest-neighbour resize of a label/depth map to ``(h, w)`` (labels stay labels)."""
    arr = np.asarray(arr)
    arr = arr.reshape(arr.shape[-2:])
    if arr.shape == (h, w):
        return arr
    rows = (np.arange(h) * arr.shape[0] // h).clip(0, arr.shape[0] - 1)
    cols = (np.arange(w) * arr.shape[1] // w).clip(0, arr.shape[1] - 1)
    return arr[rows[:, None], cols[None, :]]


def draw_dvps_row(
    image: np.ndarray,
    panoptic=None,
    depth=None,
    *,
    label_divisor: int,
    palette: np.ndarray | None = None,
    classes: Sequence[str] | None = None,
    alpha: float = 0.6,
    max_depth: float | None = 80.0,
    annotate: bool = True,
) -> np.ndarray:
    """``image | panoptic overlay | depth colours`` side by side, over a legend and colour bar.

    The footer (``annotate``) holds, under the image and overlay, a legend of the classes present
    in ``panoptic`` (swatch in the class colour, name from ``classes``) and, under the depth
    tile, a colour bar from 0 to the top of the depth scale in metres. Its height depends only on
    the image size and the number of ``classes``, so every frame of a video gets one size.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        panoptic: ``(H', W')`` panoptic ids or None (resized to the image, nearest).
        depth: ``(H', W')`` metres or None (resized to the image, nearest).
        label_divisor, palette: See :func:`panoptic_to_color`.
        classes: Class names indexed by class id (default: ``class <id>``).
        alpha: Weight of the panoptic colours over the image.
        max_depth: See :func:`depth_to_color`.
        annotate: Add the legend / colour-bar footer.

    Returns:
        ``(H + footer, k * W, 3)`` uint8 RGB, ``k`` = 1 + (panoptic given) + (depth given).
    """
    h, w = image.shape[:2]
    tiles = [image]
    pan = None
    if panoptic is not None:
        pan = _fit(np.asarray(getattr(panoptic, 'cpu', lambda: panoptic)()), h, w)
        col = panoptic_to_color(pan, label_divisor, palette)
        tiles.append((image * (1 - alpha) + col * alpha).astype(np.uint8))
    if depth is not None:
        depth = _fit(_as_depth(depth), h, w)
        tiles.append(depth_to_color(depth, max_depth))
    row = np.concatenate(tiles, axis=1)
    if not annotate or (pan is None and depth is None):
        return row
    scale = _font_scale(h)
    pal = CITYSCAPES_PALETTE if palette is None else np.asarray(palette, dtype=np.uint8)
    n_names = len(classes) if classes is not None else len(pal)
    all_names = [
        classes[i] if classes is not None and i < len(classes) else f'class {i}'
        for i in range(max(n_names, len(pal)))
    ]
    legend_w = 2 * w if pan is not None else w
    _, line_h, _ = _text_box('Ag', scale)
    corners = _legend_layout(all_names[: len(pal)], legend_w, scale)  # room for every class
    foot_h = max((corners[-1][1] + line_h + max(2, line_h // 4)) if corners else 0, 3 * line_h)
    footer = np.zeros((foot_h, row.shape[1], 3), np.uint8)
    if pan is not None:
        present = sorted({int(c) for c in np.unique(pan // label_divisor) if 0 <= c < len(pal)})
        footer[:, :legend_w] = draw_legend(
            [all_names[c] for c in present],
            [pal[c] for c in present],
            legend_w,
            scale=scale,
            height=foot_h,
        )
    if depth is not None:
        footer[:, -w:] = draw_depth_colorbar(
            w, foot_h, depth_scale_top(depth, max_depth), scale=scale
        )
    return np.concatenate([row, footer], axis=0)


@VISUALIZERS.register_module()
class DVPSLocalVisualizer(Visualizer):
    """Draws ``image | panoptic overlay | depth`` rows for prediction and ground truth.

    Each row has a legend (class colours and names: ``dataset_meta['classes']``, which the test
    loop and the inferencers set from the dataset or the checkpoint) and a depth colour bar.

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
        """``image | overlay | depth`` of one sample (RGB uint8, depth optional), with a footer."""
        meta = self.dataset_meta or {}
        return draw_dvps_row(
            image,
            panoptic,
            depth,
            label_divisor=int(meta.get('label_divisor', self.label_divisor)),
            palette=meta.get('palette'),
            classes=meta.get('classes'),
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
