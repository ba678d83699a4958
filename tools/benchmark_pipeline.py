"""Pipelined (depth-parallel) vs sequential streaming: throughput, latency, the stage bound.

Example:
    OMP_NUM_THREADS=1 python tools/benchmark_pipeline.py \
        configs/streamdeq_vid/faster-rcnn_mdeq-tiny-sur8_16e_bundled-vid.py \
        --checkpoint checkpoints/faster-rcnn_mdeq-tiny-sur8_16e_bundled-vid.pth \
        --iters 1 2 4 8 --frames 20 --repeats 3

On the same frames of the config's test set (the first ``--frames`` frames of the first video,
loaded once; data loading is not timed), for every budget M, in one run and interleaved repeat by
repeat, it measures

* the **sequential** stream: ``run_stream(model.stream_step)``, pre-processing included, one
  intra-op thread (``--threads``);
* the **stage times**: the same work cut into the pipeline's stages (``--stages``; default
  pre-processing and stem / solve / heads and post-processing), run one after the other in one
  thread (``PipelinedStream.run_sequential``), median ms per frame of each stage;
* the **pipelined** stream: ``PipelinedStream.run``, for every backend of ``--backends``
  (``thread``: one thread per stage; ``process``: one forked process per stage), each stage with
  ``--threads`` intra-op threads, frames offered as fast as it takes them: its throughput over the
  frames after the pipeline has filled, and the latency of a frame (offered to output, median;
  frames wait in the queues);
* the pipelined stream fed as a camera would, a frame every 1.1 x the slowest stage (``run(...,
  interval=...)``): the latency of a frame when nothing queues.

It prints the stage bound ``sum(stage) / max(stage)`` (the most a pipeline can gain), the
pipelined throughput as a fraction of the bound's throughput ``1 / max(stage)``, the measured
speed-up over the sequential stream, and checks that the pipelined predictions equal the
sequential ones. Every repeat records the load average before and after (the machine may be
shared); ranges are over the repeats. As a diagnostic it also gives the CPU time of the stage
threads per frame (``time.thread_time``: the work, sequential vs pipelined, without waits for a
core or the GIL) and the cores the pipeline got, CPU time over wall time: on a machine shared
with other jobs a pipeline can only gain what the free cores allow.
"""

import argparse
import json
import os
import os.path as osp
import platform
import statistics
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402

from mmvideoeq.registry import MODELS  # noqa: E402
from mmvideoeq.streaming import (  # noqa: E402
    PipelinedStream,
    StreamFrame,
    StreamPolicy,
    run_stream,
)
from mmvideoeq.streaming.pipeline import PIECES  # noqa: E402
from mmvideoeq.utils import register_all_modules  # noqa: E402
from mmvideoeq.utils.checkpoint import load_weights  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('config')
    p.add_argument('--checkpoint', default=None)
    p.add_argument('--iters', type=int, nargs='+', default=[1, 2, 4, 8])
    p.add_argument('--frames', type=int, default=20, help='frames of the first test video')
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument(
        '--stages',
        default='preprocess,stem|solve|heads',
        help=f'stages as groups of the pieces {",".join(PIECES)}: "|" between stages, "," '
        'within one (default: preprocess,stem|solve|heads)',
    )
    p.add_argument('--threads', type=int, default=1, help='intra-op threads of every stage')
    p.add_argument(
        '--backends',
        nargs='+',
        default=['thread', 'process'],
        choices=['thread', 'process'],
        help='pipeline backends to measure, side by side in every repeat (process: one forked '
        'process per stage, CPU only)',
    )
    p.add_argument('--device', default='cpu')
    p.add_argument('--json', default=None, help='also write the numbers here')
    return p.parse_args(argv)


def parse_stages(text: str) -> tuple:
    return tuple(tuple(p.strip() for p in g.split(',') if p.strip()) for g in text.split('|'))


def load_frames(cfg, n: int) -> list:
    """The first ``n`` frames of the first test video, as data batches (loaded once)."""
    from mmengine.runner import Runner

    loader = Runner.build_dataloader(dict(cfg.test_dataloader, batch_size=1, num_workers=0))
    frames, vid = [], None
    for batch in loader:
        meta = batch['data_samples'][0].metainfo
        vid = meta['video_id'] if vid is None else vid
        if meta['video_id'] != vid or len(frames) >= n:
            break
        frames.append(batch)
    if len(frames) < 4:
        raise ValueError(f'the first test video has {len(frames)} frames; need at least 4')
    return frames


