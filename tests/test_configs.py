"""Every config under configs/ loads, shrinks, builds on CPU and runs one forward.

Shrinking keeps the structure (model types, heads, losses, data pipeline types) and cuts the sizes:
MDEQ branch widths, solver iterations, FPN/head widths, image size.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from mmengine.config import Config, ConfigDict

from mmvideoeq.testing import shrink_model_cfg

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (ROOT / 'configs').rglob('*.py') if '_base_' not in p.parts)


def _rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


def _det_batch(num_classes: int, h: int = 64, w: int = 96):
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData, PixelData

    torch.manual_seed(0)
    samples = []
    for i in range(2):
        s = DetDataSample(
            metainfo=dict(
                img_shape=(h, w),
                ori_shape=(h, w),
                pad_shape=(h, w),
                scale_factor=(1.0, 1.0),
                video_id=i,
                frame_id=0,
            )
        )
        s.gt_instances = InstanceData(
            bboxes=torch.tensor([[8.0, 10.0, 40.0, 50.0]]), labels=torch.tensor([i % num_classes])
        )
        # masks and stuff labels for models with mask / semantic heads (HTC); others ignore them
        mask = torch.zeros(1, h, w, dtype=torch.uint8)
        mask[:, 10:50, 8:40] = 1
        s.gt_instances.masks = BitmapMasks(mask.numpy(), h, w)
        s.gt_sem_seg = PixelData(sem_seg=torch.randint(0, 183, (1, h, w)))
        samples.append(s)
    return dict(
        inputs=[torch.randint(0, 255, (3, h, w), dtype=torch.uint8) for _ in range(2)],
        data_samples=samples,
    )


def _seg_batch(num_classes: int, h: int = 64, w: int = 96):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    torch.manual_seed(0)
    samples = []
    for _ in range(2):
        s = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, h, w)))
        samples.append(s)
    return dict(
        inputs=[torch.randint(0, 255, (3, h, w), dtype=torch.uint8) for _ in range(2)],
        data_samples=samples,
    )


def _vip_batch(head: dict, h: int = 64, w: int = 96):
    """Frame pairs with panoptic (classes of the head), next-frame panoptic and depth labels."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    torch.manual_seed(0)
    div, things = head['label_divisor'], sorted(head['thing_ids'])
    stuff = next(c for c in range(head['num_classes']) if c not in things)
    samples = []
    for _ in range(2):
        s = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w)))
        pan = torch.full((1, h, w), stuff * div, dtype=torch.long)
        pan[0, 8:30, 10:40] = things[0] * div + 1
        s.gt_panoptic = PixelData(data=pan)
        s.next_gt_panoptic = PixelData(data=torch.roll(pan, 3, dims=2))
        s.gt_depth = PixelData(data=torch.rand(1, h, w) * 50 + 1)
        samples.append(s)
    return dict(
        inputs=[torch.randint(0, 255, (6, h, w), dtype=torch.uint8) for _ in range(2)],
        data_samples=samples,
    )


def _batch_for(model_cfg: dict):
    if model_cfg.get('type') == 'ViPDeepLab':
        return _vip_batch(model_cfg['decode_head'])
    if 'rpn_head' in model_cfg:
        head = model_cfg['roi_head']['bbox_head']
        return _det_batch((head[0] if isinstance(head, list) else head)['num_classes'])  # cascades
    return _seg_batch(model_cfg['decode_head']['num_classes'])


def test_configs_exist():
    names = {p.name for p in CONFIGS}
    assert 'streamdeq_vid.py' in names


@pytest.mark.parametrize('path', CONFIGS, ids=_rel)
def test_config_builds_and_runs_one_forward(path):
    from mmvideoeq.registry import MODELS
    from mmvideoeq.utils import register_all_modules

    register_all_modules()
    cfg = Config.fromfile(str(path))
    assert cfg.default_scope == 'mmvideoeq'
    model_cfg = shrink_model_cfg(cfg.model.to_dict())
    model = MODELS.build(ConfigDict(model_cfg))
    model.init_weights()
    model.train()
    data = model.data_preprocessor(_batch_for(model_cfg), True)
    losses = model(**data, mode='loss')
    total = sum(
        v.sum() if isinstance(v, torch.Tensor) else sum(x.sum() for x in v)
        for k, v in losses.items()
        if 'loss' in k
    )
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.backbone.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    model.eval()
    with torch.no_grad():
        preds = model(**model.data_preprocessor(_batch_for(model_cfg), False), mode='predict')
    assert len(preds) == 2


_URL = re.compile(r'(https?://|torchvision://|open-mmlab://|mmcls://|modelzoo://)')


@pytest.mark.parametrize('path', CONFIGS, ids=_rel)
def test_config_downloads_nothing(path):
    cfg = Config.fromfile(str(path))
    text = cfg.pretty_text
    assert not _URL.search(text), f'{_rel(path)} names a download URL'
    assert cfg.get('load_from') is None or not _URL.search(str(cfg.load_from))

    def walk(node, where):
        if isinstance(node, dict):
            if node.get('pretrained'):
                raise AssertionError(f'{where}.pretrained is set in {_rel(path)}')
            init = node.get('init_cfg')
            if isinstance(init, dict) and init.get('type') == 'Pretrained':
                raise AssertionError(f'{where}.init_cfg loads {init.get("checkpoint")}')
            for k, v in node.items():
                walk(v, f'{where}.{k}')
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                walk(v, f'{where}[{i}]')

    walk(cfg.to_dict(), 'cfg')
