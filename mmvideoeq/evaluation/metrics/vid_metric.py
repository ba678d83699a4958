"""Video object detection mAP (ImageNet VID protocol), overall and by frame offset.

OpenMMLab reports ImageNet VID as COCO-style ``bbox_mAP_50`` computed by pycocotools over all
frames of the validation videos (mmtracking's SELSA/FGFA/DFF results). :class:`VIDMetric`
subclasses mmdet's :class:`~mmdet.evaluation.CocoVideoMetric` (which flattens ``TrackDataSample``
videos into frames and collects video results across ranks) and reuses ``CocoMetric``'s whole
evaluation (result conversion to COCO json, ground truth from ``ann_file`` or converted from the
data samples, ``COCOeval``, class-wise table, ``bbox_mAP``/``bbox_mAP_50``/... keys). Written
here, because mmdet lacks it:

* the **by-frame-offset curve** StreamDEQ plots: frames are grouped by their offset from the
  start of their clip (:mod:`.frame_offset`) and ``COCOeval`` is run on each group's images at
  IoU 0.5 (the same matching and precision averaging as ``stats[1]``);
* **frame bookkeeping**: frames whose prediction is missing or broken are skipped, counted
  (``num_skipped_frames``) and listed in the log and in :attr:`VIDMetric.skipped_frames`; frames
  of ``ann_file`` that never reached the metric are reported too. mmdet's ``CocoMetric`` evaluates
  every image of ``ann_file`` (a frame without a result counts as all misses); here only the
  frames that were processed are evaluated;
* class matching by name (mmdet maps ``dataset_meta['classes']`` to category ids in file order);
* a **bootstrap interval** of each offset bucket's mAP@0.5 over videos
  (:func:`.bootstrap_by_offset`): every image is matched once (``COCOeval.evaluate``) and each
  resample is accumulated (``COCOeval.accumulate``) over its list of images *with repeats* (a
  video drawn twice counts twice, which ``COCOeval.evaluate`` itself cannot do: it deduplicates
  ``imgIds``);
* the unrounded COCO statistics next to mmdet's 3-decimal values (``exact/bbox_mAP_50`` ...):
  ``CocoMetric.compute_metrics`` keeps no handle on its ``COCOeval``, so the same evaluation
  (same detections, ``catIds``, ``imgIds``, ``maxDets``, ``iouThrs``) is run once more with
  pycocotools and its ``stats`` are reported.
"""

from __future__ import annotations

import contextlib
import io
import os.path as osp
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from mmdet.datasets.api_wrappers import COCO, COCOeval
from mmdet.evaluation import CocoMetric, CocoVideoMetric
from mmengine.evaluator import BaseMetric
from mmengine.fileio import exists, load
from mmengine.logging import MMLogger
from mmengine.structures import BaseDataElement

from mmvideoeq.registry import METRICS
from mmvideoeq.structures import SKIP_KEY

from .frame_offset import (
    OffsetBuckets,
    aggregate_by_offset,
    bootstrap_by_offset,
    check_ci_resamples,
    frame_offsets,
)

__all__ = ['VIDMetric']

_VIDEO_KEYS = ('video_data_samples', '_video_data_samples')
_STAT_NAMES = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')


