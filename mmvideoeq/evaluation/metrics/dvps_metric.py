"""Registered DVPS metrics: DVPQ (with PQ and VPQ), STQ / DSTQ and depth errors, by frame offset.

Thin mmengine metrics over :mod:`mmvideoeq.evaluation.functional`. Each reads, from every data
sample (a ``SegDataSample`` as a dict, or a plain dict):

* ``pred_panoptic`` / ``gt_panoptic``: ``(1, H, W)`` or ``(H, W)`` ids ``class * label_divisor +
  instance`` (``PixelData``, tensor or array);
* ``pred_depth`` / ``gt_depth``: the same shapes, metres, ground truth 0 where invalid;
* metainfo ``video_id``, ``frame_id`` and, when a streaming loop sets it, ``frame_offset``.

``process`` keeps a few small per-frame statistics (pair histograms, tube counts, depth sums,
see the functional modules), never the maps; ``compute_metrics`` orders the frames by
``(video_id, frame_id)`` and evaluates. A frame whose metainfo carries a skip reason
(:data:`mmvideoeq.structures.SKIP_KEY`: a file the dataset could not read, a diverged solve) is
left out and counted (``num_skipped_frames``, listed in the log), as in the VID metric; in a
(D)VPQ window it counts as a frame without labelled pixels, so its neighbours still form
windows. When every frame is skipped only the counts are returned. Every metric also reports
``offset_curve/<key>`` (the frames, or windows starting at frames, of each frame-offset bucket;
buckets and offsets as in :mod:`.frame_offset`) for the streaming loop's curves, and
``offset_curve_ci/<key>``: ``{bucket label: [lo, hi]}``, the 95 % percentile bootstrap interval
over videos (:func:`.bootstrap_by_offset`, ``ci_resamples`` resamples, seed 0). Values are
percentages except the depth errors (their own units, see :mod:`.depth_metrics`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger
from mmengine.structures import BaseDataElement

from mmvideoeq.registry import METRICS
from mmvideoeq.structures import skip_reason

from ..functional import (
    DVPQ_PROTOCOLS,
    DVPQProtocol,
    PairCounts,
    PQStats,
    check_panoptic,
    dvpq_from_pairs,
    frame_pairs,
    pq_summary,
    vpq_stats,
    window_starts,
)
from ..functional.video_panoptic_quality import _means
from .frame_offset import OffsetBuckets, bootstrap_by_offset, check_ci_resamples, frame_offsets

__all__ = ['DVPQMetric', 'sample_array', 'build_protocol']


def sample_array(sample: Any, key: str) -> np.ndarray | None:
    """``sample[key]`` as a numpy ``(H, W)`` array (``None`` if absent).

    Accepts a ``PixelData``, its ``to_dict()`` (``{'data': ...}``), a tensor or an array, with
    or without a leading dimension of 1.
    """
    value = sample.get(key) if isinstance(sample, dict) else getattr(sample, key, None)
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get('data')
    elif isinstance(value, BaseDataElement):
        value = value.data
    if hasattr(value, 'detach'):
        value = value.detach().cpu().numpy()
    value = np.asarray(value)
    if value.ndim == 3 and value.shape[0] == 1:
        value = value[0]
    if value.ndim != 2:
        raise ValueError(f'{key} must be (H, W) or (1, H, W), got shape {value.shape}')
    return value


def build_protocol(protocol: str | None, **overrides) -> DVPQProtocol:
    """A :class:`DVPQProtocol` from a named one with explicit fields replaced.

    Args:
        protocol (str, optional): ``'cityscapes_dvps'``, ``'semkitti_dvps'`` or ``None`` (then
            ``num_classes``, ``label_divisor``, ``ignore_label``, ``thing_ids`` and ``windows``
            must be given).
        **overrides: Fields of :class:`DVPQProtocol`; ``None`` values are ignored.

    Returns:
        DVPQProtocol: The protocol.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    for key in ('thing_ids', 'windows', 'thresholds'):
        if key in given:
            given[key] = tuple(given[key])
    if protocol is None:
        try:
            return DVPQProtocol(**given)
        except TypeError as err:
            raise ValueError(
                'without a protocol, give num_classes, label_divisor, ignore_label, thing_ids '
                f'and windows ({err})'
            ) from None
    if protocol not in DVPQ_PROTOCOLS:
        raise ValueError(
            f'protocol must be one of {sorted(DVPQ_PROTOCOLS)} or None, got {protocol!r}'
        )
    base = DVPQ_PROTOCOLS[protocol]
    return DVPQProtocol(**{**base.__dict__, **given})


