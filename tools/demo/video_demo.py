"""Annotate a video with StreamDEQ predictions and per-frame latency.

Example (the bundled detector knows the classes of the bundled benchmark: horse, domestic_cat,
airplane and zebra; it was not trained on people, cars or bicycles)::

    make benchmark-data      # renders data/bundled (a few seconds)
    python tools/demo/video_demo.py data/bundled/ILSVRC/Data/VID/val/ILSVRC2015_val_00000000 \
        configs/streamdeq_vid/faster-rcnn_mdeq-tiny-sur8_16e_bundled-vid.py \
        checkpoints/faster-rcnn_mdeq-tiny-sur8_16e_bundled-vid.pth --iters 2 --out demo/out.mp4

The input is a video file or a folder of frames (sorted by name). Each frame is solved with
``--iters`` solver steps started from the previous frame's state (``StreamingInferencer``);
``--cold`` starts every frame from zeros with the same budget and ``--full-solve`` runs the
model's full solve on every frame, for comparison. Boxes with class names (detectors), a class
overlay (segmentors) or panoptic tracks, depth and a legend (ViP-DeepLab) are drawn with the
frame's latency and solver cost; the names come from the checkpoint (``meta.dataset_meta``).

Model size: by default every frame is resized (aspect ratio kept) to the size the model is
tested at: the ``Resize`` of the config's test pipeline, or, when the test pipeline has none
(the ViP-DeepLab configs evaluate at the dataset's size), the ``Resize``/``RandomResize`` scale
of its training pipeline. ``--keep-input-size`` runs the model at the input's own size instead.
The size used is printed at the start; the output video always keeps the input's size.

The written video is read back and its frames counted; a file with fewer readable frames than
were written (a full disk, a codec that failed) is an error, not a success.
"""

import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.utils import ProgressBar  # noqa: E402

from mmvideoeq.apis import StreamingInferencer  # noqa: E402
from mmvideoeq.utils.cli import CLIError, cli_main, require_file  # noqa: E402
from mmvideoeq.visualization import draw_dvps_row  # noqa: E402

WRITERS = {'.mp4': 'mp4v', '.avi': 'MJPG'}
IMAGES = ('.jpg', '.jpeg', '.png', '.bmp')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='StreamDEQ video demo')
    p.add_argument('video', help='input video file, or a folder of frames')
    p.add_argument('config', help='model config')
    p.add_argument('checkpoint', help='checkpoint file')
    p.add_argument('--iters', type=int, default=2, help='solver steps per frame')
    mode = p.add_mutually_exclusive_group()
    mode.add_argument('--cold', action='store_true', help='no warm start: every frame from zeros')
    mode.add_argument('--full-solve', action='store_true', help="the model's full solve per frame")
    p.add_argument('--out', required=True, help='output video (.mp4 or .avi)')
    p.add_argument('--score-thr', type=float, default=0.3, help='box score threshold')
    p.add_argument('--max-frames', type=int, default=None, help='stop after this many frames')
    p.add_argument(
        '--keep-input-size',
        action='store_true',
        help="run the model at the input's size (default: resize each frame to the model's test "
        "size: the test pipeline's Resize, else the training pipeline's)",
    )
    p.add_argument('--device', default='cpu')
    return p.parse_args(argv)


RESIZES = ('Resize', 'RandomResize')


def _is_resize(t: dict) -> bool:
    return str(t.get('type', '')).split('.')[-1] in RESIZES and 'scale' in t


def _pipeline(cfg: Config, split: str) -> list:
    ds = cfg.get(f'{split}_dataloader', {}).get('dataset', {})
    while 'pipeline' not in ds and 'dataset' in ds:  # dataset wrappers
        ds = ds['dataset']
    return list(ds.get('pipeline', []))


def set_model_size(cfg: Config, keep_input_size: bool) -> str:
    """Make the test pipeline run at the model's test size (or the input's); say which.

    The model's test size is the scale of the test pipeline's ``Resize``; without one, the scale
    of the training pipeline's ``Resize``/``RandomResize``, inserted after the loader with
    ``keep_ratio=True``. ``keep_input_size`` removes every resize from the test pipeline.
    """
    test = _pipeline(cfg, 'test')
    if keep_input_size:
        cfg.test_dataloader.dataset.pipeline = [t for t in test if not _is_resize(t)]
        return 'the input size (--keep-input-size)'
    if any(_is_resize(t) for t in test):
        scale = next(t for t in test if _is_resize(t))['scale']
        return f"the test pipeline's resize to fit {scale[0]}x{scale[1]}"
    train = [t for t in _pipeline(cfg, 'train') if _is_resize(t)]
    if not train:
        return 'the input size (the config resizes nowhere)'
    scope = train[0]['type'].rpartition('.')[0]
    resize = dict(type=f'{scope}.Resize' if scope else 'Resize', scale=train[0]['scale'])
    resize['keep_ratio'] = True
    cfg.test_dataloader.dataset.pipeline = test[:1] + [resize] + test[1:]
    w, h = train[0]['scale']
    return f"the training pipeline's size, fit in {w}x{h} (--keep-input-size: the input size)"