class _FrameRecordMetric(CocoMetric):
    """``CocoMetric.process`` for frames that keeps one record per frame: its identity, and
    either its converted ground truth and prediction or why it was skipped."""

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        for frame in data_samples:
            if isinstance(frame, BaseDataElement):
                frame = frame.to_dict()
            info = self._frame_info(frame)
            reason = self._skip_reason(frame)
            if reason is not None:
                self.results.append(dict(frame=info, skipped=reason))
                continue
            if not self.ann_file:
                for key in ('instances', 'ori_shape'):
                    if key not in frame:
                        raise KeyError(
                            f"VIDMetric without ann_file needs '{key}' in every data sample "
                            "(add it to PackDetInputs' meta_keys) or set ann_file to the "
                            "dataset's annotation file"
                        )
            elif 'ori_shape' not in frame:
                # CocoMetric reads it unconditionally; it only matters without ann_file
                frame = dict(frame, ori_shape=(0, 0))
            super().process(data_batch, [frame])
            gt, pred = self.results.pop()
            self.results.append(dict(frame=info, gt=gt, pred=pred))

    @staticmethod
    def _frame_info(frame: dict) -> dict:
        if 'img_id' not in frame:
            raise KeyError(
                "VIDMetric needs 'img_id' in every data sample's metainfo (keep it in "
                "PackDetInputs' meta_keys)"
            )
        info = {key: frame.get(key) for key in ('img_id', 'video_id', 'frame_id', 'img_path')}
        info['frame_offset'] = frame.get('frame_offset')
        return info

    @staticmethod
    def _skip_reason(frame: dict) -> str | None:
        if frame.get(SKIP_KEY):
            return str(frame[SKIP_KEY])
        pred = frame.get('pred_instances')
        if pred is None:
            return 'no pred_instances'
        for key in ('bboxes', 'scores', 'labels'):
            if key not in pred:
                return f'pred_instances has no {key}'
        for key in ('bboxes', 'scores'):
            value = pred[key]
            value = (
                value.detach().cpu()
                if isinstance(value, torch.Tensor)
                else torch.as_tensor(np.asarray(value, dtype=np.float64))
            )
            if not bool(torch.isfinite(value).all()):
                return f'non-finite pred_instances.{key}'
        return None


