"""The deadline scheduler in the real-time simulation (plain Python).

:class:`~.budgets.DeadlineBudget` decides, for the frame a free worker takes, how many solver
steps it gets or whether to skip it (wait for the next frame). :class:`ScheduledLatency` puts it
into :func:`~.realtime.simulate_realtime`: a :class:`~.realtime.LatencyModel` that asks the
budget at every frame the simulator offers, times the frame with the latency of the chosen budget
(a measured per-frame trace or a constant per ``M``: what the frame *really* took, which may
differ from the scheduler's estimate) and tells the budget what it measured. The decisions are
recorded per sequence, so that a driver can then run the model on exactly those frames with
exactly those budgets (:attr:`ScheduledLatency.decisions`). Deterministic given the latencies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .budgets import DeadlineBudget
from .realtime import FrameTiming, LatencyModel, SequentialLatency

__all__ = ['ScheduledLatency']


class ScheduledLatency(LatencyModel):
    """A worker whose budget per frame is chosen by a :class:`~.budgets.DeadlineBudget`.

    At each frame the simulator offers at ``start``, ``budget.decide(start)`` gives the budget
    ``M`` (then the frame takes ``latency[M]``'s time, and the budget learns it) or ``None``
    (the frame is skipped: no output, the worker takes the next frame when it arrives).

    Args:
        budget: The scheduler; its ``fps`` must be the simulation's.
        latency: Per candidate ``M``, the real latency of a frame processed with ``M`` steps:
            a :class:`~.realtime.LatencyModel` (e.g. a :class:`~.realtime.SequentialLatency`
            with the per-frame trace of the ``stream@M`` setting), ms (a constant) or a list of
            ms per frame of the sequence.
        learn: Tell the budget each frame's latency (:meth:`DeadlineBudget.update`).
        name: What the latency is, for the record.

    Attributes:
        decisions: Per sequence (in :meth:`begin` order), ``(frame_index, M or None)`` for every
            frame offered, in order.
    """

    def __init__(
        self,
        budget: DeadlineBudget,
        latency: Mapping[int, LatencyModel | float | Sequence[float]],
        *,
        learn: bool = True,
        name: str | None = None,
    ) -> None:
        if not isinstance(budget, DeadlineBudget):
            raise TypeError(f'budget must be a DeadlineBudget, got {type(budget).__name__}')
        if not isinstance(latency, Mapping):
            raise TypeError('latency must be a dict {steps M: LatencyModel | ms | [ms per frame]}')
        missing = [m for m in budget.choices if m not in latency]
        if missing:
            raise ValueError(
                f'latency has no entry for the budgets {missing} the scheduler may choose '
                f'(choices {budget.choices}); give the latency of every choice'
            )
        self.budget = budget
        self.latency = {
            m: v if isinstance(v, LatencyModel) else SequentialLatency(v, name=f'M={m}')
            for m, v in latency.items()
        }
        self.learn = bool(learn)
        self.name = name
        self.decisions: list[list[tuple[int, int | None]]] = []

    def begin(self, sequence: int, num_frames: int) -> None:
        for model in self.latency.values():
            model.begin(sequence, num_frames)
        self.decisions.append([])

    def schedule(self, frame_index: int, start: float) -> FrameTiming:
        if not self.decisions:
            raise RuntimeError('ScheduledLatency.schedule called before begin()')
        choice = self.budget.decide(start)
        if choice is None:
            self.decisions[-1].append((frame_index, None))
            nxt = (math.floor(start * self.budget.fps) + 1) / self.budget.fps
            return FrameTiming(finish=math.inf, ready=max(nxt, start))  # no output
        m = int(choice.max_iter)
        timing = self.latency[m].schedule(frame_index, start)
        if self.learn:
            self.budget.update(None, (timing.finish - start) * 1000.0, iters=m)
        self.decisions[-1].append((frame_index, m))
        return timing

    def describe(self) -> dict[str, Any]:
        return dict(
            type='deadline',
            name=self.name,
            fps=self.budget.fps,
            choices=list(self.budget.choices),
            wait=self.budget.wait,
            latency={str(m): v.describe() for m, v in self.latency.items()},
        )