def _frames(batches):
    """Raw frames for the pipeline (``payload`` = the data batch, pre-processed in stage 0)."""
    return [StreamFrame(b['inputs'][0][None], 'bench', i, payload=b) for i, b in enumerate(batches)]


def _preprocess(model, device):
    def pre(frame: StreamFrame) -> StreamFrame:
        data = model.data_preprocessor(frame.payload, False)
        return StreamFrame(
            data['inputs'].to(device),
            frame.video_id,
            frame.frame_id,
            payload=data['data_samples'][0],
        )

    return pre


def _boxes(outputs):
    return [
        (o.pred_instances.bboxes, o.pred_instances.scores, o.pred_instances.labels) for o in outputs
    ]


def _same(a, b) -> bool:
    return all(
        all(torch.equal(x, y) for x, y in zip(fa, fb)) for fa, fb in zip(_boxes(a), _boxes(b))
    )


@torch.no_grad()
def sequential(model, batches, m, device) -> tuple[float, list]:
    """ms per frame of the sequential stream (pre-processing + run_stream(stream_step))."""
    policy = StreamPolicy(budget=dict(type='FixedBudget', iters=m))
    states, outs = {}, []
    pre = _preprocess(model, device)
    t0 = time.perf_counter()
    for f in _frames(batches):
        f = pre(f)
        run = run_stream(
            model.stream_step, [f], policy, states=states, zeros_like_fn=model.stream_zero_state
        )
        outs += run.outputs
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) * 1e3 / len(batches), outs


def pipelined(
    model, batches, m, groups, threads, device, *, concurrent: bool, interval=None, backend='thread'
):
    pipe = PipelinedStream(
        model.stream_stages(),
        StreamPolicy(budget=dict(type='FixedBudget', iters=m)),
        groups=groups,
        preprocess=_preprocess(model, device),
        zeros_like_fn=model.stream_zero_state,
        intra_op_threads=threads,
        device=device if device.type == 'cuda' else None,
        backend=backend,
    )
    if not concurrent:
        return pipe.run_sequential(_frames(batches))
    return pipe.run(_frames(batches), interval=interval)


def measure(model, batches, iters, groups, threads, repeats, device, backends) -> dict:
    """Per budget M and backend, one row per repeat; the backends run side by side."""
    fill = len(groups)  # frames that fill the pipeline, left out of the throughput
    res = {}
    for m in iters:
        rows = {b: [] for b in backends}
        for _ in range(repeats):
            load0 = os.getloadavg()[0]
            seq_ms, seq_out = sequential(model, batches, m, device)
            staged = pipelined(model, batches, m, groups, threads, device, concurrent=False)
            stage_ms = [statistics.median(s) for s in zip(*staged.stage_ms[fill:])]
            bound = sum(stage_ms) / max(stage_ms)
            for backend in backends:
                run = dict(backend=backend, concurrent=True)
                piped = pipelined(model, batches, m, groups, threads, device, **run)
                pipe_fps = piped.throughput_fps(skip=fill)
                # frames offered as a camera would, 10 % slower than the slowest stage
                paced = pipelined(
                    model, batches, m, groups, threads, device,
                    interval=1.1 * max(stage_ms) / 1e3, **run,
                )  # fmt: skip
                rows[backend].append(
                    dict(
                        seq_ms=seq_ms,
                        stage_ms=stage_ms,
                        bound=bound,
                        pipe_ms=1e3 / pipe_fps,
                        pipe_latency_ms=statistics.median(piped.latency_ms[fill:]),
                        paced_latency_ms=statistics.median(paced.latency_ms[fill:]),
                        paced_interval_ms=1.1 * max(stage_ms),
                        pipe_stage_ms=[statistics.median(s) for s in zip(*piped.stage_ms[fill:])],
                        # CPU time of the stages: the work, without waits for a core / the GIL
                        seq_cpu_ms=_cpu_per_frame(staged, fill),
                        pipe_cpu_ms=_cpu_per_frame(piped, fill),
                        cores=_cpu_per_frame(piped, fill) * pipe_fps / 1e3,
                        of_bound=pipe_fps * max(stage_ms) / 1e3,
                        speedup=seq_ms * pipe_fps / 1e3,
                        identical=all(_same(seq_out, r.outputs) for r in (piped, staged, paced)),
                        load=(load0, os.getloadavg()[0]),
                    )
                )
        res[m] = rows
    return res


