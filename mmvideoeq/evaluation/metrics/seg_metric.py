"""Streaming semantic-segmentation mIoU: overall and by frame offset.

StreamDEQ (thesis section 4.1, Figs. 4.1, 4.2, 4.4, 4.5) reports the mIoU of the annotated
Cityscapes frame as a function of the *frame offset* at which the stream reached it. This metric
subclasses mmseg's :class:`~mmseg.evaluation.IoUMetric` and reuses its per-image areas
(``intersect_and_union``), its area-to-metric arithmetic (``total_area_to_metrics``), its overall
summary and per-class table, and its prediction-PNG writing (``output_dir``/``format_only``).
The offset buckets and the grouping are the project's shared ones (:mod:`.frame_offset`, also used
by the VID metric). Written here, because mmseg has no notion of it: skipping frames that carry no
label, summing the areas of each offset bucket before summarising it, and a bootstrap interval of
each bucket's value over the annotated frames (:func:`.bootstrap_by_offset`).
"""

import re
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from mmengine.logging import MMLogger
from mmseg.evaluation import IoUMetric

from mmvideoeq.registry import METRICS

from .frame_offset import (
    OffsetBuckets,
    aggregate_by_offset,
    bootstrap_by_offset,
    check_ci_resamples,
)

__all__ = ['StreamingIoUMetric']

#: The clip-length suffix of ``CityscapesClipDataset``'s ``video_id``.
_LENGTH = re.compile(r'_len\d+$')


