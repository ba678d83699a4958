"""DetStuffLocalVisualizer: a COCO-stuff semantic map is drawn with its own names and colours,
labels stay inside the frame (read back from the written PNGs)."""

import cv2
import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.visualization import DetLocalVisualizer
from mmengine.structures import InstanceData, PixelData

from mmvideoeq.class_names import COCO_CATEGORY_IDS
from mmvideoeq.visualization import DetStuffLocalVisualizer, coco_stuff_label_meta

# stuffthingmaps labels (COCO-stuff category id - 1) of cocodataset's label list, as benchgen's
# TO_COCO table writes them: road 149, tree 169, sky-other 157, grass 124
ROAD, TREE = 148, 168


def test_label_table_is_cocostuff():
    names, colors = coco_stuff_label_meta()
    assert len(names) == len(colors) == 256
    assert names[ROAD] == 'road' and names[TREE] == 'tree'
    assert names[156] == 'sky-other' and names[123] == 'grass'
    for name, cat_id in COCO_CATEGORY_IDS.items():  # things: label = id - 1
        assert names[cat_id - 1] == name
    assert names[11] == 'label 11' and colors[11] == (128, 128, 128)  # id 12 is unused in COCO
    assert len(set(colors[:182])) > 150  # distinct colours


def _meta():
    return dict(classes=tuple(COCO_CATEGORY_IDS), palette=[(220, 20, 60)] * 80)


def test_stuff_map_is_drawn_with_its_own_colours(tmp_path):
    """mmdet's visualizer raises IndexError on label 148 (80-colour palette); this one draws it."""
    h, w = 48, 64
    seg = torch.full((1, h, w), 255)
    seg[:, :20] = TREE
    seg[:, 28:] = ROAD
    sample = DetDataSample()
    sample.pred_sem_seg = PixelData(sem_seg=seg)
    sample.pred_instances = InstanceData(
        bboxes=torch.zeros(0, 4), scores=torch.zeros(0), labels=torch.zeros(0, dtype=torch.long)
    )
    image = np.zeros((h, w, 3), np.uint8)
    mmdet_vis = DetLocalVisualizer(name='plain_det_vis')
    mmdet_vis.dataset_meta = _meta()
    with pytest.raises(IndexError):
        mmdet_vis.add_datasample('x', image, sample, draw_gt=False, out_file=str(tmp_path / 'a'))
    vis = DetStuffLocalVisualizer(name='stuff_vis')
    vis.dataset_meta = _meta()
    out = tmp_path / 'b.png'
    vis.add_datasample('x', image, sample, draw_gt=False, out_file=str(out))
    drawn = cv2.imread(str(out))[..., ::-1].astype(int)  # RGB
    assert drawn.shape == (h, w, 3)
    _, colors = coco_stuff_label_meta()
    alpha = vis.alpha  # mask colour over a black image: alpha * colour
    for (y, x), label in (((2, 2), TREE), ((h - 2, 2), ROAD), ((h - 2, w - 3), ROAD)):
        np.testing.assert_allclose(drawn[y, x], alpha * np.array(colors[label]), atol=3)
    assert (drawn[24, 2] == 0).all()  # 255: unlabeled, not drawn


def _dark_run(img: np.ndarray, row: int) -> tuple[int, int]:
    """Columns of the first and last pixel of the label's dark background patch in ``row``."""
    cols = np.flatnonzero(img[row].max(axis=1) < 60)
    return int(cols.min()), int(cols.max())


@pytest.mark.parametrize('cls', [DetLocalVisualizer, DetStuffLocalVisualizer])
def test_label_at_the_frame_edge_is_not_cut(tmp_path, cls):
    h, w = 64, 160
    image = np.full((h, w, 3), 128, np.uint8)

    def draw(x1, name):
        sample = DetDataSample()
        sample.pred_instances = InstanceData(
            bboxes=torch.tensor([[x1, 30.0, x1 + 14.0, 60.0]]),
            scores=torch.tensor([0.9]),
            labels=torch.tensor([0]),
        )
        vis = cls(name=f'{cls.__name__}_{name}', bbox_color=(255, 0, 0))
        vis.dataset_meta = _meta()
        out = tmp_path / f'{name}.png'
        vis.add_datasample(name, image, sample, draw_gt=False, out_file=str(out))
        drawn = cv2.imread(str(out))
        assert drawn.shape == (h, w, 3)
        return drawn

    free = draw(10.0, 'middle')  # the label fits: its full width
    x0, x1 = _dark_run(free, 36)
    edge = draw(w - 15.0, 'edge')  # the box touches the right edge
    e0, e1 = _dark_run(edge, 36)
    if cls is DetLocalVisualizer:  # mmdet: the label is cut at the frame edge
        assert e1 >= w - 3 and e1 - e0 < x1 - x0 - 10
    else:  # moved inside, whole
        assert e1 <= w - 1 and abs((e1 - e0) - (x1 - x0)) <= 2


def test_detector_configs_draw_with_it():
    """tools/test.py --show-dir and DetInferencer build the config's visualizer: the detectors'
    default runtime names this one (mmdet's raised IndexError on HTC's first image)."""
    from pathlib import Path

    from mmengine.config import Config

    from mmvideoeq.registry import VISUALIZERS
    from mmvideoeq.utils import register_all_modules

    register_all_modules()
    root = Path(__file__).resolve().parents[2]
    cfg = Config.fromfile(str(root / 'configs/detectors/htc_r26-tiny-detectors_bundled-coco.py'))
    vis_cfg = dict(cfg.visualizer, name='htc_config_vis', vis_backends=None)
    assert isinstance(VISUALIZERS.build(vis_cfg), DetStuffLocalVisualizer)
