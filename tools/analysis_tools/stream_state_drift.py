"""Where a streamed state goes over a long video: its norm and its distance to the per-frame state.

Example:
    python tools/analysis_tools/stream_state_drift.py \
        configs/detectors/faster-rcnn_r26-tiny-detectors-stream_16e_bundled-vid.py \
        checkpoints/faster-rcnn_r26-tiny-detectors-stream_16e_bundled-vid.pth --frames 200

One validation video of the config's test set is played for ``--frames`` frames (looped: frames
0..L-1, 0..L-1, ...; ``--loop pingpong`` plays it forwards and backwards instead, without the
jump back to frame 0) through the model's streaming step (``stream_step``, the streaming
protocol; any streaming model: an RFP detector or an MDEQ one) with ``--steps`` steps per frame,
carrying the state from frame to frame with no restart (the raw recursion; the test loop's policy
would restart a stream whose norm leaves its range). Per frame it records

* ``norm``: ``||z_t||``, the carried state's L2 norm (all pyramid levels / branches together);
* ``ref_norm``: ``||P_t||``, the per-frame state: the model's full solve from zeros on the same
  frame (the chapter's ``T = 2`` for RFP);
* ``dist``: ``||z_t - P_t||``;
* ``twin_dist``: ``||z_t - z'_t||`` where ``z'`` is a second stream over the same frames started
  from ``P_0`` instead of zeros: whether the stream forgets how it started (it falls to 0 for a
  recursion that contracts along the video);
* ``residual``: the solver's last relative residual ``||G(z) - z|| / ||G(z)||``;
* ``over``: ``norm`` above ``--norm-factor`` times the mean norm of the first 3 frames (the
  streaming policy's divergence rule, ``StreamPolicy(norm_factor=10)``).

It prints a table at a few frames and a summary (max and final ``norm / ref_norm``, frames over
the policy's limit, non-finite frames) and ``--json`` writes every frame's numbers.
"""

import argparse
import json
import math
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from mmvideoeq.deq import FULL_SOLVE, Budget  # noqa: E402
from mmvideoeq.registry import MODELS  # noqa: E402
from mmvideoeq.utils import register_all_modules  # noqa: E402
from mmvideoeq.utils.checkpoint import load_weights  # noqa: E402

SHOW = (0, 1, 2, 3, 5, 10, 19, 20, 50, 100, 150, 199)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('--video', type=int, default=0, help='which video of the test set (0-based)')
    p.add_argument('--frames', type=int, default=200)
    p.add_argument('--loop', choices=('repeat', 'pingpong'), default='repeat')
    p.add_argument('--steps', type=int, default=1, help='solver steps per streamed frame')
    p.add_argument('--norm-factor', type=float, default=10.0)
    p.add_argument('--threads', type=int, default=None)
    p.add_argument('--json', default=None, help='write every frame here')
    return p.parse_args(argv)


def video_frames(cfg: Config, model, video: int) -> list:
    """The preprocessed frames ``(1, 3, H, W)`` and data samples of one test video, in order."""
    loader = Runner.build_dataloader(
        dict(cfg.test_dataloader, batch_size=1, num_workers=0, persistent_workers=False)
    )
    frames, videos = [], []
    for batch in loader:
        vid = batch['data_samples'][0].metainfo['video_id']
        if not videos or videos[-1] != vid:
            videos.append(vid)
        if len(videos) - 1 == video:
            data = model.data_preprocessor(batch, False)
            frames.append((data['inputs'], data['data_samples']))
        elif len(videos) - 1 > video:
            break
    if not frames:
        raise ValueError(f'--video {video}: the test set has only {len(videos)} videos')
    return frames


def play_order(length: int, frames: int, loop: str) -> list[int]:
    """Frame positions of a ``frames``-long play of a video of ``length`` frames."""
    if loop == 'repeat' or length == 1:
        cycle = list(range(length))
    else:
        cycle = list(range(length)) + list(range(length - 2, 0, -1))
    return [cycle[i % len(cycle)] for i in range(frames)]


def _norm(z) -> float:
    return math.sqrt(sum(float(t.double().pow(2).sum()) for t in z))


def _dist(a, b) -> float:
    return _norm([x - y for x, y in zip(a, b)])


@torch.no_grad()
def drift(model, frames: list, order: list[int], steps: int, norm_factor: float) -> dict:
    """Play ``order`` through ``model.stream_step``; the per-frame records and a summary."""
    budget = Budget.steps(steps)
    refs = {}
    for pos in sorted(set(order)):
        x, samples = frames[pos]
        refs[pos] = model.stream_step(x, None, [None], FULL_SOLVE, samples).z
    z, twin = None, refs[order[0]]
    rows, first = [], []
    for t, pos in enumerate(order):
        x, samples = frames[pos]
        out = model.stream_step(x, z, [None], budget, samples)
        z = out.z
        twin = model.stream_step(x, twin, [None], budget, samples).z
        norm = _norm(z)
        if len(first) < 3:
            first.append(norm)
        limit = norm_factor * sum(first) / len(first)
        stats = out.stats
        residual = float(stats.rel_trace[0, -1]) if stats is not None else float('nan')
        rows.append(
            dict(
                frame=t,
                position=pos,
                norm=norm,
                ref_norm=_norm(refs[pos]),
                dist=_dist(z, refs[pos]),
                twin_dist=_dist(z, twin),
                residual=residual,
                over=bool(norm > limit) or not math.isfinite(norm),
            )
        )
    ratios = [r['norm'] / r['ref_norm'] for r in rows]
    summary = dict(
        frames=len(rows),
        max_norm_ratio=max(ratios),
        final_norm_ratio=ratios[-1],
        mean_rel_dist_last_half=sum(r['dist'] / r['ref_norm'] for r in rows[len(rows) // 2 :])
        / max(1, len(rows) - len(rows) // 2),
        frames_over_limit=sum(r['over'] for r in rows),
        nonfinite_frames=sum(not math.isfinite(r['norm']) for r in rows),
        growth_per_frame=(rows[-1]['norm'] / rows[0]['norm']) ** (1 / max(1, len(rows) - 1))
        if rows[0]['norm'] > 0 and math.isfinite(rows[-1]['norm'])
        else float('nan'),
    )
    return dict(rows=rows, summary=summary)


def table(rows: list) -> list[str]:
    lines = [
        f'{"frame":>5} {"norm":>10} {"ref_norm":>10} {"norm/ref":>9} {"dist/ref":>9} '
        f'{"twin/ref":>9} {"residual":>9}'
    ]
    for r in rows:
        if r['frame'] in SHOW or r['frame'] == len(rows) - 1:
            ref = r['ref_norm']
            lines.append(
                f'{r["frame"]:>5} {r["norm"]:>10.4g} {ref:>10.4g} {r["norm"] / ref:>9.3f} '
                f'{r["dist"] / ref:>9.3f} {r["twin_dist"] / ref:>9.3f} {r["residual"]:>9.3f}'
            )
    return lines


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.frames < 1 or args.steps < 1:
        raise SystemExit('--frames and --steps must be >= 1')
    register_all_modules()
    cfg = Config.fromfile(args.config)
    model = MODELS.build(cfg.model)
    load_weights(model, args.checkpoint)
    model.eval()
    frames = video_frames(cfg, model, args.video)
    order = play_order(len(frames), args.frames, args.loop)
    out = drift(model, frames, order, args.steps, args.norm_factor)
    print('\n'.join(table(out['rows'])))
    print(json.dumps(out['summary'], indent=1))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(out, args=vars(args)), f, indent=1)
    return out


if __name__ == '__main__':
    main()
