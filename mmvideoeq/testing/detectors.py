"""Shrink the DetectoRS family's configs (ResNet/ResNeXt backbones, FPN/RFP, R-CNN heads)."""

from __future__ import annotations

import copy

__all__ = ['shrink_resnet_detector_cfg', 'tiny_coco_cfg', 'randomize_', 'RESNET_BACKBONES']

RESNET_BACKBONES = (
    'DetectoRSResNet',
    'DetectoRSResNeXt',
    'mmvideoeq.DetectoRSResNet',
    'mmvideoeq.DetectoRSResNeXt',
    'mmdet.DetectoRS_ResNet',
    'mmdet.DetectoRS_ResNeXt',
    'mmdet.ResNet',
    'ResNet',
)
WIDTH = 8
BASE = 2  # bottleneck base width: stage outputs 8/16/32/64 channels


def _shrink_backbone(bb: dict) -> None:
    bb.update(depth=14, base_channels=BASE, frozen_stages=-1, norm_eval=False)
    bb.pop('init_cfg', None)
    bb.pop('pretrained', None)
    if 'ResNeXt' in bb['type']:
        bb.update(groups=2, base_width=2)


def _heads(heads, **kw):
    for h in heads if isinstance(heads, list) else [heads]:
        h.update(kw)


def shrink_resnet_detector_cfg(model: dict) -> dict:
    """Depth-14 backbones of base width 2, width-8 pyramids and heads, few proposals.

    Keeps every type (SAC, RFP and its options, HTC's semantic/mask heads); returns a copy.

    Args:
        model: A model config dict with a ResNet-family backbone.

    Returns:
        dict: The shrunk copy.
    """
    model = copy.deepcopy(model)
    _shrink_backbone(model['backbone'])
    stage_out = [4 * BASE * 2**i for i in range(4)]
    neck = model['neck']
    neck.update(in_channels=stage_out, out_channels=WIDTH)
    if 'rfp_steps' in neck or 'RecursiveFeaturePyramid' in neck['type']:
        neck['aspp_out_channels'] = WIDTH // 4  # feedback: 4 branches x 2 = WIDTH channels
        if neck.get('rfp_backbone'):
            _shrink_backbone(neck['rfp_backbone'])
            neck['rfp_backbone']['rfp_inplanes'] = WIDTH
        if neck.get('share_backbone'):
            model['backbone']['rfp_inplanes'] = WIDTH
    model['rpn_head'].update(in_channels=WIDTH, feat_channels=WIDTH)
    roi = model['roi_head']
    for key in ('bbox_roi_extractor', 'mask_roi_extractor', 'semantic_roi_extractor'):
        if roi.get(key):
            _heads(roi[key], out_channels=WIDTH)
    _heads(roi['bbox_head'], in_channels=WIDTH, fc_out_channels=16)
    if roi.get('mask_head'):
        _heads(roi['mask_head'], in_channels=WIDTH, conv_out_channels=WIDTH, num_convs=1)
    if roi.get('semantic_head'):
        roi['semantic_head'].update(in_channels=WIDTH, conv_out_channels=WIDTH, num_convs=1)
    train = model['train_cfg']
    train['rpn']['sampler']['num'] = 16
    for rcnn in train['rcnn'] if isinstance(train['rcnn'], list) else [train['rcnn']]:
        rcnn['sampler']['num'] = 16
    train['rpn_proposal'].update(nms_pre=50, max_per_img=20)
    model['test_cfg']['rpn'].update(nms_pre=50, max_per_img=20)
    return model


def tiny_coco_cfg(cfg, root, *, panoptic: bool = True):
    """Point a COCO config at the bundled COCO part under ``root`` (``<root>/coco``).

    Keeps the config's own pipelines (so the Cascade R-CNN config stays box-only and HTC loads
    masks and stuff maps), sets small loaders, and evaluates with mmdet's ``CocoMetric`` and,
    for models with a semantic head and ``panoptic=True``, :class:`CocoPanopticPQMetric`; the 10
    best detections are kept whatever their score (``score_thr=0``).

    Args:
        cfg: A loaded config (modified in place and returned).
        root: Folder the benchmark was generated into.
        panoptic: Add the panoptic metric to HTC configs.

    Returns:
        Config: ``cfg``.
    """
    data_root = f'{root}/coco/'
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[key]
        loader.dataset.data_root = data_root
        for step in loader.dataset.pipeline:
            if step['type'].endswith('Resize'):
                step['scale'] = (96, 64)  # the tiny preset's size (COCO configs: 1333 x 800)
        loader.update(batch_size=2 if key == 'train_dataloader' else 1, num_workers=0)
        loader.update(persistent_workers=False, batch_sampler=None)
        loader.dataset.filter_cfg = dict(filter_empty_gt=True, min_size=4)
        loader.dataset.serialize_data = False  # its gc.collect() costs ~1 s per dataset
    ann = data_root + 'annotations/'
    masks = bool(cfg.model.get('roi_head', {}).get('mask_head'))
    evaluator = [
        dict(
            type='mmdet.CocoMetric',
            ann_file=ann + 'instances_val2017.json',
            metric=['bbox', 'segm'] if masks else ['bbox'],
        )
    ]
    if panoptic and cfg.model.get('roi_head', {}).get('semantic_head'):
        evaluator.append(
            dict(
                type='CocoPanopticPQMetric',
                ann_file=ann + 'panoptic_val2017.json',
                seg_prefix=ann + 'panoptic_val2017/',
                stuff_area_limit=16,
            )
        )
    cfg.val_evaluator = cfg.test_evaluator = evaluator
    # an untrained model's scores may all fall below mmdet's 0.001, and CocoMetric returns no
    # numbers for an empty result file
    cfg.model.test_cfg.rcnn.update(score_thr=0.0, max_per_img=10)
    return cfg


def randomize_(module, seed: int = 0, scale: float = 0.2):
    """Fill every parameter with ``N(0, scale^2)`` noise (seeded) and set eval mode.

    Zero-initialised parts (SAC's switch and context, RFP's feedback and fusion) would otherwise
    hide errors in tests. Returns ``module`` (mmdet's ``ResNet.train`` returns None, so
    ``module.eval()`` cannot be chained).
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
    module.eval()
    return module
