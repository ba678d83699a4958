"""mmdet's ``DetLocalVisualizer`` for mmvideoeq's detectors: a semantic map in its own label space.

``DetectoRSHTC`` returns, next to its instances, the semantic head's per-pixel prediction
(``pred_sem_seg``) in the COCO-stuff ``stuffthingmaps`` label space (label = COCO-stuff category
id - 1, 0..181; 255 unlabeled). mmdet's ``DetLocalVisualizer._draw_sem_seg`` colours and names
that map with the *detector's* class list and palette (80 COCO things), so a stuff label such as
148 (road) raises ``IndexError``. :class:`DetStuffLocalVisualizer` draws the map with its own
names and colours: by default COCO-stuff's, taken from mmseg's ``COCOStuffDataset`` (its 171
classes are the 80 things in COCO id order followed by the 91 stuff classes, ids 92..182).

The semantic map is drawn under the instances (mmdet draws it last, over their labels). It also
keeps every label inside the image: matplotlib cuts a text that starts near the right or
bottom edge (a box touching the frame border), so each text is moved inward until it fits.
Everything else is mmdet's drawing.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from mmdet.visualization import DetLocalVisualizer
from mmengine.dist import master_only
from mmengine.structures import PixelData

from mmvideoeq.registry import VISUALIZERS

__all__ = ['DetStuffLocalVisualizer', 'coco_stuff_label_meta']

_COCO_STUFF_IDS = tuple(range(92, 183))  # Caesar et al.'s 91 stuff categories


def coco_stuff_label_meta(num_labels: int = 256) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Names and RGB colours indexed by ``stuffthingmaps`` label (COCO-stuff category id - 1).

    The 171 used categories take mmseg ``COCOStuffDataset``'s names and colours; the unused ids
    (COCO's 11 unused thing ids, 183 "other") are named ``label <L>`` and drawn grey.

    Args:
        num_labels: Length of the tables (labels ``0 .. num_labels - 1``).

    Returns:
        ``(names, colours)``, two lists of length ``num_labels``.
    """
    from mmseg.datasets import COCOStuffDataset

    from mmvideoeq.class_names import COCO_CATEGORY_IDS, COCO_CLASSES

    meta = COCOStuffDataset.METAINFO
    cat_ids = [COCO_CATEGORY_IDS[name] for name in COCO_CLASSES] + list(_COCO_STUFF_IDS)
    if len(cat_ids) != len(meta['classes']):
        raise RuntimeError(f'mmseg COCOStuffDataset has {len(meta["classes"])} classes, not 171')
    names = [f'label {i}' for i in range(num_labels)]
    colors = [(128, 128, 128)] * num_labels
    for index, cat_id in enumerate(cat_ids):
        if cat_id - 1 < num_labels:
            names[cat_id - 1] = meta['classes'][index]
            colors[cat_id - 1] = tuple(int(c) for c in meta['palette'][index])
    return names, colors


