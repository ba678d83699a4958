"""Soak test of streaming: a cheap model streamed for many frames, memory and state watched.

A live camera at 25 fps is 2 million frames a day. This tool streams a cheap contractive DEQ
model (a 16x16 input, a 2-scale state) for ``--frames`` frames through the three ways users
drive streams and checks that nothing grows:

* ``one``: one video through :func:`mmvideoeq.streaming.iter_stream` (a generator of frames);
* ``interleaved``: many short videos, ``--slots`` of them side by side in one batch, through
  ``iter_stream`` with reused state slots (``StreamFrame.stream``), as the test loop batches
  videos;
* ``inferencer``: one video through :class:`mmvideoeq.apis.StreamingInferencer` frame by frame
  (BGR arrays through the test pipeline and the data preprocessor).

Every ``--report-every`` frames it prints the process's resident memory (RSS), the bytes held by
the stream states (solver states, memories, history) and the frame rate. It fails (exit 1) when
an error occurs, when the states' size or history length changes after the first report, or
when RSS grows by more than ``--max-rss-growth-mb`` between the first and the last report.

Example::

    python tools/soak_stream.py --mode one interleaved inferencer --frames 100000
"""

from __future__ import annotations

import argparse
import os.path as osp
import sys
import time
from typing import Any, Iterator

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mmvideoeq.deq import solve  # noqa: E402
from mmvideoeq.streaming import (  # noqa: E402
    StepOutput,
    StreamFrame,
    StreamPolicy,
    iter_stream,
)


