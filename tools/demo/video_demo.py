"""Annotate a real video with StreamDEQ predictions and per-frame latency.

Example:
    python tools/demo/video_demo.py ../shared/data/video/bikes.mp4 CONFIG CKPT --iters 2 \
        --out out.mp4

Each frame is solved with ``--iters`` iterations started from the previous frame's fixed point
(``StreamingInferencer``); boxes (detectors) or a class overlay (segmentors) are drawn together
with the frame's latency and solver iterations.
"""

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from mmvideoeq.apis import StreamingInferencer  # noqa: E402
from mmvideoeq.utils.cli import CLIError, cli_main, require_file  # noqa: E402
from mmvideoeq.visualization import draw_dvps_row  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='StreamDEQ video demo')
    p.add_argument('video', help='input video file')
    p.add_argument('config', help='model config')
    p.add_argument('checkpoint', help='checkpoint file')
    p.add_argument('--iters', type=int, default=2, help='solver iterations per frame')
    p.add_argument('--out', required=True, help='output video (.mp4)')
    p.add_argument('--score-thr', type=float, default=0.3, help='box score threshold')
    p.add_argument('--max-frames', type=int, default=None, help='stop after this many frames')
    p.add_argument('--device', default='cpu')
    return p.parse_args(argv)


def _palette(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=(max(n, 1), 3), dtype=np.uint8)


def draw(
    frame: np.ndarray, pred, classes, score_thr: float, text: str, label_divisor: int = 1000
) -> np.ndarray:
    """Draw boxes, a segmentation overlay or panoptic tracks + depth and a status line."""
    out = frame.copy()
    colors = _palette(len(classes))
    if 'pred_instances' in pred:
        inst = pred.pred_instances
        keep = inst.scores >= score_thr
        for box, label, score in zip(
            inst.bboxes[keep].tolist(), inst.labels[keep].tolist(), inst.scores[keep].tolist()
        ):
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            c = tuple(int(v) for v in colors[label % len(colors)])
            cv2.rectangle(out, (x1, y1), (x2, y2), c, 2)
            name = classes[label] if label < len(classes) else str(label)
            cv2.putText(
                out,
                f'{name} {score:.2f}',
                (x1, max(y1 - 3, 10)),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.4,
                c,
                1,
                cv2.LINE_AA,
            )
    elif 'pred_panoptic' in pred:  # ViP-DeepLab: stable track colours | depth colour map
        pan = pred.pred_panoptic.data[0].cpu().numpy()
        depth = pred.pred_depth.data[0].cpu().numpy() if 'pred_depth' in pred else None
        out = draw_dvps_row(out[..., ::-1].copy(), pan, depth, label_divisor=label_divisor)
        out = np.ascontiguousarray(out[..., ::-1])
    elif 'pred_sem_seg' in pred:
        seg = pred.pred_sem_seg.data[0].cpu().numpy()
        overlay = colors[seg % len(colors)]
        out = cv2.addWeighted(out, 0.5, overlay, 0.5, 0)
    cv2.putText(out, text, (5, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out


@cli_main
def main():
    args = parse_args()
    require_file(args.video, 'video file')
    require_file(args.config, 'config file')
    require_file(args.checkpoint, 'checkpoint')
    cap = cv2.VideoCapture(args.video)
    if not cap.isOpened():
        raise CLIError(f'cannot read video {args.video!r} (unsupported codec or not a video)')
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    infer = StreamingInferencer(args.config, args.checkpoint, device=args.device, iters=args.iters)
    classes = (
        list(infer.model.dataset_meta['classes'])
        if getattr(infer.model, 'dataset_meta', None)
        else []
    )
    if not classes:
        classes = list(infer.cfg.get('metainfo', {}).get('classes', []))
    writer = None
    n = 0
    lat = []
    while True:
        ok, frame = cap.read()
        if not ok or (args.max_frames is not None and n >= args.max_frames):
            break
        pred = infer(frame)
        rec = infer.state.history[-1]
        lat.append(infer.last_ms)
        text = f'frame {n}  {infer.last_ms:.0f} ms  iters {rec["iters"]}'
        div = getattr(getattr(infer.model, 'decode_head', None), 'label_divisor', 1000)
        img = draw(frame, pred, classes, args.score_thr, text, label_divisor=div)
        if writer is None:
            h, w = img.shape[:2]
            writer = cv2.VideoWriter(args.out, cv2.VideoWriter_fourcc(*'mp4v'), fps, (w, h))
        writer.write(img)
        n += 1
    cap.release()
    if writer is None:
        raise CLIError(f'no frame could be read from {args.video!r}')
    writer.release()
    print(
        f'wrote {n} frames to {args.out}; latency per frame: mean {np.mean(lat):.1f} ms, '
        f'first {lat[0]:.1f} ms, median {np.median(lat):.1f} ms'
    )


if __name__ == '__main__':
    main()