def _cpu_per_frame(run, fill: int) -> float:
    """Median over frames of the CPU ms all stages spent on a frame."""
    return statistics.median(sum(c) for c in run.stage_cpu_ms[fill:])


def _rng(rows, key, fmt='{:.1f}'):
    vals = [r[key] for r in rows]
    med = statistics.median(vals)
    return f'{fmt.format(med)} [{fmt.format(min(vals))}, {fmt.format(max(vals))}]'


def main(argv=None):
    args = parse_args(argv)
    groups = parse_stages(args.stages)
    torch.set_num_threads(args.threads)
    register_all_modules()
    cfg = Config.fromfile(args.config)
    device = torch.device(args.device)
    model = MODELS.build(cfg.model)
    if args.checkpoint:
        load_weights(model, args.checkpoint)
    model = model.to(device).eval()
    batches = load_frames(cfg, args.frames)
    if device.type == 'cuda' and 'process' in args.backends:
        raise SystemExit('--backends process runs on CPU only; use --backends thread on a GPU')
    run = (groups, args.threads)
    measure(model, batches[:6], args.iters[:1], *run, 1, device, args.backends)  # warm-up
    res = measure(model, batches, args.iters, *run, args.repeats, device, args.backends)
    print(
        f'device: {device} ({platform.processor() or platform.machine()}, {os.cpu_count()} '
        f'cores), torch {torch.__version__}, {args.threads} intra-op thread(s) per stage, '
        f'frames: {len(batches)} x {args.repeats} repeats, stages: '
        f'{" | ".join("+".join(g) for g in groups)}'
    )
    print(
        'median [min, max] over the repeats; ms per frame; throughput after the pipeline fills; '
        'latency: arrival to output, frames offered as fast as taken (saturated) or every 1.1 x '
        'the slowest stage (paced)'
    )
    head = (
        '| M | backend | stage ms | bound sum/max | sequential ms | pipelined ms (1/throughput) '
        '| pipelined/bound throughput | speed-up | latency ms, saturated | latency ms, paced '
        '| CPU ms/frame seq / pipelined | cores used | identical | load avg |'
    )
    print(head)
    print('|---' * (head.count('|') - 1) + '|')
    for m, by_backend in res.items():
        for backend, rows in by_backend.items():
            stages = ' / '.join(
                f'{statistics.median(r["stage_ms"][k] for r in rows):.1f}'
                for k in range(len(groups))
            )
            loads = [x for r in rows for x in r['load']]
            print(
                f'| {m} | {backend} | {stages} | {_rng(rows, "bound", "{:.2f}")} | '
                f'{_rng(rows, "seq_ms")} | {_rng(rows, "pipe_ms")} | '
                f'{_rng(rows, "of_bound", "{:.2f}")} | {_rng(rows, "speedup", "{:.2f}")} | '
                f'{_rng(rows, "pipe_latency_ms")} | {_rng(rows, "paced_latency_ms")} | '
                f'{statistics.median(r["seq_cpu_ms"] for r in rows):.1f} / '
                f'{statistics.median(r["pipe_cpu_ms"] for r in rows):.1f} | '
                f'{_rng(rows, "cores", "{:.2f}")} | '
                f'{"yes" if all(r["identical"] for r in rows) else "NO"} | '
                f'{min(loads):.1f}-{max(loads):.1f} |'
            )
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(
                dict(
                    config=args.config,
                    checkpoint=args.checkpoint,
                    stages=groups,
                    threads=args.threads,
                    backends=args.backends,
                    frames=len(batches),
                    device=str(device),
                    results={str(k): v for k, v in res.items()},
                ),
                f,
                indent=1,
            )
    return res


if __name__ == '__main__':
    main()
