"""Streaming AP (sAP): COCO AP of the predictions available when each frame must be answered.

Li, Wang, Ramanan, *Towards Streaming Perception* (ECCV 2020), Sec. 3: every ground-truth frame
is paired with the latest output finished by its time (:mod:`.streaming_pairs`, the reference's
rule) and the pairs are scored with COCO AP, as the reference evaluation (github ``mtli/sAP``,
``det/streaming_eval.py``) does: pycocotools' ``COCOeval`` at its default parameters
(``maxDets`` 1, 10, 100, every category of the annotation), boxes converted from
``x1, y1, x2, y2`` to ``x, y, w, h`` as ``w = x2 - x1``; ``sAP`` is ``stats[0]``, ``sAP_50``
``stats[1]``.

:func:`coco_streaming_ap` scores recorded outputs, :func:`evaluate_record` a record file against
an Argoverse-HD-style annotation (the CLI ``tools/analysis_tools/eval_streaming_record.py``),
:func:`realtime_streaming_ap` per-frame predictions under a simulated real-time schedule (the
entry point for a test loop).

Deviation from the reference, on input it does not handle: an evaluation without a single
detection scores 0 where ground truth exists (the reference's ``loadRes([])`` fails).

Plain numpy and pycocotools (no OpenMMLab import).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mmvideoeq.streaming.realtime import LatencyModel, RealtimeTrace
from mmvideoeq.streaming.record import SequenceRecord, load_record

from .streaming_pairs import StreamCounts, StreamPairing, pair_stream, simulate_pairs

__all__ = [
    'StreamCounts',
    'StreamPairing',
    'StreamingAPResult',
    'pair_stream',
    'simulate_pairs',
    'coco_streaming_ap',
    'realtime_streaming_ap',
    'annotation_sequences',
    'evaluate_record',
    'SAP_STAT_NAMES',
]

SAP_STAT_NAMES = (
    'sAP', 'sAP_50', 'sAP_75', 'sAP_s', 'sAP_m', 'sAP_l',
    'sAR_1', 'sAR_10', 'sAR_100', 'sAR_s', 'sAR_m', 'sAR_l',
)  # fmt: skip


@dataclass
class StreamingAPResult:
    """Streaming AP and the association counts.

    Attributes:
        stats (list[float]): The 12 ``COCOeval.stats`` of the paired predictions (fractions;
            -1 where undefined, pycocotools' convention); names in ``SAP_STAT_NAMES``.
        counts (StreamCounts): Summed over all sequences.
        per_sequence (dict[str, StreamCounts]): Per sequence name.
        fps (float): Frame rate used.
        eta (float): ``eta`` used.
        traces (dict[str, RealtimeTrace]): The simulated outputs per sequence (simulation
            only; empty for recorded outputs).
    """

    stats: list[float]
    counts: StreamCounts
    per_sequence: dict[str, StreamCounts]
    fps: float
    eta: float
    traces: dict[str, RealtimeTrace] = field(default_factory=dict)

    @property
    def sap(self) -> float:
        """sAP: AP at IoU 0.50:0.95 (``stats[0]``)."""
        return self.stats[0]

    @property
    def sap50(self) -> float:
        """sAP@50: AP at IoU 0.5 (``stats[1]``)."""
        return self.stats[1]

    def as_dict(self, traces: bool = True) -> dict[str, Any]:
        """JSON-serialisable: the named stats, counts, per-sequence counts, and the traces."""
        out: dict[str, Any] = dict(zip(SAP_STAT_NAMES, self.stats))
        out.update(
            fps=self.fps,
            eta=self.eta,
            counts=self.counts.as_dict(),
            per_sequence={k: v.as_dict() for k, v in self.per_sequence.items()},
        )
        if traces and self.traces:
            out['traces'] = {k: v.as_dict() for k, v in self.traces.items()}
        return out


def _load_gt(coco_gt: COCO | Mapping | str | os.PathLike) -> COCO:
    if isinstance(coco_gt, COCO):
        return coco_gt
    gt = COCO()
    if isinstance(coco_gt, Mapping):
        gt.dataset = dict(coco_gt)
    else:
        path = os.fspath(coco_gt)
        if not os.path.isfile(path):
            raise FileNotFoundError(f'annotation file {path} does not exist')
        try:
            with open(path) as f:
                gt.dataset = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f'annotation file {path} is not valid JSON: {err}') from None
    if not isinstance(gt.dataset, dict) or not isinstance(gt.dataset.get('images'), list):
        raise ValueError(
            f'annotation {coco_gt if not isinstance(coco_gt, Mapping) else "dict"} is not a COCO '
            'annotation (a JSON object with "images", "annotations", "categories")'
        )
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            gt.createIndex()
    except (KeyError, TypeError) as err:
        raise ValueError(f'annotation {coco_gt}: malformed COCO entries ({err!r})') from None
    return gt


def _fields(pred: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(bboxes (N, 4), scores (N,), labels (N,))`` of a dict / ``InstanceData`` / tuple."""
    if isinstance(pred, (tuple, list)):
        values = pred[:3]
    elif isinstance(pred, Mapping):
        values = [pred[k] for k in ('bboxes', 'scores', 'labels')]
    else:
        values = [getattr(pred, k) for k in ('bboxes', 'scores', 'labels')]
    out = []
    for v in values:
        if hasattr(v, 'detach'):
            v = v.detach().cpu().numpy()
        out.append(np.asarray(v))
    boxes = out[0].reshape(-1, 4) if out[0].size else np.zeros((0, 4))
    return boxes, out[1].reshape(-1), out[2].reshape(-1)


def _coco_stats(
    gt: COCO,
    dets: list[dict],
    img_ids: list[int],
    cat_ids: Sequence[int] | None,
    max_dets: Sequence[int],
) -> list[float]:
    with contextlib.redirect_stdout(io.StringIO()):
        if dets:
            dt = gt.loadRes(dets)
        else:  # pycocotools' loadRes fails on an empty list: an empty result set
            dt = COCO()
            dt.dataset = dict(
                images=list(gt.dataset.get('images', [])),
                categories=list(gt.dataset.get('categories', [])),
                annotations=[],
            )
            dt.createIndex()
        coco_eval = COCOeval(gt, dt, 'bbox')
        coco_eval.params.imgIds = list(img_ids)
        if cat_ids is not None:
            coco_eval.params.catIds = list(cat_ids)
        coco_eval.params.maxDets = list(max_dets)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return [float(v) for v in coco_eval.stats]


def _paired_detections(
    frame_ids: Sequence[int],
    paired: Sequence[Any],
    cat_ids: Sequence[int] | None,
) -> list[dict]:
    dets = []
    for img_id, pred in zip(frame_ids, paired):
        if pred is None:
            continue
        boxes, scores, labels = _fields(pred)
        for box, score, label in zip(boxes, scores, labels):
            label = int(label)
            if cat_ids is not None and not 0 <= label < len(cat_ids):
                raise ValueError(f'label {label} has no category id (cat_ids has {len(cat_ids)})')
            dets.append(
                dict(
                    image_id=img_id,
                    bbox=[
                        float(box[0]),
                        float(box[1]),
                        float(box[2] - box[0]),
                        float(box[3] - box[1]),
                    ],  # fmt: skip
                    score=float(score),
                    category_id=label if cat_ids is None else int(cat_ids[label]),
                )
            )
    return dets


def _check_max_dets(max_dets: Sequence[int]) -> list[int]:
    if len(max_dets) != 3:
        raise ValueError(f'max_dets must have 3 entries (COCO maxDets), got {list(max_dets)}')
    return [int(m) for m in max_dets]


def coco_streaming_ap(
    coco_gt: COCO | Mapping | str | os.PathLike,
    sequences: Mapping[str, tuple[Sequence[int], SequenceRecord]],
    *,
    fps: float,
    eta: float = 0.0,
    cat_ids: Sequence[int] | None = None,
    max_dets: Sequence[int] = (1, 10, 100),
) -> StreamingAPResult:
    """Streaming AP of recorded outputs (the reference's ``streaming_eval.py``).

    Args:
        coco_gt (COCO | Mapping | str | PathLike): The ground truth: a pycocotools ``COCO``
            (mmdet's wrapper too), its dataset dict, or a COCO JSON file.
        sequences (Mapping[str, tuple[Sequence[int], SequenceRecord]]): Sequence name ->
            (image ids of its ground-truth frames in frame order, its recorded outputs).
        fps (float): Frame rate of the evaluation.
        eta (float): See :func:`pair_stream`. Defaults to 0.
        cat_ids (Sequence[int], optional): ``cat_ids[label]`` is the category id of a label,
            and only those categories are evaluated (mmdet's convention). None (default, the
            reference's): labels are category ids and every category is evaluated.
        max_dets (Sequence[int]): COCO ``maxDets``. Defaults to the reference's (1, 10, 100);
            mmdet's ``CocoMetric`` uses (100, 300, 1000).

    Returns:
        StreamingAPResult: sAP, sAP@50 and the other COCO stats, and the counts.

    Raises:
        ValueError: Malformed outputs (the message names the sequence).
    """
    gt = _load_gt(coco_gt)
    max_dets = _check_max_dets(max_dets)
    dets: list[dict] = []
    img_ids: list[int] = []
    per_sequence: dict[str, StreamCounts] = {}
    for name, (frame_ids, record) in sequences.items():
        try:
            pairing = pair_stream(
                record.timestamps, record.input_fidx, len(frame_ids), fps=fps, eta=eta
            )
            outputs = list(zip(record.bboxes, record.scores, record.labels))
            paired = [None if k is None else outputs[k] for k in pairing.output_index]
            dets += _paired_detections(frame_ids, paired, cat_ids)
        except ValueError as err:
            raise ValueError(f'sequence {name!r}: {err}') from None
        per_sequence[name] = pairing.counts
        img_ids += list(frame_ids)
    counts = sum(per_sequence.values(), StreamCounts())
    stats = _coco_stats(gt, dets, img_ids, cat_ids, max_dets)
    return StreamingAPResult(
        stats=stats, counts=counts, per_sequence=per_sequence, fps=float(fps), eta=float(eta)
    )


def realtime_streaming_ap(
    coco_gt: COCO | Mapping | str | os.PathLike,
    img_ids: Sequence[Sequence[int]],
    predictions: Sequence[Sequence[Any]],
    latency: float | Sequence[float | Sequence[float]] | LatencyModel,
    *,
    fps: float,
    eta: float = 0.0,
    names: Sequence[str] | None = None,
    cat_ids: Sequence[int] | None = None,
    max_dets: Sequence[int] = (1, 10, 100),
) -> StreamingAPResult:
    """Streaming AP of per-frame predictions under a simulated real-time schedule.

    The entry point for a test loop: per video, the predictions of every frame (computed
    offline, in frame order) and the latency of every frame; the reference simulator decides
    which frames the worker would have processed and when their outputs would have been ready,
    the reference pairing picks, for every ground-truth frame, the output available then, and
    COCO AP scores the pairs. Deterministic given the latencies.

    Args:
        coco_gt (COCO | Mapping | str | PathLike): The ground truth (see
            :func:`coco_streaming_ap`).
        img_ids (Sequence[Sequence[int]]): Per video, the image id of each frame in frame
            order (frame ``i`` arrives at ``i / fps``).
        predictions (Sequence[Sequence]): Per video, one prediction per frame: a dict /
            ``InstanceData`` with ``bboxes`` ``(N, 4)`` ``x1, y1, x2, y2``, ``scores`` ``(N,)``,
            ``labels`` ``(N,)`` (tensors or arrays), or a tuple in that order. A frame the
            worker does not process is never read.
        latency: ms per frame for every frame (a number, e.g. from a
            :class:`~mmvideoeq.streaming.realtime.LatencyTable`); one entry per video, each ms
            or a list of ms per frame (the measured trace); or a ``LatencyModel`` (e.g. a
            pipelined runner's).
        fps (float): Frame rate of the playback and of the evaluation.
        eta (float): See :func:`pair_stream`. Defaults to 0.
        names (Sequence[str], optional): Video names for the counts and traces (default
            ``'0'``, ``'1'``, ...).
        cat_ids (Sequence[int], optional): ``cat_ids[label]`` = category id (mmdet's
            convention, e.g. ``VIDMetric``'s matched ids); None: labels are category ids.
        max_dets (Sequence[int]): COCO ``maxDets`` (default the reference's (1, 10, 100)).

    Returns:
        StreamingAPResult: ``sap``, ``sap50``, all 12 stats, the counts, and per video the
        trace used (``traces``; ``as_dict()`` gives them in JSON form for results.json).
    """
    if len(img_ids) != len(predictions):
        raise ValueError(
            f'{len(img_ids)} videos of image ids but {len(predictions)} of predictions'
        )
    for v, (ids, preds) in enumerate(zip(img_ids, predictions)):
        if len(ids) != len(preds):
            raise ValueError(f'video {v}: {len(ids)} image ids but {len(preds)} predictions')
    names = [str(v) for v in range(len(img_ids))] if names is None else list(names)
    if len(names) != len(img_ids):
        raise ValueError(f'{len(names)} names for {len(img_ids)} videos')
    gt = _load_gt(coco_gt)
    max_dets = _check_max_dets(max_dets)
    pairs = simulate_pairs([len(ids) for ids in img_ids], latency, fps=fps, eta=eta)
    dets: list[dict] = []
    for ids, preds, (_, pairing) in zip(img_ids, predictions, pairs):
        dets += _paired_detections(ids, pairing.take(preds, None), cat_ids)
    per_sequence = {name: pairing.counts for name, (_, pairing) in zip(names, pairs)}
    stats = _coco_stats(gt, dets, [i for ids in img_ids for i in ids], cat_ids, max_dets)
    return StreamingAPResult(
        stats=stats,
        counts=sum(per_sequence.values(), StreamCounts()),
        per_sequence=per_sequence,
        fps=float(fps),
        eta=float(eta),
        traces={name: trace for name, (trace, _) in zip(names, pairs)},
    )


def annotation_sequences(dataset: Mapping, where: str = 'annotation') -> dict[str, list[int]]:
    """The frames of every sequence of an Argoverse-HD-style COCO annotation.

    The annotation lists sequence names in ``sequences`` (and their folders in ``seq_dirs``);
    every image has ``sid``, the index of its sequence, and optionally ``fid``, its frame
    index. As the reference, the frames of a sequence are its images in file order.

    Args:
        dataset (Mapping): The annotation (parsed JSON).
        where (str): Names the file in error messages.

    Returns:
        dict[str, list[int]]: Sequence name -> image ids in frame order.

    Raises:
        ValueError: No ``sequences``, an image without a valid ``sid``, duplicate image ids,
            or ``fid`` not increasing in file order within a sequence.
    """
    seqs = dataset.get('sequences')
    if not isinstance(seqs, list) or not all(isinstance(s, str) for s in seqs):
        raise ValueError(
            f'{where} has no "sequences" list of names: streaming evaluation needs an '
            'Argoverse-HD-style annotation ("sequences", "seq_dirs", images with "sid")'
        )
    if len(set(seqs)) != len(seqs):
        raise ValueError(f'{where}: sequence names repeat in "sequences"')
    frames: dict[str, list[int]] = {s: [] for s in seqs}
    last_fid: dict[int, int] = {}
    seen: set = set()
    for k, img in enumerate(dataset.get('images', [])):
        sid = img.get('sid') if isinstance(img, Mapping) else None
        if isinstance(sid, bool) or not isinstance(sid, int) or not 0 <= sid < len(seqs):
            raise ValueError(
                f'{where}: image {k} (id {img.get("id") if isinstance(img, Mapping) else "?"}) '
                f'has sid {sid!r}; every image needs "sid", an index into the '
                f'{len(seqs)} sequences'
            )
        if 'id' not in img:
            raise ValueError(f'{where}: image {k} has no "id"')
        if img['id'] in seen:
            raise ValueError(f'{where}: image id {img.get("id")} appears twice')
        seen.add(img['id'])
        fid = img.get('fid')
        if fid is not None:
            if sid in last_fid and fid <= last_fid[sid]:
                raise ValueError(
                    f'{where}: image id {img["id"]} has fid {fid} after fid {last_fid[sid]} in '
                    f'sequence {seqs[sid]!r}; list the frames of a sequence in frame order'
                )
            last_fid[sid] = fid
        frames[seqs[sid]].append(img['id'])
    return frames


def evaluate_record(
    ann_file: str | os.PathLike,
    record: str | os.PathLike,
    *,
    fps: float,
    eta: float = 0.0,
    max_dets: Sequence[int] = (1, 10, 100),
) -> StreamingAPResult:
    """Streaming AP of a recorded real-time run (``tools/analysis_tools/eval_streaming_record.py``).

    Args:
        ann_file (str | PathLike): Argoverse-HD-style COCO annotation (``sequences``, images
            with ``sid``); see :func:`annotation_sequences`.
        record (str | PathLike): A record file or a directory of ``<sequence>.json`` records
            (:func:`mmvideoeq.streaming.record.load_record`), labels being category ids of
            ``ann_file``.
        fps (float): Frame rate of the evaluation.
        eta (float): See :func:`pair_stream`. Defaults to 0.
        max_dets (Sequence[int]): COCO ``maxDets``. Defaults to the reference's (1, 10, 100).

    Returns:
        StreamingAPResult: sAP and the counts, per sequence too.

    Raises:
        FileNotFoundError: A file is missing.
        ValueError: Malformed annotation or record (the message names the file), a sequence
            without record, record sequences the annotation does not have, or labels that are
            not category ids of the annotation.
    """
    ann_file = os.fspath(ann_file)
    record = os.fspath(record)
    gt = _load_gt(ann_file)
    frames = annotation_sequences(gt.dataset, ann_file)
    outputs = load_record(record, names=list(frames))
    missing = [s for s in frames if s not in outputs]
    extra = [s for s in outputs if s not in frames]
    if missing or extra:
        raise ValueError(
            f'record {record} does not match {ann_file}: sequences without record '
            f'{missing[:10]}, record sequences not in the annotation {extra[:10]}'
        )
    cat_ids = set(gt.getCatIds())
    for name, rec in outputs.items():
        labels = {int(v) for lab in rec.labels for v in lab}
        unknown = sorted(labels - cat_ids)
        if unknown:
            raise ValueError(
                f'record {record}, sequence {name!r}: labels {unknown[:10]} are not category ids '
                f'of {ann_file} ({sorted(cat_ids)}); record category ids, not class indices'
            )
    try:
        return coco_streaming_ap(
            gt, {s: (frames[s], outputs[s]) for s in frames}, fps=fps, eta=eta, max_dets=max_dets
        )
    except ValueError as err:
        raise ValueError(f'record {record}: {err}') from None
