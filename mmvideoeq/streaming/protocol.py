"""The streaming protocol: what a model implements to be streamed (plain PyTorch).

A streaming model implements two methods, and nothing else is asked of it::

    z = model.stream_zero_state(inputs)                       # cold solver state of a batch
    out = model.stream_step(inputs, z0, memory, budget, payloads)
    preds, z, memory, stats = out                             # a StepOutput

``stream_step`` has exactly the :data:`StepFn` signature that
:func:`~mmvideoeq.streaming.run_stream` calls, so the test loop, the inferencer and the benchmarks
pass ``model.stream_step`` itself.

The stream state has two parts, both owned by whoever drives the stream (never by the model):

* ``z``, the **solver state**: a list of ``S`` tensors ``(B, ...)`` (MDEQ's multiscale fixed point,
  an RFP pyramid), ``[]`` for a model without a solver (a per-frame network with a memory). Warm
  and cold starts and resets act on it: ``z0=None`` asks the model to start every frame of the
  batch from its zero state.
* ``memory``, the **model's memory**: one object per stream, of a type the model owns (a tracker's
  ids, masks and centres as integers; ``None`` for a new stream). The policy carries it from frame
  to frame, drops it at a new video (and at the other restarts that end a sequence), and never
  turns it into solver state; a cold or full-solve setting still carries it.

A :class:`~mmvideoeq.deq.Budget` is handed unchanged from the policy to the model and on to its
solver.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from torch import Tensor

from mmvideoeq.deq.budget import Budget

if TYPE_CHECKING:
    from mmvideoeq.deq import SolverStats

__all__ = ['StepOutput', 'StepFn', 'StreamingModel', 'check_streaming_model']


class StepOutput(NamedTuple):
    """What one streaming step returns, for a batch of ``B`` frames of ``B`` streams.

    Attributes:
        outputs: The predictions: a list of ``B`` items (e.g. data samples), or tensors / lists /
            dicts of them with the batch dimension first.
        z: The new solver state, ``S`` tensors ``(B, ...)`` (detached), ``[]`` without a solver.
        memory: ``B`` memory objects (``None`` where the model keeps none).
        stats: The solver's :class:`~mmvideoeq.deq.SolverStats` (batch ``B``), or ``None`` when
            no solver ran.
    """

    outputs: Any
    z: list[Tensor]
    memory: list[Any]
    stats: SolverStats | None


#: ``step_fn(inputs, z0, memory, budget, payloads) -> StepOutput``
StepFn = Callable[[Tensor, 'list[Tensor] | None', list, Budget, list], StepOutput]


@runtime_checkable
class StreamingModel(Protocol):
    """A model that can be streamed (see the module docstring)."""

    def stream_zero_state(self, inputs: Tensor) -> list[Tensor]:
        """The cold solver state of frames ``(B, C, H, W)``: ``S`` tensors ``(B, ...)``, or ``[]``
        for a model without a solver."""
        ...

    def stream_step(
        self,
        inputs: Tensor,
        z0: list[Tensor] | None,
        memory: list[Any],
        budget: Budget,
        payloads: list,
    ) -> StepOutput:
        """One step of ``B`` streams.

        Args:
            inputs: Preprocessed frames ``(B, C, H, W)``, one per stream.
            z0: Solver state to start from (``S`` tensors ``(B, ...)``), or ``None``: every frame
                starts from :meth:`stream_zero_state`. Read-only: for a single stream these are
                the stored state's own tensors (no copy), which the step must not modify in place.
            memory: ``B`` memory objects of the streams (``None``: a new stream).
            budget: The frames' budget, handed to the solver unchanged.
            payloads: ``B`` per-frame payloads (e.g. data samples with metainfo).

        Returns:
            StepOutput: predictions, new solver state, new memories, solver statistics (of the
            solve that produced the new state; the state is not modified after that solve).
        """
        ...


def check_streaming_model(model: Any) -> None:
    """Raise ``TypeError`` naming what is missing when ``model`` does not implement the protocol."""
    missing = [
        m for m in ('stream_step', 'stream_zero_state') if not callable(getattr(model, m, None))
    ]
    if missing:
        raise TypeError(
            f'{type(model).__name__} is not a streaming model: it lacks {", ".join(missing)}. '
            'Implement stream_zero_state(inputs) and stream_step(inputs, z0, memory, budget, '
            'payloads) (mmvideoeq.streaming.StreamingModel, docs/architecture.md)'
        )


def as_memory_list(memory: Sequence[Any] | None, n: int, what: str = 'memory') -> list[Any]:
    """``memory`` as a list of ``n`` entries (``None`` -> ``n`` new streams)."""
    if memory is None:
        return [None] * n
    memory = list(memory)
    if len(memory) != n:
        raise ValueError(f'{what} has {len(memory)} entries for a batch of {n} frames')
    return memory
