"""Shrink the DetectoRS family's configs (ResNet/ResNeXt backbones, FPN/RFP, R-CNN heads)."""

from __future__ import annotations

import copy

__all__ = ['shrink_resnet_detector_cfg', 'RESNET_BACKBONES']

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
