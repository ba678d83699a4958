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
model's full solve on every frame, for comparison. Boxes (detectors) or a class overlay
(segmentors) are drawn with the frame's latency and solver cost. The model runs at the size its
test pipeline resizes to (printed at the start), and the output keeps the input's size.
"""

import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
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
    p.add_argument('--device', default='cpu')
    return p.parse_args(argv)


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
    """Text on a dark box, scaled with the frame (readable at 1080p)."""
    thick = max(1, int(round(scale * 2)))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    x, y = org
    cv2.rectangle(img, (x, y - h - base), (x + w, y + base), (0, 0, 0), -1)
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)


def draw(
    frame: np.ndarray, pred, classes, score_thr: float, text: str, label_divisor: int = 1000
) -> np.ndarray:
    """Draw boxes, a segmentation overlay or panoptic tracks + depth and a status line."""
    out = frame.copy()
    colors = _palette(len(classes))
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
        out = draw_dvps_row(out[..., ::-1].copy(), pan, depth, label_divisor=label_divisor)
        out = np.ascontiguousarray(out[..., ::-1])
    elif 'pred_sem_seg' in pred:
        seg = pred.pred_sem_seg.data[0].cpu().numpy()
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
    infer = StreamingInferencer(
        args.config, args.checkpoint, device=args.device, policy=_policy(args)
    )
    meta = getattr(infer.model, 'dataset_meta', None) or {}
    classes = list(meta.get('classes', []) or infer.cfg.get('metainfo', {}).get('classes', []))
    mode = (
        'full solve'
        if args.full_solve
        else f"{'cold' if args.cold else 'streamed'}, " f'{args.iters} steps/frame'
    )
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
                f'model input {w}x{h} (test pipeline resize of {frame.shape[1]}x'
                f'{frame.shape[0]}); {mode}',
                flush=True,
            )
        rec = infer.state.history[-1]
        lat.append(infer.last_ms)
        img = draw(
            frame,
            pred,
            classes,
            args.score_thr,
            f'frame {n}  {infer.last_ms:.0f} ms  {rec.n_eval} f-evals',
            label_divisor=getattr(getattr(infer.model, 'decode_head', None), 'label_divisor', 1000),
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
    if not osp.isfile(args.out) or osp.getsize(args.out) == 0:
        raise CLIError(f'the video writer produced no file at {args.out!r}')
    print(
        f'\nwrote {n} frames to {args.out}; latency per frame: mean {np.mean(lat):.1f} ms, '
        f'first {lat[0]:.1f} ms, median {np.median(lat):.1f} ms'
    )


if __name__ == '__main__':
    main()