@METRICS.register_module()
class VIDMetric(CocoVideoMetric, _FrameRecordMetric):
    """COCO ``bbox`` mAP of video frames, plus ``bbox_mAP_50`` by frame offset.

    Each data sample is a frame (``DetDataSample`` / its dict: ``img_id``, ``pred_instances``,
    ``ori_shape``; ``video_id``, ``frame_id`` and optionally ``frame_offset`` in the metainfo) or a
    ``TrackDataSample`` whose ``video_data_samples`` are such frames. A frame is **skipped** (left
    out of every number, counted and reported) when it has no ``pred_instances``, when its boxes or
    scores are not finite, or when its metainfo has ``eval_skip_reason`` (a streaming loop sets it
    when a frame fails).

    The offset of a frame is its ``frame_offset`` when given, else its ``frame_id`` minus the
    smallest ``frame_id`` of its video among the frames that reached the metric (skipped ones
    included, so that a failed first frame does not shift the others).

    Returned keys (besides mmdet's ``bbox_mAP``, ``bbox_mAP_50``, ``bbox_mAP_75``,
    ``bbox_mAP_s/m/l``, rounded to 3 decimals as mmdet does; prefixed with ``vid/`` by default):

    * ``exact/bbox_mAP``, ``exact/bbox_mAP_50``, ...: the same statistics unrounded;

    * ``num_frames`` (evaluated) and ``num_skipped_frames``;
    * ``offset_curve/bbox_mAP_50``: ``{bucket label: mAP@0.5}`` and ``offset_curve/num_frames``:
      ``{bucket label: frames}``, for non-empty buckets in order (dicts, as
      ``StreamingIoUMetric`` does: logged and dumped as non-scalar results). A bucket without any
      ground truth of the evaluated classes gets ``-1`` (pycocotools' convention);
    * ``offset_curve_ci/bbox_mAP_50``: ``{bucket label: [lo, hi]}``, the 95 % percentile
      bootstrap interval over videos (``ci_resamples`` resamples, seed 0; frames without a
      ``video_id`` are their own unit; resamples whose bucket has no ground truth are left out).

    Args:
        ann_file (str, optional): The CocoVID (or COCO) annotation file the frames come from
            (e.g. ``data/ILSVRC/annotations/imagenet_vid_val.json``). If None, the ground truth is
            converted from each sample's ``instances`` (then ``instances`` must be in the
            metainfo, e.g. in ``PackDetInputs(meta_keys=...)``).
        offset_buckets (int | Sequence[int], optional): Offset buckets of the curve (see
            :meth:`.OffsetBuckets.build`): ``20`` (default) gives offsets ``0 .. 19`` one by one
            and ``20+``; ``[0, 1, 5, 10]`` gives ``0``, ``1-4``, ``5-9``, ``10+``. None: no curve.
        iou_thrs (float | Sequence[float], optional): IoU thresholds of the overall COCO
            evaluation (default 0.5:0.95, as mmdet). The curve is always at IoU 0.5.
        classwise (bool): Log (and return) per-class AP, as mmdet. Defaults to False.
        proposal_nums (Sequence[int]): COCO ``maxDets``; the mAP keys use the third. Defaults to
            (100, 300, 1000), as mmdet.
        metric_items (Sequence[str], optional): mmdet's ``metric_items``.
        format_only (bool): Only write the results json (``outfile_prefix`` required).
        outfile_prefix (str, optional): Where the results json goes (a temp dir if None).
        backend_args (dict, optional): File backend for ``ann_file``.
        collect_device (str): ``'cpu'`` or ``'gpu'``.
        prefix (str, optional): Metric name prefix. Defaults to ``'vid'``.
        max_listed (int): At most this many skipped frames are listed in the log. Defaults to 20.
        ci_resamples (int): Bootstrap resamples of the curve's intervals; 0: no intervals.
            Defaults to 200.

    Attributes:
        skipped_frames (list[dict]): After :meth:`compute_metrics`: ``img_id``, ``video_id``,
            ``frame_id``, ``img_path`` and ``reason`` of every skipped frame.
    """

    default_prefix: str | None = 'vid'

    def __init__(
        self,
        ann_file: str | None = None,
        *,
        offset_buckets: int | Sequence[int] | None = 20,
        iou_thrs: float | Sequence[float] | None = None,
        classwise: bool = False,
        proposal_nums: Sequence[int] = (100, 300, 1000),
        metric_items: Sequence[str] | None = None,
        format_only: bool = False,
        outfile_prefix: str | None = None,
        backend_args: dict | None = None,
        collect_device: str = 'cpu',
        prefix: str | None = None,
        max_listed: int = 20,
        ci_resamples: int = 200,
    ) -> None:
        if ann_file is not None and not exists(ann_file, backend_args=backend_args):
            raise FileNotFoundError(
                f'VIDMetric ann_file {ann_file} does not exist; give the annotation file of the '
                'evaluated dataset (e.g. data/ILSVRC/annotations/imagenet_vid_val.json) or None '
                "to build the ground truth from the samples' instances"
            )
        if len(proposal_nums) != 3:
            raise ValueError(
                f'proposal_nums must have 3 entries (COCO maxDets), got ' f'{list(proposal_nums)}'
            )
        super().__init__(
            ann_file=ann_file,
            metric='bbox',
            classwise=classwise,
            proposal_nums=proposal_nums,
            iou_thrs=iou_thrs,
            metric_items=metric_items,
            format_only=format_only,
            outfile_prefix=outfile_prefix,
            backend_args=backend_args,
            collect_device=collect_device,
            prefix=prefix,
        )
        self.ann_file = ann_file
        self.offset_buckets = (
            None if offset_buckets is None else OffsetBuckets.build(offset_buckets)
        )
        self.max_listed = max_listed
        self.ci_resamples = check_ci_resamples(ci_resamples)
        self.skipped_frames: list[dict] = []
        self._saw_track_samples = False

    # ------------------------------------------------------------------------------------------
    # processing
    # ------------------------------------------------------------------------------------------
    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Store one record per frame: ``TrackDataSample`` videos are flattened by mmdet's
        ``CocoVideoMetric.process``, which hands each frame to the frame-level processing.

        Args:
            data_batch (Any): The batch from the dataloader (unused).
            data_samples (Sequence[dict]): Frames, or ``TrackDataSample`` dicts of frames.
        """
        for data_sample in data_samples:
            if any(key in data_sample for key in _VIDEO_KEYS):
                self._saw_track_samples = True
                CocoVideoMetric.process(self, data_batch, [data_sample])
            else:
                _FrameRecordMetric.process(self, data_batch, [data_sample])

    def evaluate(self, size: int) -> dict:
        """Collect the records of all ranks and compute the metrics.

        Frame samples go through mmengine's ``BaseMetric.evaluate`` (which drops the sampler's
        padding by ``size``); when ``TrackDataSample``s were seen, ``size`` counts videos, so
        mmdet's ``CocoVideoMetric.evaluate`` collects them (duplicates are dropped by image id).

        Args:
            size (int): Length of the evaluated dataset.

        Returns:
            dict: The metrics, prefixed.
        """
        if self._saw_track_samples:
            return CocoVideoMetric.evaluate(self, size)
        return BaseMetric.evaluate(self, size)

    # ------------------------------------------------------------------------------------------
    # metrics
    # ------------------------------------------------------------------------------------------
    def compute_metrics(self, results: list) -> dict[str, Any]:
        """Overall COCO metrics (mmdet's ``CocoMetric``) and the offset curve.

        Args:
            results (list): One list of frame records per processed data sample.

        Returns:
            dict: See the class docstring.
        """
        logger: MMLogger = MMLogger.get_current_instance()
        records = list(results)
        done, skipped, seen = [], [], set()
        for record in records:
            img_id = record['frame']['img_id']
            if img_id in seen:  # sampler padding or a frame processed twice: keep the first
                continue
            seen.add(img_id)
            (skipped if 'skipped' in record else done).append(record)
        self.skipped_frames = [
            dict(record['frame'], reason=record['skipped']) for record in skipped
        ]
        self._report_skipped(logger)

        if not self.ann_file:
            self._coco_api = None  # rebuilt from this evaluation's samples by CocoMetric
        else:
            self._check_against_ann_file(done, seen, logger)
        self.cat_ids = self._match_cat_ids() if self.ann_file else None
        self.img_ids = [record['frame']['img_id'] for record in done]

        metrics: dict[str, Any] = dict(num_frames=len(done), num_skipped_frames=len(skipped))
        if not done:
            logger.error('VIDMetric: no frame could be evaluated')
            return metrics
        metrics.update(CocoMetric.compute_metrics(self, [(r['gt'], r['pred']) for r in done]))
        if self.format_only:
            return metrics

        coco_dt = self._detections([r['pred'] for r in done])
        if coco_dt.getAnnIds():  # mmdet rounds to 3 decimals; the exact values for reports
            coco_eval = self._coco_eval(coco_dt, self.img_ids, self.iou_thrs)
            with contextlib.redirect_stdout(io.StringIO()):
                coco_eval.summarize()
            metrics.update(
                {f'exact/bbox_{n}': float(v) for n, v in zip(_STAT_NAMES, coco_eval.stats)}
            )
        else:  # CocoMetric gives up when there is no detection at all
            metrics['bbox_mAP_50'] = round(self._ap50(coco_dt, self.img_ids), 3)
        if self.offset_buckets is not None:
            metrics.update(self._offset_curve(done, skipped, coco_dt, logger))
        return metrics

    def _report_skipped(self, logger: MMLogger) -> None:
        if not self.skipped_frames:
            return
        lines = [
            f"  video {f['video_id']} frame {f['frame_id']} (img_id {f['img_id']}, "
            f"{f['img_path']}): {f['reason']}"
            for f in self.skipped_frames[: self.max_listed]
        ]
        more = len(self.skipped_frames) - len(lines)
        if more > 0:
            lines.append(f'  ... and {more} more (see VIDMetric.skipped_frames)')
        logger.warning(
            f'VIDMetric: {len(self.skipped_frames)} frames were skipped and are not '
            'evaluated:\n' + '\n'.join(lines)
        )

    def _check_against_ann_file(self, done: list, seen: set, logger: MMLogger) -> None:
        file_ids = set(self._coco_api.get_img_ids())
        unknown = [r['frame']['img_id'] for r in done if r['frame']['img_id'] not in file_ids]
        if unknown:
            raise KeyError(
                f'VIDMetric: image ids {unknown[:self.max_listed]} of the results are '
                f'not images of {self.ann_file}; ann_file must be the annotation file '
                'of the evaluated dataset'
            )
        not_seen = sorted(file_ids - seen)
        if not_seen:
            logger.warning(
                f'VIDMetric: {len(not_seen)} of {len(file_ids)} frames of '
                f'{self.ann_file} got no result and are not evaluated (e.g. image ids '
                f'{not_seen[:self.max_listed]})'
            )

    def _match_cat_ids(self) -> list[int]:
        """Category id of ``ann_file`` for each class of ``dataset_meta``, matched by name."""
        classes = (self.dataset_meta or {}).get('classes')
        if not classes:
            raise ValueError(
                'VIDMetric needs dataset_meta with classes (the runner sets it from '
                'the dataset; set metric.dataset_meta = dict(classes=...) otherwise)'
            )
        name2id = {cat['name']: cat['id'] for cat in self._coco_api.dataset['categories']}
        missing = [name for name in classes if name not in name2id]
        if missing:
            raise ValueError(
                f'class list does not match: dataset classes {missing} are not '
                f'categories of {self.ann_file}, whose categories are '
                f'{list(name2id)}'
            )
        return [name2id[name] for name in classes]

    def _detections(self, preds: list[dict]) -> COCO:
        """The predictions as a pycocotools result set (empty-safe, unlike ``loadRes([])``)."""
        with tempfile.TemporaryDirectory() as tmp:
            dets = load(self.results2json(preds, osp.join(tmp, 'curve'))['bbox'])
        if dets:
            with contextlib.redirect_stdout(io.StringIO()):
                return self._coco_api.loadRes(dets)
        coco_dt = COCO()
        coco_dt.dataset = dict(
            images=list(self._coco_api.dataset['images']),
            categories=list(self._coco_api.dataset['categories']),
            annotations=[],
        )
        with contextlib.redirect_stdout(io.StringIO()):
            coco_dt.createIndex()
        return coco_dt

    def _coco_eval(self, coco_dt: COCO, img_ids: list, iou_thrs) -> COCOeval:
        """pycocotools' ``bbox`` evaluation (evaluated and accumulated) with mmdet
        ``CocoMetric``'s parameters on the frames ``img_ids``."""
        coco_eval = COCOeval(self._coco_api, coco_dt, 'bbox')
        coco_eval.params.catIds = self.cat_ids
        coco_eval.params.imgIds = list(img_ids)
        coco_eval.params.maxDets = list(self.proposal_nums)
        coco_eval.params.iouThrs = np.asarray(iou_thrs, np.float64)
        with contextlib.redirect_stdout(io.StringIO()):
            coco_eval.evaluate()
            coco_eval.accumulate()
        return coco_eval

    def _ap50(self, coco_dt: COCO, img_ids: list) -> float:
        """pycocotools AP at IoU 0.5, area ``all``, ``maxDets`` = ``proposal_nums[2]``."""
        coco_eval = self._coco_eval(coco_dt, img_ids, [0.5])
        # precision: (iou, recall, class, area range, max dets); as COCOeval.summarize's stats[1]
        precision = coco_eval.eval['precision'][0, :, :, 0, 2]
        precision = precision[precision > -1]
        return float(precision.mean()) if precision.size else -1.0

    def _ap50_reducer(self, coco_dt: COCO, img_ids: list):
        """AP@0.5 of any list of the images ``img_ids``, repeats counted, as a function.

        Each image is matched once (``COCOeval.evaluate`` at IoU 0.5, area ``all``,
        ``maxDets`` = ``proposal_nums[2]``: the cell of :meth:`_ap50`); the function lays the
        per-image results out for the given list, repeats included, as ``COCOeval.accumulate``
        reads them (``evalImgs[k * I + i]`` over ``_paramsEval.imgIds``), and accumulates. On
        distinct images it equals :meth:`_ap50`; a bucket without ground truth gives NaN.

        Args:
            coco_dt (COCO): The detections.
            img_ids (list): The images the lists will be drawn from.

        Returns:
            Callable[[list], float]: ``image ids (repeats allowed) -> AP@0.5``.
        """
        coco_eval = COCOeval(self._coco_api, coco_dt, 'bbox')
        params = coco_eval.params
        params.catIds = self.cat_ids
        params.imgIds = list(img_ids)
        params.maxDets = [self.proposal_nums[2]]
        params.iouThrs = np.asarray([0.5], np.float64)
        params.areaRng, params.areaRngLbl = params.areaRng[:1], params.areaRngLbl[:1]
        with contextlib.redirect_stdout(io.StringIO()):
            coco_eval.evaluate()
        evaluated = list(coco_eval._paramsEval.imgIds)  # sorted, unique
        where = {img_id: i for i, img_id in enumerate(evaluated)}
        per_cat = [
            coco_eval.evalImgs[k * len(evaluated) : (k + 1) * len(evaluated)]
            for k in range(len(coco_eval._paramsEval.catIds))
        ]

        def ap50(chosen: list) -> float:
            coco_eval.evalImgs = [row[where[i]] for row in per_cat for i in chosen]
            coco_eval._paramsEval.imgIds = coco_eval.params.imgIds = list(chosen)
            with contextlib.redirect_stdout(io.StringIO()):
                coco_eval.accumulate()
            precision = coco_eval.eval['precision'][0, :, :, 0, 0]
            precision = precision[precision > -1]
            return float(precision.mean()) if precision.size else float('nan')

        return ap50

    def _offset_curve(
        self, done: list, skipped: list, coco_dt: COCO, logger: MMLogger
    ) -> dict[str, Any]:
        frames = [r['frame'] for r in done] + [
            r['frame']
            for r in skipped
            if r['frame']['video_id'] is not None and r['frame']['frame_id'] is not None
        ]
        offsets = frame_offsets(
            [f['video_id'] for f in frames],
            [f['frame_id'] for f in frames],
            [f['frame_offset'] for f in frames],
        )[: len(done)]
        img_ids = [r['frame']['img_id'] for r in done]
        curve = aggregate_by_offset(
            img_ids,
            offsets,
            self.offset_buckets,
            reduce=lambda ids: round(self._ap50(coco_dt, ids), 3),
        )
        counts = aggregate_by_offset(img_ids, offsets, self.offset_buckets, reduce=len)
        table = '\n'.join(
            f'  {label:>8}  {counts[label]:>8}  {ap:.3f}' for label, ap in curve.items()
        )
        logger.info(f'bbox_mAP_50 by frame offset:\n    offset    frames  mAP_50\n{table}')
        out = {'offset_curve/bbox_mAP_50': curve, 'offset_curve/num_frames': counts}
        if self.ci_resamples:
            videos = [
                ('img', r['frame']['img_id'])
                if r['frame']['video_id'] is None
                else r['frame']['video_id']
                for r in done
            ]
            ci = bootstrap_by_offset(
                img_ids,
                offsets,
                videos,
                self.offset_buckets,
                self._ap50_reducer(coco_dt, img_ids),
                n=self.ci_resamples,
            )
            out['offset_curve_ci/bbox_mAP_50'] = {
                label: [round(lo, 3), round(hi, 3)] for label, (lo, hi) in ci.items()
            }
        return out
