"""Shrink shipped configs to CPU-test size without changing their structure."""

from __future__ import annotations

import copy
from pathlib import Path

from mmengine.config import Config

from .detectors import RESNET_BACKBONES, shrink_resnet_detector_cfg

TINY_CHANNELS = [4, 8, 8, 8]


def shrink_model_cfg(model: dict, *, iters: int = 3) -> dict:
    """Tiny widths and iteration counts; same model types, heads, losses and solver modes.

    Args:
        model: A model config dict (``cfg.model.to_dict()``); it is not modified.
        iters: Cap on every solver iteration count (train/test/unroll/backward).

    Returns:
        dict: The shrunk copy.
    """
    if model['backbone']['type'] in RESNET_BACKBONES:
        return shrink_resnet_detector_cfg(model)
    model = copy.deepcopy(model)
    bb = model['backbone']
    if model.get('type') == 'ViPDeepLab':
        return _shrink_vip(model, iters)
    if bb['type'] not in ('MDEQ', 'mmvideoeq.MDEQ'):
        raise ValueError(f'shrink_model_cfg knows MDEQ backbones only, got {bb["type"]}')
    channels = _shrink_mdeq(bb, iters)
    width = None
    if model.get('neck'):
        model['neck'].update(in_channels=channels, out_channels=8)
        width = 8
    if 'rpn_head' in model:
        model['rpn_head'].update(in_channels=width, feat_channels=8)
        roi = model['roi_head']
        roi['bbox_roi_extractor']['out_channels'] = width
        roi['bbox_head'].update(in_channels=width, fc_out_channels=16)
        model['train_cfg']['rpn']['sampler']['num'] = 16
        model['train_cfg']['rcnn']['sampler']['num'] = 16
        model['train_cfg']['rpn_proposal'].update(nms_pre=50, max_per_img=20)
        model['test_cfg']['rpn'].update(nms_pre=50, max_per_img=20)
    if 'decode_head' in model:
        model['decode_head'].update(in_channels=channels, channels=sum(channels))
    return model


def _shrink_mdeq(bb: dict, iters: int) -> list[int]:
    n = len(bb.get('num_channels') or TINY_CHANNELS)
    channels = TINY_CHANNELS[:n]
    bb.update(num_channels=channels, num_blocks=[1] * n, expansion=1, num_groups=2)
    deq = bb.setdefault('deq_cfg', {})
    for key in (
        'train_max_iter',
        'test_max_iter',
        'unroll_iters',
        'unroll_max',
        'backward_max_iter',
    ):
        if key in deq:
            deq[key] = min(int(deq[key]), iters)
    return channels


def _shrink_vip(model: dict, iters: int) -> dict:
    """ViPDeepLab: a tiny MDEQ or an 8-channel ResNet-18 and 4-8 channel decoders/heads."""
    bb = model['backbone']
    if bb['type'] in ('MDEQ', 'mmvideoeq.MDEQ'):
        channels = _shrink_mdeq(bb, iters)
    elif 'ResNet' in bb['type']:
        bb.update(depth=18, base_channels=8, stem_channels=8)
        channels = [8, 16, 32, 64]
    else:
        raise ValueError(f'shrink_model_cfg: no tiny version of backbone {bb["type"]}')
    head = model['decode_head']
    small = dict(aspp_channels=8, decoder_channels=8, low_project=(4, 4))
    head.update(
        in_channels=channels,
        semantic_decoder={**head.get('semantic_decoder', {}), **small},
        instance_decoder={**head.get('instance_decoder', {}), **small},
        semantic_head_channels=8,
        center_head_channels=4,
        offset_head_channels=4,
        target_cfg={**head.get('target_cfg', {}), 'sigma': 2.0, 'small_instance_area': 64},
    )
    if head.get('depth_head') is not None:
        head['depth_head'] = {**head['depth_head'], 'channels': 4}
    if head.get('next_frame') is not None:
        head['next_frame'] = {**head['next_frame'], 'channels': 4}
    model['test_cfg'] = {**model.get('test_cfg', {}), 'nms_kernel': 3, 'stuff_area': 4}
    return model


#: Folder of each DVPS dataset type in the bundled benchmark, and its tiny train pipeline size.
_DVPS_DIRS = {
    'CityscapesDVPSDataset': 'cityscapes_dvps/',
    'SemKITTIDVPSDataset': 'semkitti_dvps/',
    'KittiDepthDataset': 'kitti_depth/',
}


def tiny_dvps_data_cfg(cfg: Config, root: str | Path) -> Config:
    """Point a DVPS/KITTI-depth config at the tiny bundled benchmark, keeping its pipelines.

    Loaders read the dataset's folder of ``root`` (``benchgen.generate_benchmark(root,
    preset='tiny', formats=('cityscapes_dvps', 'semkitti_dvps', 'kitti_depth'))``); train
    resizes/crops are cut to 32x64, batch sizes to 2 (train) and 1, workers to 0. KITTI depth has
    only the val selection in the benchmark: training reads it too.
    """
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[key]
        ds = loader['dataset']
        ds['data_root'] = str(Path(root) / _DVPS_DIRS[ds['type']])
        loader.update(batch_size=2 if key == 'train_dataloader' else 1, num_workers=0)
        loader['persistent_workers'] = False
        if ds['type'] == 'KittiDepthDataset':
            ds.update(
                layout='selection',
                data_prefix=dict(img_path='depth_selection/val_selection_cropped'),
            )
        for t in ds.get('pipeline', []):
            if t['type'].endswith('RandomResize'):
                t.update(scale=(64, 32), ratio_range=(0.9, 1.2))
            if t['type'].endswith('RandomCrop'):
                t['crop_size'] = (32, 64)
    return cfg


def tiny_data_cfg(cfg: Config, root: str | Path, family: str) -> Config:
    """Point a config's data at a tiny benchmark under ``root``.

    The benchmark is rendered by ``benchgen.generate_benchmark(root, preset='tiny')``.

    The data part is replaced by the bundled-benchmark base config of the family (``'vid'`` or
    ``'seg'``) so that configs of the real datasets run on the tiny data too.
    """
    repo = Path(__file__).resolve().parents[2]
    base = {'vid': 'bundled_vid.py', 'seg': 'bundled_cityscapes.py'}[family]
    data = Config.fromfile(str(repo / 'configs' / '_base_' / 'datasets' / base))
    sub = {'vid': 'ILSVRC/', 'seg': 'cityscapes/'}[family]
    data_root = str(Path(root) / sub) + '/'
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = copy.deepcopy(data[key])
        loader['dataset']['data_root'] = data_root
        loader['batch_size'] = 2 if key == 'train_dataloader' else 1
        if family == 'seg' and key == 'train_dataloader':
            loader['sampler'] = dict(type='InfiniteSampler', shuffle=True)
        cfg[key] = loader
    for key in ('val_evaluator', 'test_evaluator'):
        ev = copy.deepcopy(data[key])
        if 'ann_file' in ev:
            ev['ann_file'] = data_root + 'annotations/imagenet_vid_val.json'
        cfg[key] = ev
    return cfg