@METRICS.register_module()
class StreamingIoUMetric(IoUMetric):
    """mIoU of the annotated frames of streamed clips, overall and per frame offset.

    A data sample is evaluated when it has a ``gt_sem_seg`` and its metainfo does not say
    ``is_annotated=False`` (unannotated clip frames and shot-change init frames are skipped). Its
    frame offset is ``frame_offset`` from the metainfo when present (set by a streaming loop), else
    ``frame_id`` (the frame's index in its clip, so the annotated frame of a clip of length ``L``
    has offset ``L - 1``; unlike the VID metric, not relative to the first *evaluated* frame, as
    only the last frame of a clip is evaluated); a sample with neither counts in the overall
    numbers only.

    Labels are Cityscapes train ids (0..18, ``ignore_index`` 255), as loaded by
    ``CityscapesClipDataset`` from either labelTrainIds or labelIds files (the latter mapped with
    cityscapesscripts' ``id2label[id].trainId``); predictions are train ids too.

    Returned keys (values in percent, rounded to 2 decimals as mmseg does):

    * mmseg's overall keys: ``aAcc``, ``mIoU``, ``mAcc`` (and ``mDice``/``mFscore``... when listed
      in ``iou_metrics``), over all evaluated frames;
    * ``offset_curve/{key}`` for each of those keys, ``mIoU`` first (the curve the streaming loop
      plots): ``{bucket label: value}`` over the non-empty offset buckets, in offset order; labels
      as :class:`.OffsetBuckets` (``'0'``, ``'1'``, ..., ``'20+'`` for ``offset_buckets=20``);
    * ``offset_curve/num_frames``: ``{bucket label: number of evaluated frames}``;
    * ``offset_curve_ci/{key}``: ``{bucket label: [lo, hi]}``, the 95 % percentile bootstrap
      interval of each curve (``ci_resamples`` resamples, seed 0). The resampling unit is the
      annotated frame: the ``video_id`` without a ``_len{L}`` suffix, so that the clips of
      several lengths ending at one annotated frame are drawn together.

    ``offset_curve/*`` values are dicts, which mmengine logs and dumps to the test JSON log as
    non-scalar results; only the overall keys go to scalar backends.

    One entry is stored per processed sample (``None`` for an unevaluated one), so that mmengine's
    distributed result collection, which interleaves the ranks' entries sample by sample and drops
    the sampler's padding by ``size``, stays aligned.

    Args:
        ignore_index (int): Label ignored in evaluation. Defaults to 255.
        iou_metrics (list[str]): Any of ``'mIoU'``, ``'mDice'``, ``'mFscore'``.
        nan_to_num (int, optional): Replace NaN class scores by this value.
        beta (int): Weight of recall in the F-score.
        collect_device (str): ``'cpu'`` or ``'gpu'``.
        output_dir (str, optional): Write the prediction PNG of evaluated frames here.
        format_only (bool): Only write predictions, compute nothing.
        prefix (str, optional): Prefix added to the metric names.
        offset_buckets (int | Sequence[int], optional): Buckets of the offset curve (see
            :meth:`.OffsetBuckets.build`): ``20`` (default) gives offsets ``0 .. 19`` one by one
            and ``'20+'``; ``[0, 1, 4, 9, 19]`` gives ``'0'``, ``'1-3'``, ``'4-8'``, ``'9-18'``,
            ``'19+'``; ``None`` turns the curve off.
        ci_resamples (int): Bootstrap resamples of the curves' intervals; 0: no intervals.
            Defaults to 200.
    """

    def __init__(
        self,
        ignore_index: int = 255,
        iou_metrics: Sequence[str] = ('mIoU',),
        nan_to_num: Optional[int] = None,
        beta: int = 1,
        collect_device: str = 'cpu',
        output_dir: Optional[str] = None,
        format_only: bool = False,
        prefix: Optional[str] = None,
        offset_buckets: Optional[Union[int, Sequence[int]]] = 20,
        ci_resamples: int = 200,
    ) -> None:
        allowed = ('mIoU', 'mDice', 'mFscore')
        if isinstance(iou_metrics, str):
            iou_metrics = [iou_metrics]
        unknown = [m for m in iou_metrics if m not in allowed]
        if unknown or not iou_metrics:
            raise ValueError(
                f'iou_metrics must be a non-empty list of {allowed}, got {list(iou_metrics)!r}.'
            )
        if format_only and output_dir is None:
            raise ValueError('format_only=True writes predictions only: give output_dir.')
        super().__init__(
            ignore_index=ignore_index,
            iou_metrics=list(iou_metrics),
            nan_to_num=nan_to_num,
            beta=beta,
            collect_device=collect_device,
            output_dir=output_dir,
            format_only=format_only,
            prefix=prefix,
        )
        self.offset_buckets = (
            None if offset_buckets is None else OffsetBuckets.build(offset_buckets)
        )
        self.ci_resamples = check_ci_resamples(ci_resamples)

    @staticmethod
    def _is_evaluated(data_sample: dict, needs_gt: bool) -> bool:
        """Whether ``data_sample`` is an annotated frame to evaluate.

        Args:
            data_sample (dict): One model output as a dict.
            needs_gt (bool): False in ``format_only`` mode (no ground truth needed).

        Returns:
            bool: True to evaluate the sample.

        Raises:
            ValueError: A sample marked ``is_annotated=True`` arrives without ``gt_sem_seg``.
        """
        flag = data_sample.get('is_annotated', None)
        if flag is not None and not flag:
            return False
        if 'gt_sem_seg' in data_sample or not needs_gt:
            return True
        if flag:
            raise ValueError(
                f"Frame {data_sample.get('img_path', '?')} is marked is_annotated=True but has no "
                "gt_sem_seg: add dict(type='mmseg.LoadAnnotations') to the test pipeline."
            )
        return False

    @staticmethod
    def _frame_offset(data_sample: dict) -> Optional[int]:
        """``frame_offset`` from the metainfo when present, else ``frame_id``, else None."""
        for key in ('frame_offset', 'frame_id'):
            value = data_sample.get(key, None)
            if value is not None:
                return int(value)
        return None

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Accumulate the areas of the annotated frames of a batch.

        Args:
            data_batch (dict): A batch from the dataloader (unused).
            data_samples (Sequence[dict]): Model outputs as dicts (``SegDataSample.to_dict()``)
                with ``pred_sem_seg`` ``(1, H, W)``, ``gt_sem_seg`` ``(1, H, W)`` on annotated
                frames and the streaming metainfo keys.
        """
        for data_sample in data_samples:
            if not self._is_evaluated(data_sample, needs_gt=not self.format_only):
                self.results.append(None)
                continue
            # mmseg computes the areas (and writes the PNG); the entry it appends is re-tagged.
            num_before = len(self.results)
            super().process(data_batch, [data_sample])
            if self.format_only:
                self.results.append(None)
                continue
            areas = self.results.pop()
            if len(self.results) != num_before:
                raise RuntimeError(
                    'mmseg IoUMetric.process appended an unexpected number of '
                    'results; this mmseg version is not supported.'
                )
            self.results.append(
                dict(
                    offset=self._frame_offset(data_sample),
                    video_id=data_sample.get('video_id', None),
                    areas=tuple(areas),
                )
            )

    def _summarize(self, areas: List[tuple]) -> Dict[str, float]:
        """mmseg's summary (``aAcc``, ``mIoU``, ...) of a group of per-frame areas.

        Same arithmetic as :meth:`IoUMetric.compute_metrics`, without its per-class table.
        """
        totals = [sum(column) for column in zip(*areas)]
        ret = self.total_area_to_metrics(*totals, self.metrics, self.nan_to_num, self.beta)
        summary = OrderedDict()
        for key, value in ret.items():
            name = key if key == 'aAcc' else 'm' + key
            summary[name] = float(np.round(np.nanmean(value) * 100, 2))
        return summary

    def compute_metrics(self, results: list) -> Dict[str, object]:
        """Overall metrics and the per-offset curves.

        Args:
            results (list): Entries stored by :meth:`process` (``None`` for unevaluated samples).

        Returns:
            dict: See the class docstring for the keys.

        Raises:
            ValueError: No annotated frame was evaluated.
        """
        if self.format_only:
            return super().compute_metrics(results)
        records = [r for r in results if r is not None]
        if not records:
            raise ValueError(
                f'{self.__class__.__name__} saw no annotated frame: frames need gt_sem_seg '
                '(mmseg.LoadAnnotations in the pipeline) and is_annotated not False '
                "(add 'is_annotated' to PackSegInputs' meta_keys)."
            )
        # Overall: mmseg's own summary and per-class table.
        metrics = dict(super().compute_metrics([r['areas'] for r in records]))

        if self.offset_buckets is None:
            return metrics
        located = [r for r in records if r['offset'] is not None]
        if not located:
            return metrics
        offsets = [r['offset'] for r in located]
        areas = [r['areas'] for r in located]
        summaries = aggregate_by_offset(areas, offsets, self.offset_buckets, self._summarize)
        counts = aggregate_by_offset(areas, offsets, self.offset_buckets, reduce=len)
        keys = list(next(iter(summaries.values())))
        keys.sort(key=lambda k: (k != 'mIoU', k == 'aAcc'))  # mIoU first, aAcc last
        for key in keys:
            metrics[f'offset_curve/{key}'] = {label: s[key] for label, s in summaries.items()}
        metrics['offset_curve/num_frames'] = counts
        if self.ci_resamples:
            units = [
                ('frame', i) if r['video_id'] is None else _LENGTH.sub('', str(r['video_id']))
                for i, r in enumerate(located)
            ]
            ci = bootstrap_by_offset(
                areas, offsets, units, self.offset_buckets, self._summarize, n=self.ci_resamples
            )
            for key in keys:
                metrics[f'offset_curve_ci/{key}'] = {
                    label: [round(lo, 2), round(hi, 2)] for label, (lo, hi) in ci[key].items()
                }
        table = '\n'.join(
            f'    {label:>6} {counts[label]:>7} {summaries[label].get("mIoU", float("nan")):>7}'
            for label in summaries
        )
        MMLogger.get_current_instance().info(
            f'mIoU by frame offset:\n    offset  frames    mIoU\n{table}'
        )
        return metrics