def check_out(path: str) -> str:
    """The writer's fourcc for ``path``; creates its folder; refuses what cannot be written."""
    ext = osp.splitext(path)[1].lower()
    if ext not in WRITERS:
        raise CLIError(f'--out {path!r}: give a file name ending in {" or ".join(WRITERS)}')
    folder = osp.dirname(osp.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise CLIError(f'--out {path!r}: cannot create the folder {folder!r} ({err})') from None
    if not os.access(folder, os.W_OK):
        raise CLIError(f'--out {path!r}: the folder {folder!r} is not writable')
    return WRITERS[ext]


def readable_frames(path: str) -> int:
    """Frames that can be decoded from the video file ``path`` (read back one by one)."""
    cap = cv2.VideoCapture(path)
    count = 0
    try:
        while cap.isOpened():
            ok, _ = cap.read()
            if not ok:
                break
            count += 1
    finally:
        cap.release()
    return count


def check_written(path: str, written: int) -> None:
    """Raise :class:`CLIError` unless ``path`` holds ``written`` readable frames.

    ``cv2.VideoWriter.write`` reports nothing: a full disk or a failing codec leaves a short or
    unreadable file behind a "success". The file is re-opened and its frames counted.
    """
    if not osp.isfile(path) or osp.getsize(path) == 0:
        raise CLIError(f'the video writer produced no file at {path!r} (disk full? codec?)')
    readable = readable_frames(path)
    if readable != written:
        raise CLIError(
            f'{path!r} holds {readable} readable frame(s) of the {written} written (disk full, '
            'or the codec failed); the file is incomplete'
        )


def frames_of(source: str):
    """Yields BGR frames of a video file or of a folder of images; the frame count first."""
    if osp.isdir(source):
        files = sorted(f for f in os.listdir(source) if f.lower().endswith(IMAGES))
        if not files:
            raise CLIError(f'folder {source!r} holds no {"/".join(IMAGES)} frames')
        yield len(files), 25.0
        for f in files:
            img = cv2.imread(osp.join(source, f))
            if img is None:
                raise CLIError(f'cannot decode frame {osp.join(source, f)!r}')
            yield img
        return
    require_file(source, 'video file')
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        raise CLIError(f'cannot read video {source!r} (unsupported codec or not a video)')
    yield int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.get(cv2.CAP_PROP_FPS) or 25.0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        yield frame
    cap.release()


def _palette(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=(max(n, 1), 3), dtype=np.uint8)


def _text(img: np.ndarray, text: str, org: tuple[int, int], color, scale: float) -> None:
    """Text on a dark box, scaled with the frame (readable at 1080p), moved inside the frame."""
    thick = max(1, int(round(scale * 2)))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    if w > img.shape[1]:  # too wide for the frame: smaller
        scale *= img.shape[1] / (w + 2)
        thick = max(1, int(round(scale * 2)))
        (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    x = int(np.clip(org[0], 0, max(img.shape[1] - w - 1, 0)))
    y = int(np.clip(org[1], h, max(img.shape[0] - base - 1, h)))
    cv2.rectangle(img, (x, y - h - base), (x + w, y + base), (0, 0, 0), -1)
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)


def _colors(meta: dict) -> np.ndarray:
    """BGR colours per label: the dataset's palette, else a fixed random one."""
    palette = meta.get('palette')
    if isinstance(palette, (list, tuple)) and len(palette):
        return np.asarray(palette, dtype=np.uint8)[:, ::-1]
    return _palette(len(meta.get('classes') or ()))


def draw(
    frame: np.ndarray, pred, meta: dict, score_thr: float, text: str, label_divisor: int = 1000
) -> np.ndarray:
    """Draw boxes, a segmentation overlay or panoptic tracks + depth and a status line.

    Args:
        frame: BGR ``(H, W, 3)``.
        pred: The inferencer's prediction of the frame (at the frame's size).
        meta: ``dataset_meta`` (``classes``, ``palette``) of the model.
        score_thr: Boxes below it are not drawn.
        text: The status line.
        label_divisor: Panoptic label divisor (ViP-DeepLab).
    """
    out = frame.copy()
    classes = list(meta.get('classes') or ())
    colors = _colors(meta)
    scale = max(0.4, frame.shape[0] / 720 * 0.7)
    if 'pred_instances' in pred:
        inst = pred.pred_instances
        keep = inst.scores >= score_thr
        for box, label, score in zip(
            inst.bboxes[keep].tolist(), inst.labels[keep].tolist(), inst.scores[keep].tolist()
        ):
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            c = tuple(int(v) for v in colors[label % len(colors)])
            cv2.rectangle(out, (x1, y1), (x2, y2), c, max(2, int(round(scale * 3))))
            name = classes[label] if label < len(classes) else str(label)
            _text(out, f'{name} {score:.2f}', (x1, max(y1 - 4, int(20 * scale))), c, scale * 0.8)
    elif 'pred_panoptic' in pred:  # ViP-DeepLab: stable track colours | depth colour map
        pan = pred.pred_panoptic.data[0].cpu().numpy()
        depth = pred.pred_depth.data[0].cpu().numpy() if 'pred_depth' in pred else None
        out = draw_dvps_row(
            out[..., ::-1].copy(),
            pan,
            depth,
            label_divisor=label_divisor,
            palette=meta.get('palette'),
            classes=classes or None,
        )
        out = np.ascontiguousarray(out[..., ::-1])
    elif 'pred_sem_seg' in pred:
        seg = pred.pred_sem_seg.data[0].cpu().numpy()
        if seg.shape != out.shape[:2]:
            seg = cv2.resize(seg.astype(np.int32), out.shape[1::-1], cv2.INTER_NEAREST)
        overlay = colors[seg % len(colors)]
        out = cv2.addWeighted(out, 0.5, overlay, 0.5, 0)
    _text(out, text, (int(8 * scale), int(30 * scale)), (255, 255, 255), scale)
    return out


def _policy(args) -> dict:
    if args.full_solve:
        return dict(budget=dict(type='FullSolve'), warm=False)
    return dict(budget=dict(type='FixedBudget', iters=args.iters), warm=not args.cold)


@cli_main
def main():
    args = parse_args()
    require_file(args.config, 'config file')
    require_file(args.checkpoint, 'checkpoint')
    fourcc = check_out(args.out)
    source = frames_of(args.video)
    total, fps = next(source)
    from mmvideoeq.utils import register_all_modules

    register_all_modules()
    cfg = Config.fromfile(args.config)
    size_note = set_model_size(cfg, args.keep_input_size)
    infer = StreamingInferencer(cfg, args.checkpoint, device=args.device, policy=_policy(args))
    mode = (
        'full solve'
        if args.full_solve
        else f"{'cold' if args.cold else 'streamed'}, " f'{args.iters} steps/frame'
    )
    divisor = getattr(getattr(infer.model, 'decode_head', None), 'label_divisor', 1000)
    writer, n, lat = None, 0, []
    limit = total if args.max_frames is None else min(total or args.max_frames, args.max_frames)
    bar = ProgressBar(limit) if limit and limit > 0 else None
    for frame in source:
        if args.max_frames is not None and n >= args.max_frames:
            break
        pred = infer(frame)
        if n == 0:
            h, w = pred.metainfo.get('img_shape', frame.shape[:2])[:2]
            print(
                f'model input {w}x{h} for {frame.shape[1]}x{frame.shape[0]} frames '
                f'({size_note}); {mode}',
                flush=True,
            )
        rec = infer.state.history[-1]
        lat.append(infer.last_ms)
        img = draw(
            frame,
            pred,
            infer.dataset_meta,
            args.score_thr,
            f'frame {n}  {infer.last_ms:.0f} ms  {rec.n_eval} f-evals',
            label_divisor=int(infer.dataset_meta.get('label_divisor', divisor)),
        )
        if writer is None:
            writer = cv2.VideoWriter(
                args.out, cv2.VideoWriter_fourcc(*fourcc), fps, (img.shape[1], img.shape[0])
            )
            if not writer.isOpened():
                raise CLIError(f'cannot open {args.out!r} for writing (codec {fourcc})')
        writer.write(img)
        n += 1
        if bar is not None:
            bar.update()
    if writer is None:
        raise CLIError(f'no frame could be read from {args.video!r}')
    writer.release()
    check_written(args.out, n)
    print(
        f'\nwrote {n} frames to {args.out}; latency per frame: mean {np.mean(lat):.1f} ms, '
        f'first {lat[0]:.1f} ms, median {np.median(lat):.1f} ms'
    )


if __name__ == '__main__':
    main()
