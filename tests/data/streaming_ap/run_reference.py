"""Run the reference streaming simulator and evaluation (github mtli/sAP) on the fixtures.

    python tests/data/streaming_ap/run_reference.py --sap /tmp/sAP

``--sap``: a checkout of mtli/sAP (not part of this repository). Runs, unmodified,
``det/srt_det.py`` (the single-worker simulator, on cached detections) and
``det/streaming_eval.py`` (pairing, counts, COCO AP) through their ``main()`` with command-line
arguments, and writes ``reference_outputs.json`` and ``record_sim_trace_fps10/`` (the
reference simulator's outputs for one case, converted to the JSON record layout). Stubs:
``det.det_apis`` (mmdet 1.x/2.x model code, never called with ``--cached-res``); for per-frame
latency traces, the runtime distribution's ``draw()`` returns the latency of the frame whose
cached result the simulator fetched just before (the reference draws a random sample instead).
Constant latencies go through the reference's own ``Empirical`` distribution with one sample.
Environment shim: the reference hands ``COCO.loadRes`` boxes as numpy rows, which pycocotools
2.0.8 with numpy 1.26 rejects (``anns[0]['bbox'] == []`` raises; older numpy returned False), so
``loadRes`` gets the same values as lists.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


class RecordingCache(dict):
    """The cached results; remembers the image id fetched last (the frame being processed)."""

    last = None

    def __getitem__(self, key):
        RecordingCache.last = key
        return dict.__getitem__(self, key)


class FrameTrace:
    """A runtime 'distribution' returning the latency (s) of the frame fetched last."""

    def __init__(self, seconds_by_img):
        self.seconds_by_img = seconds_by_img

    def draw(self):
        return self.seconds_by_img[RecordingCache.last]

    def mean(self):
        return float(np.mean(list(self.seconds_by_img.values())))


def run(module, argv):
    old = sys.argv
    sys.argv = ['x'] + [str(a) for a in argv]
    try:
        module.main()
    finally:
        sys.argv = old


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--sap', required=True, help='checkout of github mtli/sAP')
    args = parser.parse_args()
    sys.path.insert(0, args.sap)
    sys.modules['det.det_apis'] = types.SimpleNamespace(init_detector=None, inference_detector=None)
    import det.srt_det as srt
    from pycocotools.coco import COCO

    load_res = COCO.loadRes

    def load_res_lists(self, anns):
        if isinstance(anns, list):
            anns = [dict(a, bbox=[float(v) for v in a['bbox']]) for a in anns]
        return load_res(self, anns)

    COCO.loadRes = load_res_lists
    import det.streaming_eval as seval

    ann_path = HERE / 'annotations.json'
    ann = json.loads(ann_path.read_text())
    dets = json.loads((HERE / 'detections.json').read_text())
    cases = json.loads((HERE / 'simulation_cases.json').read_text())
    seq_imgs = {}
    for img in ann['images']:
        seq_imgs.setdefault(ann['sequences'][img['sid']], []).append(img['id'])

    def det_arrays(img_id):
        d = dets[str(img_id)]
        boxes = np.asarray(d['bboxes'], dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(d['scores'], dtype=np.float64).reshape(-1, 1)
        return np.hstack([boxes, scores]), np.asarray(d['labels'], dtype=np.int64)

    def evaluate(result_dir, fps, eta, work):
        out = Path(work) / f'eval_{eta}'
        out.mkdir()
        run(seval, ['--data-root', work, '--annot-path', ann_path, '--fps', fps, '--eta', eta,
                    '--result-dir', result_dir, '--out-dir', out, '--overwrite'])  # fmt: skip
        assoc = pickle.load(open(out / 'eval_assoc.pkl', 'rb'))
        summary = pickle.load(open(out / 'eval_summary.pkl', 'rb'))
        return dict(
            stats=[float(v) for v in summary['stats']],
            **{k: int(assoc[k]) for k in ('in_time', 'miss', 'mismatch')},
        )

    results = dict(reference='github mtli/sAP', simulation={}, hand={})
    for case in cases:
        with tempfile.TemporaryDirectory() as work:
            cache = RecordingCache({i: det_arrays(i) for i in dets_ids(dets)})
            cache_path = Path(work) / 'cache.pkl'
            pickle.dump(cache, open(cache_path, 'wb'))
            runtime_path = Path(work) / 'runtime.pkl'
            latency = case['latency_ms']
            if isinstance(latency, dict):  # per-frame trace: the frame's own latency
                seconds = {
                    img: ms / 1000.0
                    for seq, ids in seq_imgs.items()
                    for img, ms in zip(ids, latency[seq])
                }
                srt.dist_from_dict = lambda d, pf=1, s=seconds: FrameTrace(s)
                pickle.dump(dict(type='empirical', samples=[0.0]), open(runtime_path, 'wb'))
            else:  # the reference's Empirical with a single sample
                from util.runtime_dist import dist_from_dict

                srt.dist_from_dict = dist_from_dict
                pickle.dump(
                    dict(type='empirical', samples=[latency / 1000.0]), open(runtime_path, 'wb')
                )
            out_dir = Path(work) / 'srt'
            run(srt, ['--data-root', work, '--annot-path', ann_path, '--fps', case['fps'],
                      '--no-class-mapping', '--out-dir', out_dir, '--cached-res', cache_path,
                      '--runtime', runtime_path, '--overwrite'])  # fmt: skip
            sequences = {}
            for seq in ann['sequences']:
                res = pickle.load(open(out_dir / f'{seq}.pkl', 'rb'))
                sequences[seq] = dict(
                    timestamps=[float(t) for t in res['timestamps']],
                    input_fidx=[int(i) for i in res['input_fidx']],
                )
                if case['name'] == 'trace_fps10':
                    rec_dir = HERE / 'record_sim_trace_fps10'
                    rec_dir.mkdir(exist_ok=True)
                    rec = dict(sequences[seq], bboxes=[], scores=[], labels=[])
                    for fidx in rec['input_fidx']:
                        d = dets[str(seq_imgs[seq][fidx])]
                        for key in ('bboxes', 'scores', 'labels'):
                            rec[key].append(d[key])
                    (rec_dir / f'{seq}.json').write_text(json.dumps(rec))
            evals = {str(eta): evaluate(out_dir, case['fps'], eta, work) for eta in (0, -1)}
            results['simulation'][case['name']] = dict(sequences=sequences, eval=evals)

    hand = json.loads((HERE / 'record_hand.json').read_text())
    with tempfile.TemporaryDirectory() as work:
        rdir = Path(work) / 'hand'
        rdir.mkdir()
        for seq, rec in hand['sequences'].items():
            parsed = [
                (np.asarray(b, dtype=np.float64).reshape(-1, 4), np.asarray(s, dtype=np.float64),
                 np.asarray(lab, dtype=np.int64), None)
                for b, s, lab in zip(rec['bboxes'], rec['scores'], rec['labels'])
            ]  # fmt: skip
            pickle.dump(
                dict(results_parsed=parsed, timestamps=rec['timestamps'],
                     input_fidx=rec['input_fidx']),
                open(rdir / f'{seq}.pkl', 'wb'),
            )  # fmt: skip
        results['hand'] = {str(eta): evaluate(rdir, 10, eta, work) for eta in (0, -1, 0.5)}
    (HERE / 'reference_outputs.json').write_text(json.dumps(results, indent=1))


def dets_ids(dets):
    return [int(k) for k in dets]


if __name__ == '__main__':
    main()