class CheapModel(torch.nn.Module):
    """``z1 = tanh(A z1 + x)``, ``z2 = tanh(B z2 + pool(z1))`` on a 16x16 frame; the memory is
    the frame count of the sequence (an int), so memory handling is exercised too."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = torch.nn.Parameter(0.5 * torch.randn(4, 3, generator=g) / 3)
        self.b = torch.nn.Parameter(0.5 * torch.randn(4, 4, generator=g) / 4)

    def stream_zero_state(self, inputs: torch.Tensor) -> list[torch.Tensor]:
        n, _, h, w = inputs.shape
        return [inputs.new_zeros(n, 4, h, w), inputs.new_zeros(n, 4, h // 2, w // 2)]

    @torch.no_grad()
    def stream_step(self, inputs, z0, memory, budget, payloads) -> StepOutput:
        z0 = self.stream_zero_state(inputs) if z0 is None else z0
        inj = torch.einsum('oc,bchw->bohw', self.a, inputs)

        def f(z):
            z1 = torch.tanh(0.5 * z[0] + inj)
            pooled = torch.nn.functional.avg_pool2d(z1, 2)
            return [z1, torch.tanh(torch.einsum('oc,bchw->bohw', self.b, z[1]) + pooled)]

        z, stats = solve(f, z0, method='fixed_point', max_iter=budget.max_iter or 8, tol=budget.tol)
        memory = [1 if m is None else m + 1 for m in memory]
        return StepOutput(list(payloads), z, memory, stats)


def rss_mb() -> float:
    """Resident memory of this process in MiB (Linux ``/proc/self/statm``)."""
    with open('/proc/self/statm') as f:
        pages = int(f.read().split()[1])
    return pages * 4096 / 2**20


def state_bytes(states: dict) -> tuple[int, int, int]:
    """(bytes of the solver states, number of states, total history length)."""
    size = 0
    hist = 0
    for st in states.values():
        size += sum(t.numel() * t.element_size() for t in (st.z or []))
        hist += len(st.history)
    return size, len(states), hist


def _frame(t: int, video: int, size: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(video)
    base = torch.randn(1, 3, size, size, generator=g)
    return base + 0.001 * (t % 1000)


def _frames_one(n: int) -> Iterator[StreamFrame]:
    for t in range(n):
        yield StreamFrame(_frame(t, 0), 'live', t)


def _frames_interleaved(n: int, slots: int, video_len: int) -> Iterator[list[StreamFrame]]:
    done = 0
    video = 0
    while done < n:
        k = min(slots, n - done)
        for t in range(min(video_len, -(-(n - done) // k))):
            step = [
                StreamFrame(_frame(t, video + s), f'v{video + s}', t, stream=s) for s in range(k)
            ]
            done += k
            yield step
            if done >= n:
                return
        video += slots


def soak(
    mode: str,
    frames: int,
    *,
    slots: int = 8,
    video_len: int = 50,
    report_every: int = 10000,
    iters: int = 2,
    log=print,
) -> list[dict[str, Any]]:
    """Stream ``frames`` frames in ``mode``; return the reports (one per ``report_every``)."""
    torch.manual_seed(0)
    model = CheapModel().eval()
    policy = StreamPolicy(budget=dict(type='FixedBudget', iters=iters))
    reports: list[dict[str, Any]] = []
    t0 = time.perf_counter()

    def report(k: int, states: dict) -> None:
        size, n_states, hist = state_bytes(states)
        rep = dict(
            frames=k,
            rss_mb=rss_mb(),
            state_bytes=size,
            states=n_states,
            history=hist,
            fps=k / max(time.perf_counter() - t0, 1e-9),
        )
        reports.append(rep)
        log(
            f'[{mode}] {k:>9} frames  RSS {rep["rss_mb"]:8.1f} MiB  state {size:>8} B in '
            f'{n_states} states, history {hist}  {rep["fps"]:8.1f} frames/s'
        )

    if mode in ('one', 'interleaved'):
        states: dict = {}
        src = (
            _frames_one(frames) if mode == 'one' else _frames_interleaved(frames, slots, video_len)
        )
        k = 0
        for _ in iter_stream(
            model.stream_step, src, policy, states=states, zeros_like_fn=model.stream_zero_state
        ):
            k += 1
            if k % report_every == 0 or k == frames:
                report(k, states)
    elif mode == 'inferencer':
        from mmengine.config import Config

        from mmvideoeq.apis import StreamingInferencer

        cfg = Config(
            dict(
                test_dataloader=dict(
                    dataset=dict(
                        pipeline=[
                            dict(type='mmdet.LoadImageFromFile'),
                            dict(type='mmdet.PackDetInputs', meta_keys=('img_shape',)),
                        ]
                    )
                )
            )
        )

        class _Preprocess(torch.nn.Module):
            def forward(self, data, training=False):
                x = torch.stack(data['inputs']).float() / 255.0
                return dict(inputs=x, data_samples=data['data_samples'])

        model.data_preprocessor = _Preprocess()
        infer = StreamingInferencer(model, cfg=cfg, iters=iters, max_history=100)
        rng = np.random.default_rng(0)
        base = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        for k in range(1, frames + 1):
            infer(np.roll(base, k % 16, axis=1))
            if k % report_every == 0 or k == frames:
                report(k, infer._states)
    else:
        raise ValueError(f'unknown mode {mode!r}')
    return reports


def check(reports: list[dict[str, Any]], max_rss_growth_mb: float) -> list[str]:
    """What grew between the first and the last report (empty: nothing)."""
    first, last = reports[0], reports[-1]
    problems = []
    for key in ('state_bytes', 'states'):
        if last[key] != first[key]:
            problems.append(f'{key} changed from {first[key]} to {last[key]}')
    bound = max(r['history'] for r in reports[: max(len(reports) // 2, 1)])
    if last['history'] > bound:  # bounded by the policy's max_history per state
        problems.append(f'history grew from at most {bound} to {last["history"]}')
    growth = last['rss_mb'] - first['rss_mb']
    if growth > max_rss_growth_mb:
        problems.append(f'RSS grew by {growth:.1f} MiB (> {max_rss_growth_mb} MiB)')
    return problems


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--mode', nargs='+', default=['one', 'interleaved', 'inferencer'])
    p.add_argument('--frames', type=int, default=100000)
    p.add_argument('--slots', type=int, default=8, help='videos side by side (interleaved)')
    p.add_argument('--video-len', type=int, default=50, help='frames per video (interleaved)')
    p.add_argument('--report-every', type=int, default=10000)
    p.add_argument('--max-rss-growth-mb', type=float, default=20.0)
    p.add_argument('--threads', type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    failed = False
    for mode in args.mode:
        reports = soak(
            mode,
            args.frames,
            slots=args.slots,
            video_len=args.video_len,
            report_every=args.report_every,
        )
        problems = check(reports, args.max_rss_growth_mb)
        print(f'[{mode}] ' + ('OK: nothing grew' if not problems else '; '.join(problems)))
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