def _frame_meta(sample: dict) -> dict:
    for key in ('video_id', 'frame_id'):
        if sample.get(key) is None:
            raise KeyError(
                f"DVPS metrics need '{key}' in every data sample's metainfo (keep it in "
                "PackDVPSInputs' meta_keys)"
            )
    return dict(
        video_id=sample['video_id'],
        frame_id=int(sample['frame_id']),
        frame_offset=sample.get('frame_offset'),
        name=str(sample.get('img_path', f"{sample['video_id']}/{sample['frame_id']}")),
    )


def _ordered(results: Sequence[dict]) -> list[dict]:
    """Records sorted by ``(video_id, frame_id)``, checking that no frame appears twice."""
    records = sorted(results, key=lambda r: (str(r['video_id']), r['frame_id']))
    for a, b in zip(records, records[1:]):
        if (str(a['video_id']), a['frame_id']) == (str(b['video_id']), b['frame_id']):
            raise ValueError(f"frame {a['frame_id']} of video {a['video_id']} was evaluated twice")
    if not records:
        raise ValueError('no frame was evaluated')
    return records


def _offsets(records: Sequence[dict]) -> list[int]:
    return frame_offsets(
        [r['video_id'] for r in records],
        [r['frame_id'] for r in records],
        [r['frame_offset'] for r in records],
    )


def _check_same_size(name: str, **arrays) -> None:
    shapes = {k: v.shape for k, v in arrays.items() if v is not None}
    if len(set(shapes.values())) > 1:
        raise ValueError(f'{name}: maps of different sizes {shapes}; resize the prediction')


