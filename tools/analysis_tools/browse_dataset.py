"""Draw a dataset's ground truth after its pipeline, one file per frame (mmdet's browse_dataset).

mmdet's ``tools/analysis_tools/browse_dataset.py`` names each drawing after the image's file
name, so the frames of different videos (every ImageNet-VID video starts with ``000000.JPEG``)
overwrite each other: 134 frames gave 20 files. Here a frame with a ``video_id`` is written to
``<output-dir>/<video_id>/<file name>`` (an image dataset: ``<output-dir>/<file name>``), and a
name already written in this run (a frame that two clips share) gets the item index appended, so
every item drawn is a file.

The drawing is the config's visualizer (boxes/masks for detectors, the class map for
segmentors, the panoptic / depth row for DVPS) with the dataset's class names.

Example::

    python tools/analysis_tools/browse_dataset.py \\
        configs/streamdeq_vid/faster-rcnn_mdeq-tiny-sur8_16e_bundled-vid.py \\
        --phase val --output-dir browse/
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import numpy as np  # noqa: E402
from mmengine.config import DictAction  # noqa: E402

from mmvideoeq.utils.cli import CLIError, cli_main, load_config, require_file  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Draw a dataset's ground truth after its pipeline")
    p.add_argument('config', help='config file')
    p.add_argument(
        '--phase',
        choices=['train', 'val', 'test'],
        default='train',
        help="which dataloader's dataset and pipeline (default: train, with its augmentation)",
    )
    p.add_argument('--output-dir', required=True, help='folder for the drawings')
    p.add_argument('--max-items', type=int, default=None, help='stop after this many items')
    p.add_argument('--show', action='store_true', help='also show each drawing in a window')
    p.add_argument('--show-interval', type=float, default=2, help='seconds each drawing is shown')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings')
    return p.parse_args(argv)


def out_name(sample, index: int, output_dir: str, written: set) -> str:
    """``<output_dir>[/<video_id>]/<file name>``; the item index appended on a repeat."""
    meta = sample.metainfo
    name = osp.basename(str(meta.get('img_path', f'{index:06d}.png')))
    video = meta.get('video_id')
    path = (
        osp.join(output_dir, str(video), name) if video is not None else osp.join(output_dir, name)
    )
    if path in written:
        stem, ext = osp.splitext(path)
        path = f'{stem}_{index}{ext}'
    written.add(path)
    return path


def _to_numpy_gt(sample):
    """mmdet's browse_dataset conversions: box structures to tensors, masks to bool arrays."""
    from mmdet.structures.bbox import BaseBoxes
    from mmdet.structures.mask import BitmapMasks, PolygonMasks

    gt = sample.get('gt_instances')
    if gt is not None:
        if isinstance(gt.get('bboxes'), BaseBoxes):
            gt.bboxes = gt.bboxes.tensor
        masks = gt.get('masks')
        if isinstance(masks, (BitmapMasks, PolygonMasks)):
            gt.masks = masks.to_ndarray().astype(bool)
        sample.gt_instances = gt
    return sample


@cli_main
def main():
    args = parse_args()
    require_file(args.config, 'config file')
    from mmvideoeq.registry import DATASETS, VISUALIZERS
    from mmvideoeq.utils import register_all_modules

    register_all_modules()
    cfg = load_config(args.config, args.cfg_options)
    loader = cfg.get(f'{args.phase}_dataloader')
    if not loader or 'dataset' not in loader:
        raise CLIError(f'{args.config} has no {args.phase}_dataloader.dataset')
    dataset = DATASETS.build(loader.dataset)
    vis_cfg = dict(cfg.get('visualizer') or dict(type='DetStuffLocalVisualizer'))
    vis_cfg.update(name='browse_dataset', vis_backends=None)
    vis_cfg.pop('save_dir', None)
    visualizer = VISUALIZERS.build(vis_cfg)
    visualizer.dataset_meta = dataset.metainfo
    os.makedirs(args.output_dir, exist_ok=True)
    written: set = set()
    total = len(dataset) if args.max_items is None else min(len(dataset), args.max_items)
    for index in range(total):
        item = dataset[index]
        samples = item['data_samples']
        inputs = item['inputs']
        if isinstance(samples, (list, tuple)):  # a clip: its frames in order
            pairs = list(zip(inputs, samples))
        else:
            pairs = [(inputs, samples)]
        for img, sample in pairs:
            img = img.permute(1, 2, 0).numpy()[..., :3]  # (C, H, W) BGR -> (H, W, 3) (a
            img = np.ascontiguousarray(img[..., ::-1])  # DVPS pair stacks the next frame) RGB
            path = out_name(sample, index, args.output_dir, written)
            os.makedirs(osp.dirname(path), exist_ok=True)
            visualizer.add_datasample(
                osp.basename(path),
                img,
                _to_numpy_gt(sample.cpu().numpy() if hasattr(sample, 'numpy') else sample),
                draw_pred=False,
                draw_gt=True,
                show=args.show,
                wait_time=args.show_interval,
                out_file=path,
            )
    print(f'{len(written)} drawings of {total} items written to {args.output_dir}')


if __name__ == '__main__':
    main()
