"""Write the streaming-AP fixtures: a tiny Argoverse-HD-style annotation, offline detections,
hand-made records and the simulation cases (see README.md).

    python tests/data/streaming_ap/make_fixtures.py

numpy ``default_rng(0)``; geometry only, no real data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEQUENCES = {'seq_a': 12, 'seq_b': 7}  # different lengths
WIDTH, HEIGHT = 320, 240
CATEGORIES = [{'id': 0, 'name': 'person'}, {'id': 1, 'name': 'car'}, {'id': 2, 'name': 'bus'}]


def make_annotation(rng: np.random.Generator) -> tuple[dict, dict]:
    """Objects moving 4-12 px per frame; detections of each frame near its boxes."""
    images, annotations, detections = [], [], {}
    img_id, ann_id = 0, 1  # annotation ids from 1: pycocotools treats a matched gt id 0 as none
    for sid, (seq, n) in enumerate(SEQUENCES.items()):
        objs = []
        for _ in range(3):
            w, h = rng.uniform(30, 70, 2)
            objs.append(
                dict(
                    xy=rng.uniform([10, 10], [WIDTH - 120, HEIGHT - 90]),
                    v=rng.uniform(4, 12, 2) * rng.choice([-1, 1], 2),
                    wh=np.array([w, h]),
                    cat=int(rng.integers(0, 3)),
                )
            )
        for fid in range(n):
            images.append(
                dict(id=img_id, sid=sid, fid=fid, name=f'{fid:06d}.jpg', width=WIDTH, height=HEIGHT)
            )
            boxes, scores, labels = [], [], []
            for obj in objs:
                x, y = obj['xy'] + fid * obj['v']
                w, h = obj['wh']
                annotations.append(
                    dict(
                        id=ann_id, image_id=img_id, category_id=obj['cat'], iscrowd=0,
                        bbox=[round(float(x), 2), round(float(y), 2), round(float(w), 2),
                              round(float(h), 2)],
                        area=round(float(w * h), 2),
                    )
                )  # fmt: skip
                ann_id += 1
                if rng.random() < 0.85:  # detected, with jitter
                    jit = rng.normal(0, 2.0, 4)
                    boxes.append([x + jit[0], y + jit[1], x + w + jit[2], y + h + jit[3]])
                    scores.append(rng.uniform(0.4, 1.0))
                    labels.append(obj['cat'] if rng.random() < 0.9 else int(rng.integers(0, 3)))
            if rng.random() < 0.5:  # a false positive
                x, y = rng.uniform([0, 0], [WIDTH - 50, HEIGHT - 50])
                boxes.append([x, y, x + rng.uniform(20, 50), y + rng.uniform(20, 50)])
                scores.append(rng.uniform(0.05, 0.6))
                labels.append(int(rng.integers(0, 3)))
            detections[str(img_id)] = dict(
                bboxes=[[round(float(v), 3) for v in b] for b in boxes],
                scores=[round(float(s), 4) for s in scores],
                labels=labels,
            )
            img_id += 1
    ann = dict(
        categories=CATEGORIES,
        images=images,
        annotations=annotations,
        sequences=list(SEQUENCES),
        seq_dirs=[f'val/{seq}/ring_front_center' for seq in SEQUENCES],
    )
    return ann, detections


def hand_records(ann: dict, detections: dict) -> dict:
    """Hand-made output lists (fps 10): ties, outputs before the first frame, a silent start."""
    ids = {}
    for img in ann['images']:
        ids.setdefault(ann['sequences'][img['sid']], []).append(img['id'])

    def seq(name, outputs):
        rec = dict(timestamps=[], input_fidx=[], bboxes=[], scores=[], labels=[])
        for t, fidx in outputs:
            det = detections[str(ids[name][fidx])]
            rec['timestamps'].append(t)
            rec['input_fidx'].append(fidx)
            for key in ('bboxes', 'scores', 'labels'):
                rec[key].append(det[key])
        return rec

    # (timestamp s, input frame): frame i is evaluated at (i - eta) / 10
    seq_a = [
        (-0.05, 0),  # finished before the first frame arrived (e.g. a clock offset)
        (0.0, 0),  # exactly at frame 0's time: paired with frame 0 (eta 0)
        (0.1, 1),  # two outputs at 0.1: frame 1 gets the last one listed
        (0.1, 2),
        (0.25, 2),
        (0.3, 3),  # exactly at frame 3's time
        (0.7, 6),  # frames 4..6 keep 3's output, frame 7 gets this one
        (0.7, 5),  # a later-listed tie with an older input frame wins the tie
        (1.0, 9),
    ]
    seq_b = [(0.35, 1), (0.6, 4), (0.6, 5)]  # nothing before 0.35: frames 0..3 missed
    return dict(
        format='mmvideoeq/streaming_record',
        version=1,
        meta=dict(fps=10, note='hand-made outputs for the pairing rules'),
        sequences=dict(seq_a=seq('seq_a', seq_a), seq_b=seq('seq_b', seq_b)),
    )


def simulation_cases() -> list[dict]:
    """Latency traces (ms of each input frame) replayed by the reference simulator."""
    rng = np.random.default_rng(1)
    cases = [
        dict(name='const100_fps10', fps=10, latency_ms=100.0),  # frees exactly at arrivals
        dict(name='const250_fps10', fps=10, latency_ms=250.0),  # slow: skips frames
        dict(name='const20_fps10', fps=10, latency_ms=20.0),  # fast: idles until the next frame
        dict(name='const33_fps30', fps=30, latency_ms=1000.0 / 30),  # one interval, in float
        dict(name='const67_fps30', fps=30, latency_ms=2000.0 / 30),  # two intervals, in float
    ]
    trace = {
        seq: [round(float(v), 3) for v in rng.uniform(20, 180, n)] for seq, n in SEQUENCES.items()
    }
    cases.append(dict(name='trace_fps10', fps=10, latency_ms=trace))  # per frame, per sequence
    return cases


def main() -> None:
    rng = np.random.default_rng(0)
    ann, detections = make_annotation(rng)
    (HERE / 'annotations.json').write_text(json.dumps(ann, indent=1))
    (HERE / 'detections.json').write_text(json.dumps(detections, indent=1))
    (HERE / 'record_hand.json').write_text(json.dumps(hand_records(ann, detections), indent=1))
    (HERE / 'simulation_cases.json').write_text(json.dumps(simulation_cases(), indent=1))


if __name__ == '__main__':
    main()