class _DVPSBase(BaseMetric):
    """Offset buckets, the by-offset loop and its bootstrap shared by the three metrics."""

    def __init__(
        self, offset_buckets, collect_device: str, prefix: str | None, ci_resamples: int = 200
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.offset_buckets = (
            None if offset_buckets is None else OffsetBuckets.build(offset_buckets)
        )
        self.ci_resamples = check_ci_resamples(ci_resamples)

    def _ci(self, records: list[dict], items: list, reduce) -> dict:
        """``{key: {bucket label: [lo, hi]}}``: bootstrap intervals over videos of the values
        ``reduce`` (items of a bucket -> ``{key: value}``) gives; ``{}`` when off."""
        if self.offset_buckets is None or not self.ci_resamples:
            return {}
        videos = [str(r['video_id']) for r in records]
        return bootstrap_by_offset(
            items, _offsets(records), videos, self.offset_buckets, reduce, n=self.ci_resamples
        )

    def _by_offset(self, records: list[dict], evaluate) -> dict:
        """``{bucket label: evaluate(positions)}`` for the non-empty buckets, and counts."""
        if self.offset_buckets is None:
            return {}
        offsets = _offsets(records)
        groups: dict = {}
        for pos, off in enumerate(offsets):
            groups.setdefault(self.offset_buckets.index(off), []).append(pos)
        labels = self.offset_buckets.labels
        return {labels[b]: evaluate(groups[b], offsets) for b in sorted(groups)}

    def _skipped(self, sample: Any) -> bool:
        """Store a skipped frame's record (its reason) and say whether it was skipped."""
        reason = skip_reason(sample)
        if reason is not None:
            self.results.append(dict(_frame_meta(sample), skipped=reason))
        return reason is not None

    def _split(self, results: Sequence[dict]) -> tuple[list[dict], dict]:
        """The evaluated records and the counts; logs the skipped frames."""
        done = [r for r in results if 'skipped' not in r]
        skipped = [r for r in results if 'skipped' in r]
        if skipped:
            shown = '; '.join(f"{r['name']} ({r['skipped']})" for r in skipped[:10])
            MMLogger.get_current_instance().warning(
                f'{type(self).__name__}: {len(skipped)} frame(s) skipped, not evaluated: {shown}'
                + (' ...' if len(skipped) > 10 else '')
            )
        return done, dict(num_frames=len(done), num_skipped_frames=len(skipped))


@METRICS.register_module()
class DVPQMetric(_DVPSBase):
    """PQ, VPQ^k and DVPQ^k_lambda (thesis Eqs. 7.1, 7.2, 7.5), overall and by frame offset.

    Args:
        protocol (str, optional): ``'cityscapes_dvps'`` (k = 1..4, per-sequence windows,
            epsilon 0) or ``'semkitti_dvps'`` (k = 1, 5, 10, 20, global windows, epsilon
            1e-10); both lambda = 0.5, 0.25, 0.1 and ViP-DeepLab's averaging. ``None``: give
            the fields below.
        num_classes, label_divisor, ignore_label, thing_ids, windows, thresholds, window_scope,
        average, epsilon, fp_void: override the protocol's field (see
            :class:`~mmvideoeq.evaluation.functional.DVPQProtocol`). ``thresholds=()``
            evaluates PQ / VPQ only (no depth needed).
        offset_buckets (int | Sequence[int], optional): Buckets of the by-offset curves (a
            window belongs to the bucket of its first frame); ``None``: no curves. Curves
            average over the classes present in the bucket (``average='valid'``).
        collect_device (str): ``'cpu'`` or ``'gpu'``.
        prefix (str, optional): Key prefix (default ``'dvps'``).
        ci_resamples (int): Bootstrap resamples of the curves' intervals; 0: none. Each
            window's statistics are computed once and attributed to its first frame; a
            resample sums the statistics of its windows (a video drawn twice counts twice).

    Returns (``compute_metrics``): ``PQ``, ``VPQ``, ``DVPQ`` and their ``_th`` / ``_st``,
    ``VPQ_k{k}``, ``DVPQ_k{k}_l{lambda}`` (percent), ``per_class/PQ`` ``{class: PQ}`` at k = 1,
    ``offset_curve/DVPQ`` (or ``VPQ``), ``offset_curve/PQ``, ``offset_curve/num_frames`` and
    ``offset_curve_ci/DVPQ`` (or ``VPQ``), ``offset_curve_ci/PQ``.
    """

    default_prefix = 'dvps'

    def __init__(
        self,
        protocol: str | None = 'cityscapes_dvps',
        *,
        num_classes: int | None = None,
        label_divisor: int | None = None,
        ignore_label: int | None = None,
        thing_ids: Sequence[int] | None = None,
        windows: Sequence[int] | None = None,
        thresholds: Sequence[float] | None = None,
        window_scope: str | None = None,
        average: str | None = None,
        epsilon: float | None = None,
        fp_void: str | None = None,
        offset_buckets: int | Sequence[int] | None = 20,
        collect_device: str = 'cpu',
        prefix: str | None = None,
        ci_resamples: int = 200,
    ) -> None:
        super().__init__(offset_buckets, collect_device, prefix, ci_resamples)
        self.protocol = build_protocol(
            protocol, num_classes=num_classes, label_divisor=label_divisor,
            ignore_label=ignore_label, thing_ids=thing_ids, windows=windows,
            thresholds=thresholds, window_scope=window_scope, average=average,
            epsilon=epsilon, fp_void=fp_void,
        )  # fmt: skip
        self.last_result: dict = {}

    def frame_record(self, gt, pred, gt_depth=None, pred_depth=None, **meta) -> dict:
        """Check one frame and keep its pair histograms.

        Args:
            gt (np.ndarray): ``(H, W)`` ground-truth ids.
            pred (np.ndarray): ``(H, W)`` predicted ids.
            gt_depth (np.ndarray, optional): ``(H, W)`` ground-truth depth.
            pred_depth (np.ndarray, optional): ``(H, W)`` predicted depth.
            **meta: ``video_id``, ``frame_id``, ``frame_offset``, ``name`` (for errors).

        Returns:
            dict: The record ``process`` stores.
        """
        p, name = self.protocol, meta.get('name', '?')
        kw = dict(
            num_classes=p.num_classes, label_divisor=p.label_divisor, ignore_label=p.ignore_label
        )
        if gt is None or pred is None:
            raise KeyError(f'{name}: DVPQMetric needs gt_panoptic and pred_panoptic')
        if p.thresholds and (gt_depth is None or pred_depth is None):
            raise KeyError(f'{name}: DVPQ needs gt_depth and pred_depth (or thresholds=())')
        _check_same_size(name, gt=gt, pred=pred, gt_depth=gt_depth, pred_depth=pred_depth)
        check_panoptic(gt, name=f'{name} (ground truth)', **kw)
        check_panoptic(pred, name=f'{name} (prediction)', is_prediction=True, **kw)
        pairs = frame_pairs(
            gt, pred, gt_depth, pred_depth, thresholds=p.thresholds, void_id=p.void_id
        )
        return dict(meta, pairs=pairs)

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Store the pair histograms of each frame."""
        for sample in data_samples:
            if self._skipped(sample):
                continue
            self.results.append(
                self.frame_record(
                    sample_array(sample, 'gt_panoptic'),
                    sample_array(sample, 'pred_panoptic'),
                    sample_array(sample, 'gt_depth'),
                    sample_array(sample, 'pred_depth'),
                    **_frame_meta(sample),
                )
            )

    def compute_metrics(self, results: list) -> dict:
        """See the class docstring."""
        done, counts = self._split(results)
        if not done:
            return counts
        empty = PairCounts(*(np.zeros(0, np.int64) for _ in range(3)))
        no_pixels = {key: empty for key in (None, *map(float, self.protocol.thresholds))}
        records = _ordered([r if 'pairs' in r else dict(r, pairs=no_pixels) for r in results])
        frames = [r['pairs'] for r in records]
        seqs = [str(r['video_id']) for r in records]
        full = dvpq_from_pairs(frames, seqs, self.protocol)
        self.last_result = full
        scalars = {k: 100 * v for k, v in full.items() if k != 'stats' and not k.startswith('num_')}
        main = [k for k in ('DVPQ', 'VPQ', 'PQ') if k in scalars]  # first: what loops plot
        out = {k: scalars[k] for k in main + [k for k in scalars if k not in main]}
        out.update(counts)
        classes = (self.dataset_meta or {}).get('classes') or range(self.protocol.num_classes)
        stats_1 = full['stats'][self.protocol.windows[0], None]
        per_class = pq_summary(
            stats_1, average=self.protocol.average, epsilon=self.protocol.epsilon
        )
        out['per_class/PQ'] = {
            str(c): 100 * float(v) for c, v in zip(classes, per_class['per_class']['pq'])
        }
        curve_protocol = DVPQProtocol(**{**self.protocol.__dict__, 'average': 'valid'})

        def evaluate(positions, offsets):
            chosen = set(positions)
            res = dvpq_from_pairs(frames, seqs, curve_protocol, start_filter=chosen.__contains__)
            return res, len(positions)

        curves = self._by_offset(records, evaluate)
        if curves:
            main = 'DVPQ' if self.protocol.thresholds else 'VPQ'
            keys = [k for k in (main, 'PQ') if k in next(iter(curves.values()))[0]]
            for key in keys:
                out[f'offset_curve/{key}'] = {b: 100 * r[key] for b, (r, _) in curves.items()}
            out['offset_curve/num_frames'] = {b: n for b, (_, n) in curves.items()}
            if self.ci_resamples:
                windows = self.window_items(frames, seqs)
                ci = self._ci(records, windows, self.window_reducer(curve_protocol, keys))
                out.update({f'offset_curve_ci/{key}': ci[key] for key in keys})
        self._log(full)
        return out

    def window_items(self, frames: list[dict], seqs: list[str]) -> list[dict]:
        """Per frame, the PQ statistics of every window that starts there.

        Args:
            frames (list[dict]): Per frame, :func:`frame_pairs`' output, in evaluation order.
            seqs (list[str]): Sequence of each frame.

        Returns:
            list[dict]: Per frame ``{(k, lambda): PQStats}`` (``lambda`` ``None``: no depth)
            for each window length ``k`` whose window starts at the frame.
        """
        p = self.protocol
        items: list[dict] = [{} for _ in frames]
        for k in p.windows:
            for start in window_starts(seqs, k, p.window_scope):
                for lam in (None, *map(float, p.thresholds)):
                    items[start][k, lam] = vpq_stats(
                        [f[lam] for f in frames], k, starts=[start],
                        num_classes=p.num_classes, label_divisor=p.label_divisor,
                        ignore_label=p.ignore_label, fp_void=p.fp_void,
                    )  # fmt: skip
        return items

    @staticmethod
    def window_reducer(protocol: DVPQProtocol, keys: Sequence[str]):
        """``window items -> {key: percent}``: the values :func:`dvpq_from_pairs` gives for the
        windows of the items (summed statistics, then the protocol's PQ and means over k)."""

        def reduce(items: list[dict]) -> dict:
            cells, present = {}, []
            for k in protocol.windows:
                if any((k, None) in item for item in items):
                    present.append(k)
                for lam in (None, *map(float, protocol.thresholds)):
                    total = PQStats.zeros(protocol.num_classes)
                    for item in items:
                        if (k, lam) in item:
                            total = total + item[k, lam]
                    cells[k, lam] = pq_summary(
                        total, thing_ids=protocol.thing_ids, average=protocol.average,
                        epsilon=protocol.epsilon,
                    )  # fmt: skip
            means = _means(cells, protocol, present)
            return {key: 100 * means[key] for key in keys}

        return reduce

    def _log(self, full: dict) -> None:
        p = self.protocol
        rows = [f"{'':>8}" + ''.join(f'{"k=" + str(k):>9}' for k in p.windows)]
        for lam in (None, *p.thresholds):
            cells = [
                full[f'VPQ_k{k}'] if lam is None else full[f'DVPQ_k{k}_l{lam:g}'] for k in p.windows
            ]
            label = 'no depth' if lam is None else f'l={lam:g}'
            rows.append(f'{label:>8}' + ''.join(f'{100 * c:9.2f}' for c in cells))
        MMLogger.get_current_instance().info(
            '(D)VPQ (%) by window and depth threshold:\n' + '\n'.join(rows)
        )
