"""Evaluate prediction folders in the reference layouts (``tools/analysis_tools/eval_dvps.py``).

Prediction layouts (those ViP-DeepLab's and KITTI's evaluation scripts read):

* ``cityscapes_dvps``: ``PAN_DIR/{stem}_leftImg8bit.png`` (8-bit, ``[..., 0]`` class,
  ``[..., 1]`` instance; ``cityscapes-dvps/README.md``) and ``DEPTH_DIR/{stem}_leftImg8bit.png``
  (or ``{stem}_depth.png``; 16-bit, metres * 256), ``stem`` = ``{seq}_{frame}_{city}_{a}_{b}``;
  ground truth: the ``video_sequence/val`` folder;
* ``semkitti_dvps``: ``PAN_DIR/{seq}_{frame}*cat.png`` (8-bit class) and ``*ins.png`` (16-bit
  instance), ``DEPTH_DIR/{seq}_{frame}*.png`` (16-bit); ground truth: ``video_sequence/val``;
* ``kitti_depth``: ``DEPTH_DIR/{drive}_image_{frame}_image_{cam}.png`` (the image's name, or the
  ground truth's ``..._groundtruth_depth_...`` name), ground truth: the ``groundtruth_depth``
  folder of the val selection.

Frames are matched by ``(sequence, frame)`` parsed from the names, not by sorted position (the
reference scripts pair sorted lists, so a missing file silently shifts every later pair): a
missing or extra prediction is an error naming the files, as is a wrong bit depth, a file that
cannot be decoded (truncated, not a PNG), a class id out of range, a depth prediction ``<= 0``
where the ground truth has depth, or maps of different sizes.

PQ / VPQ / DVPQ average over classes as the reference script of the layout does
(``average='all'``: every one of the 19 classes, epsilon 0 for Cityscapes-DVPS, so that a class
absent from both ground truth and prediction makes the mean NaN, and 1e-10 for SemKITTI-DVPS,
where it counts as 0); ``average='valid'`` averages over the classes present (deeplab2). Classes
absent from both are named in a warning.

The evaluation itself is the registered metrics of :mod:`mmvideoeq.evaluation`; this module only
reads the folders (with :mod:`mmvideoeq.datasets.dvps_io`), so it sits with the APIs, above both.
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from mmvideoeq.class_names import CITYSCAPES_DVPS_CLASSES, SEMKITTI_DVPS_CLASSES
from mmvideoeq.datasets.dvps_io import (
    list_frames,
    read_cityscapes_dvps_panoptic,
    read_depth_png,
    read_png,
    read_semkitti_dvps_panoptic,
    read_two_channel_panoptic,
)
from mmvideoeq.datasets.kitti_depth import KITTI_SELECTION_NAME
from mmvideoeq.evaluation.functional import DVPQ_PROTOCOLS
from mmvideoeq.evaluation.metrics import DVPQMetric, KittiDepthMetric, STQMetric

__all__ = ['FOLDER_FORMATS', 'iter_frames', 'evaluate_folders']

FOLDER_FORMATS = ('cityscapes_dvps', 'semkitti_dvps', 'kitti_depth')
_MAX_LISTED = 5

#: DSTQ settings per format: deeplab2's defaults for Cityscapes-DVPS; ViP-DeepLab's
#: ``semkitti-dvps/eval_dstq.py`` (threshold 1.25, labelled pixels only) for SemKITTI-DVPS.
_STQ = {
    fmt: dict(
        num_classes=DVPQ_PROTOCOLS[fmt].num_classes,
        thing_ids=DVPQ_PROTOCOLS[fmt].thing_ids,
        ignore_label=DVPQ_PROTOCOLS[fmt].ignore_label,
        label_divisor=DVPQ_PROTOCOLS[fmt].label_divisor,
        depth_thresholds=thresholds,
        void_pixels=void_pixels,
    )
    for fmt, thresholds, void_pixels in (
        ('cityscapes_dvps', (1.25, 1.1), 'keep'),
        ('semkitti_dvps', (1.25,), 'drop'),
    )
}
_CLASSES = {'cityscapes_dvps': CITYSCAPES_DVPS_CLASSES, 'semkitti_dvps': SEMKITTI_DVPS_CLASSES}
_AVERAGES = ('all', 'valid')
#: What a broken PNG raises inside Pillow / numpy (truncated data, bad chunks, bad zlib stream).
_DECODE_ERRORS = (OSError, SyntaxError, EOFError, ValueError, struct.error, zlib.error)


def _broken_file(paths: Sequence[Path]) -> Path | None:
    """The first of ``paths`` that Pillow cannot decode completely."""
    for path in paths:
        try:
            with Image.open(path) as image:
                image.load()
        except _DECODE_ERRORS:
            return Path(path)
    return None


def _read(reader: Callable, *paths, **kwargs):
    """``reader(*paths, **kwargs)``, with a decoding failure reported as one ``ValueError``
    naming the file (Pillow's messages, e.g. "image file is truncated", name none)."""
    try:
        return reader(*paths, **kwargs)
    except FileNotFoundError:
        raise
    except _DECODE_ERRORS as err:
        if isinstance(err, ValueError) and str(err).startswith(tuple(str(p) for p in paths)):
            raise  # the readers' own checks (bit depth, channels, sizes) name the file
        culprit = _broken_file(paths)
        where = culprit if culprit is not None else ' / '.join(str(p) for p in paths)
        raise ValueError(
            f'{where}: cannot decode the PNG ({type(err).__name__}: {err}); the file is '
            'truncated or not a PNG: write it again'
        ) from None


def _listed(names: dict, keys: list) -> str:
    more = ', ...' if len(keys) > _MAX_LISTED else ''
    return ', '.join(names[k] for k in keys[:_MAX_LISTED]) + more


def _match_keys(gt: dict, pred: dict, what: str, folder) -> None:
    """Raise if the frames of ``pred`` are not exactly those of ``gt``."""
    missing = [k for k in gt if k not in pred]
    extra = [k for k in pred if k not in gt]
    if not (missing or extra):
        return
    msg = [f'{folder}: the {what} do not match the ground-truth frames']
    if missing:
        msg.append(f'{len(missing)} missing (prediction for {_listed(gt, missing)})')
    if extra:
        msg.append(f'{len(extra)} extra ({_listed(pred, extra)})')
    raise ValueError('; '.join(msg) + '. Every ground-truth frame needs exactly one prediction.')


def _names(found: dict) -> dict:
    return {k: m.string for k, m in found.items()}


def _dvps_files(fmt: str, gt_dir: Path, pan_dir, depth_dir) -> dict:
    """``{key: {kind: path}}`` for every ground-truth frame, after matching the folders."""
    if fmt == 'cityscapes_dvps':
        gt = {'gt': _names(list_frames(gt_dir, fmt, 'gtFine_instanceTrainIds'))}
        gt['gt_depth'] = _names(list_frames(gt_dir, fmt, 'depth'))
        pred_kinds = {'pan': (pan_dir, 'leftImg8bit'), 'depth': (depth_dir, 'leftImg8bit|depth')}
    else:
        gt = {
            'gt': _names(list_frames(gt_dir, fmt, 'gtFine_class')),
            'gt_instance': _names(list_frames(gt_dir, fmt, 'gtFine_instance')),
            'gt_depth': _names(list_frames(gt_dir, fmt, r'depth_[0-9.]+')),
        }
        pred_kinds = {
            'cat': (pan_dir, '.*cat'),
            'ins': (pan_dir, '.*ins'),
            'depth': (depth_dir, '.*'),
        }
    if not gt['gt']:
        raise ValueError(f'{gt_dir}: no ground-truth label file of the {fmt} layout')
    files = {k: {'gt': gt_dir / name} for k, name in gt['gt'].items()}
    for kind in [k for k in gt if k != 'gt'] + list(pred_kinds):
        if kind in gt:
            folder, found = gt_dir, gt[kind]
        else:
            folder, regex = pred_kinds[kind]
            if folder is None:
                continue
            found = _names(list_frames(folder, fmt, regex))
        _match_keys(gt['gt'], found, f'{kind} files', folder)
        for key, name in found.items():
            files[key][kind] = Path(folder) / name
    return files


def _semkitti_prediction(cat_path, ins_path, divisor: int):
    """``*cat.png`` (8-bit) and ``*ins.png`` (8- or 16-bit) as ``class * divisor + instance``."""
    cat = _read(read_png, cat_path, bit_depth=8, channels=1).astype(np.int64)
    ins = _read(read_png, ins_path, channels=1).astype(np.int64)
    if cat.shape != ins.shape:
        raise ValueError(f'{cat_path} {cat.shape} and {ins_path} {ins.shape} differ in size')
    if ins.size and ins.max() >= divisor:
        raise ValueError(f'{ins_path}: instance id {ins.max()} >= label divisor {divisor}')
    return cat * divisor + ins


def iter_frames(fmt: str, gt_dir, pan_dir=None, depth_dir=None) -> Iterator[dict]:
    """Frames of a prediction folder with their ground truth, as metric samples.

    Args:
        fmt (str): One of :data:`FOLDER_FORMATS`.
        gt_dir (str | Path): Ground-truth folder (see the module docstring).
        pan_dir (str | Path, optional): Panoptic predictions (DVPS formats).
        depth_dir (str | Path, optional): Depth predictions.

    Yields:
        dict: ``video_id``, ``frame_id``, ``img_path`` (the prediction file, for errors),
        ``gt_panoptic``, ``pred_panoptic``, ``gt_depth``, ``pred_depth`` (those available).
    """
    if fmt not in FOLDER_FORMATS:
        raise ValueError(f'format must be one of {FOLDER_FORMATS}, got {fmt!r}')
    gt_dir = Path(gt_dir)
    if fmt == 'kitti_depth':
        yield from _kitti_frames(gt_dir, depth_dir)
        return
    divisor = DVPQ_PROTOCOLS[fmt].label_divisor
    for (seq, frame), f in _dvps_files(fmt, gt_dir, pan_dir, depth_dir).items():
        sample = dict(video_id=seq, frame_id=frame, gt_depth=_read(read_depth_png, f['gt_depth']))
        if fmt == 'cityscapes_dvps':
            sample['gt_panoptic'] = _read(read_cityscapes_dvps_panoptic, f['gt'])
            if 'pan' in f:
                sample['pred_panoptic'] = _read(read_two_channel_panoptic, f['pan'], divisor)
                sample['img_path'] = str(f['pan'])
        else:
            sample['gt_panoptic'] = _read(
                read_semkitti_dvps_panoptic, f['gt'], f['gt_instance'], divisor
            )
            if 'cat' in f:
                sample['pred_panoptic'] = _semkitti_prediction(f['cat'], f['ins'], divisor)
                sample['img_path'] = str(f['cat'])
        if 'depth' in f:
            sample['pred_depth'] = _read(read_depth_png, f['depth'])
            sample['pred_depth_path'] = str(f['depth'])
            sample.setdefault('img_path', str(f['depth']))
        yield sample


def _kitti_frames(gt_dir: Path, depth_dir) -> Iterator[dict]:
    if depth_dir is None:
        raise ValueError('kitti_depth needs a depth prediction folder')
    if not gt_dir.is_dir():
        raise FileNotFoundError(f'{gt_dir}: no such folder')

    def keyed(folder: Path) -> dict:
        out = {}
        for name in sorted(os.listdir(folder)):
            m = KITTI_SELECTION_NAME.match(name)
            if m and m['ext'] == 'png' and m['kind'] in ('image', 'groundtruth_depth'):
                key = (f"{m['drive']}_image_{m['cam']}", int(m['frame']))
                if key in out:
                    raise ValueError(f'{folder}: {out[key]} and {name} are the same frame')
                out[key] = name
        return out

    gt = keyed(gt_dir)
    if not gt:
        raise ValueError(f'{gt_dir}: no *_groundtruth_depth_*.png file of the KITTI val selection')
    pred = keyed(Path(depth_dir))
    _match_keys(gt, pred, 'depth predictions', depth_dir)
    for key, name in gt.items():
        path = Path(depth_dir) / pred[key]
        yield dict(
            video_id=key[0],
            frame_id=key[1],
            img_path=str(path),
            pred_depth_path=str(path),
            gt_depth=_read(read_depth_png, gt_dir / name),
            pred_depth=_read(read_depth_png, path),
        )


def _build_metrics(fmt, metrics, pan_dir, depth_dir, windows, thresholds, offset_buckets, average):
    """The registered metrics :func:`evaluate_folders` runs, given the folders available."""
    unknown = set(metrics) - {'dvpq', 'stq', 'depth'}
    if unknown or not metrics:
        raise ValueError(f"metrics must be among 'dvpq', 'stq', 'depth', got {list(metrics)}")
    if fmt == 'kitti_depth':
        metrics = [m for m in metrics if m == 'depth']
        if not metrics:
            raise ValueError("kitti_depth has depth only: use metrics=('depth',)")
    if pan_dir is None:
        metrics = [m for m in metrics if m == 'depth']
    if depth_dir is None:
        metrics = [m for m in metrics if m != 'depth']
        if thresholds is None and 'dvpq' in metrics:
            thresholds = ()
    if not metrics:
        raise ValueError('nothing to evaluate: give a panoptic and/or a depth prediction folder')
    built = {}
    if 'dvpq' in metrics:
        built['dvpq'] = DVPQMetric(
            fmt,
            windows=windows,
            thresholds=thresholds,
            average=average,
            offset_buckets=offset_buckets,
        )
        built['dvpq'].dataset_meta = dict(classes=_CLASSES[fmt])
    if 'stq' in metrics:
        kw = dict(_STQ[fmt], depth_thresholds=_STQ[fmt]['depth_thresholds'] if depth_dir else None)
        built['stq'] = STQMetric(**kw, offset_buckets=offset_buckets)
    if 'depth' in metrics:
        built['depth'] = KittiDepthMetric(offset_buckets=offset_buckets)
    return built


def evaluate_folders(
    fmt: str,
    gt_dir,
    pan_dir=None,
    depth_dir=None,
    *,
    metrics: Sequence[str] = ('dvpq', 'stq', 'depth'),
    windows: Sequence[int] | None = None,
    thresholds: Sequence[float] | None = None,
    average: str | None = None,
    offset_buckets=None,
) -> dict:
    """Evaluate a prediction folder.

    Args:
        fmt (str): One of :data:`FOLDER_FORMATS`.
        gt_dir, pan_dir, depth_dir: Folders (see :func:`iter_frames`).
        metrics (Sequence[str]): Any of ``'dvpq'``, ``'stq'``, ``'depth'`` (``kitti_depth``:
            depth only).
        windows (Sequence[int], optional): DVPQ window lengths (default: the protocol's).
        thresholds (Sequence[float], optional): DVPQ depth thresholds (default: the
            protocol's; ``()`` for VPQ only, without depth).
        average (str, optional): PQ class average: ``'all'`` (the default, as the reference
            scripts: all classes, the protocol's epsilon) or ``'valid'`` (classes with
            TP + FP + FN > 0, deeplab2). Classes absent from both sides are named in a
            ``UserWarning`` either way.
        offset_buckets (int | Sequence[int], optional): By-frame-offset curves (default none).

    Returns:
        dict: ``{metric name: {key: value}}`` (values as the registered metrics return them),
        plus ``num_frames``; ``dvpq/per_window`` holds the per-class TP/FN/FP/IoU sums of every
        window length and threshold, ``dvpq/absent_classes`` the classes absent from both the
        ground truth and the prediction.
    """
    if average is not None and average not in _AVERAGES:
        raise ValueError(f'average must be one of {_AVERAGES}, got {average!r}')
    built = _build_metrics(
        fmt, metrics, pan_dir, depth_dir, windows, thresholds, offset_buckets, average
    )
    count = 0
    for sample in iter_frames(fmt, gt_dir, pan_dir, depth_dir):
        for metric in built.values():
            metric.process(None, [sample])
        count += 1
    out = {name: metric.compute_metrics(metric.results) for name, metric in built.items()}
    if 'dvpq' in built:
        out['dvpq/per_window'] = {
            f'k{k}' + ('' if lam is None else f'_l{lam:g}'): {
                'iou': s.iou.tolist(),
                'tp': s.tp.tolist(),
                'fn': s.fn.tolist(),
                'fp': s.fp.tolist(),
            }
            for (k, lam), s in built['dvpq'].last_result['stats'].items()
        }
        out['dvpq/absent_classes'] = _absent_classes(built['dvpq'], fmt)
    out['num_frames'] = count
    return out


def _absent_classes(metric: DVPQMetric, fmt: str) -> list[str]:
    """Classes with no segment in the ground truth nor the prediction (k = 1, no depth), and a
    warning naming them with what they do to the class average."""
    p = metric.protocol
    stats = metric.last_result['stats'][p.windows[0], None]
    absent = [_CLASSES[fmt][c] for c in np.flatnonzero(stats.tp + stats.fn + stats.fp == 0)]
    if absent:
        if p.average == 'valid':
            effect = 'they are left out of the class means (average valid)'
        else:
            effect = (
                'averaged over all classes as the reference script does (average all), they '
                + (
                    'make PQ / VPQ / DVPQ NaN (epsilon 0)'
                    if p.epsilon == 0
                    else f'count as 0 (epsilon {p.epsilon:g})'
                )
                + '; average valid leaves them out'
            )
        warnings.warn(
            f'{len(absent)} of {p.num_classes} classes are absent from both the ground truth and '
            f'the prediction ({", ".join(absent)}): {effect}',
            UserWarning,
            stacklevel=3,
        )
    return absent