@VISUALIZERS.register_module()
class DetStuffLocalVisualizer(DetLocalVisualizer):
    """``mmdet.DetLocalVisualizer`` that draws ``pred_sem_seg`` in the semantic map's label space.

    The semantic map's names and colours come from ``dataset_meta['seg_classes']`` /
    ``['seg_palette']`` when the dataset provides them, else from the constructor, else from
    COCO-stuff (:func:`coco_stuff_label_meta`). Instances keep the detector's ``classes`` and
    ``palette`` as in mmdet. Texts are kept inside the image.

    Args:
        name: Instance name (mmengine's ``ManagerMixin``).
        seg_classes: Names indexed by semantic label (default: COCO-stuff ``stuffthingmaps``).
        seg_palette: RGB colours indexed by semantic label (default: COCO-stuff's).
        **kwargs: ``mmdet.DetLocalVisualizer`` arguments.
    """

    def __init__(
        self,
        name: str = 'visualizer',
        *,
        seg_classes: Sequence[str] | None = None,
        seg_palette: Sequence[Sequence[int]] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(name=name, **kwargs)
        if (seg_classes is None) != (seg_palette is None):
            raise ValueError('give seg_classes and seg_palette together (or neither)')
        if seg_classes is not None and len(seg_classes) != len(seg_palette):
            raise ValueError(
                f'seg_classes has {len(seg_classes)} names but seg_palette {len(seg_palette)} '
                'colours'
            )
        self.seg_classes = None if seg_classes is None else list(seg_classes)
        self.seg_palette = None if seg_palette is None else [tuple(c) for c in seg_palette]

    def _seg_meta(self, labels: np.ndarray) -> tuple[list[str], list[tuple]]:
        meta = self.dataset_meta or {}
        names = meta.get('seg_classes', self.seg_classes)
        colors = meta.get('seg_palette', self.seg_palette)
        if names is None:
            names, colors = coco_stuff_label_meta()
        names, colors = list(names), [tuple(int(v) for v in c) for c in colors]
        top = int(labels.max()) + 1 if labels.size else 0
        for label in range(len(names), top):  # labels beyond the table: named by number, grey
            names.append(f'label {label}')
            colors.append((128, 128, 128))
        return names, colors

    def _draw_sem_seg(self, image: np.ndarray, sem_seg: PixelData, classes, palette) -> np.ndarray:
        """mmdet's drawing, with the semantic map's own names and colours."""
        data = sem_seg.sem_seg
        data = data.cpu().numpy() if hasattr(data, 'cpu') else np.asarray(data)
        ignore = sem_seg.metainfo.get('ignore_index', 255)
        labels = np.unique(data)
        names, colors = self._seg_meta(labels[labels != ignore])
        return super()._draw_sem_seg(image, sem_seg, names, colors)

    @master_only
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
        pred_score_thr: float = 0.3,
        step: int = 0,
    ) -> None:
        """mmdet's ``add_datasample`` (ground truth | prediction), semantic maps drawn first.

        Args: see ``mmdet.visualization.DetLocalVisualizer.add_datasample``.
        """
        has_seg = data_sample is not None and (
            'pred_sem_seg' in data_sample or 'gt_sem_seg' in data_sample
        )
        if not has_seg:
            return super().add_datasample(
                name, image, data_sample, draw_gt, draw_pred, show, wait_time, out_file,
                pred_score_thr, step,
            )  # fmt: skip
        image = image.clip(0, 255).astype(np.uint8)
        sample = data_sample.cpu()
        classes = self.dataset_meta.get('classes', None)
        palette = self.dataset_meta.get('palette', None)

        def drawing(prefix: str, thr: float | None) -> np.ndarray:
            out = image
            if f'{prefix}_sem_seg' in sample:
                out = self._draw_sem_seg(out, sample.get(f'{prefix}_sem_seg'), classes, palette)
            if f'{prefix}_instances' in sample:
                inst = sample.get(f'{prefix}_instances')
                if thr is not None and 'scores' in inst:
                    inst = inst[inst.scores > thr]
                out = self._draw_instances(out, inst, classes, palette)
            return out

        parts = ([drawing('gt', None)] if draw_gt else []) + (
            [drawing('pred', pred_score_thr)] if draw_pred else []
        )
        drawn = np.concatenate(parts, axis=1) if parts else image
        self.set_image(drawn)
        if show:
            self.show(drawn, win_name=name, wait_time=wait_time)
        if out_file is not None:
            import mmcv

            mmcv.imwrite(drawn[..., ::-1], out_file)
        else:
            self.add_image(name, drawn, step)

    def draw_texts(self, texts, positions, *args, **kwargs):
        """mmengine's ``draw_texts``, then each new text is moved inside the image."""
        before = len(self.ax_save.texts)
        super().draw_texts(texts, positions, *args, **kwargs)
        self._keep_texts_inside(self.ax_save.texts[before:])
        return self

    def _keep_texts_inside(self, texts) -> None:
        """Shrink a text wider or taller than the image, then shift it inside."""
        if not texts:
            return
        renderer = self.fig_save_canvas.get_renderer()
        to_data = self.ax_save.transData.inverted()

        def box(text):  # (left, top, right, bottom) in image pixels (y downwards)
            extent = text.get_window_extent(renderer)
            if text.get_bbox_patch() is not None:
                text.update_bbox_position_size(renderer)
                extent = text.get_bbox_patch().get_window_extent(renderer)
            (x0, y1), (x1, y0) = to_data.transform([[extent.x0, extent.y0], [extent.x1, extent.y1]])
            return x0, y0, x1, y1

        for text in texts:
            x0, y0, x1, y1 = box(text)
            fit = min(1.0, self.width / max(x1 - x0, 1e-6), self.height / max(y1 - y0, 1e-6))
            if fit < 1.0:
                text.set_fontsize(text.get_fontsize() * fit * 0.95)
                x0, y0, x1, y1 = box(text)
            dx = max(-x0, min(0.0, self.width - x1))
            dy = max(-y0, min(0.0, self.height - y1))
            if dx or dy:
                x, y = text.get_position()
                text.set_position((x + dx, y + dy))
