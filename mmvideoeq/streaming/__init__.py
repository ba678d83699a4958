"""Streaming inference: the model protocol, stream state, budgets, the per-frame policy and the
driver (plain PyTorch).

Implements the StreamDEQ inference scheme (Ertenli, *Streaming Multiscale Deep Equilibrium
Models*, 2022, Eq. 3.3-3.5): every frame's fixed point is solved with a few solver steps starting
from the previous frame's estimate; any model that implements :class:`StreamingModel` (a DEQ, a
recursive RFP, a per-frame network with a tracker's memory) streams the same way. Nothing here
imports an OpenMMLab library. See ``docs/streaming.md`` and ``docs/architecture.md``.
"""

from mmvideoeq.deq.budget import FULL_SOLVE, Budget

from .budgets import (
    AdaptiveBudget,
    DeadlineBudget,
    FixedBudget,
    FullSolve,
    IterationBudget,
    TimeBudget,
    build_budget,
)
from .pipeline import (
    DEFAULT_STAGES,
    PipelinedStream,
    PipelineLatency,
    PipelineRun,
    StreamStages,
)
from .policy import GAP_RESPONSES, INIT_MODES, SKIP_RESPONSES, FramePlan, StreamPolicy
from .protocol import StepFn, StepOutput, StreamingModel, check_streaming_model
from .runner import (
    StreamFrame,
    StreamRun,
    group_plans,
    iter_stream,
    run_stream,
    split_outputs,
)
from .scheduler import ScheduledLatency
from .shot_change import SHOT_RESPONSES, ShotChangeDetector
from .state import (
    FrameRecord,
    Reason,
    StreamState,
    split_state,
    split_stats,
    stack_states,
    state_norm,
)

__all__ = [
    'Budget',
    'FULL_SOLVE',
    'StreamingModel',
    'StepOutput',
    'check_streaming_model',
    'GAP_RESPONSES',
    'state_norm',
    'StreamState',
    'FrameRecord',
    'Reason',
    'stack_states',
    'split_state',
    'split_stats',
    'IterationBudget',
    'FixedBudget',
    'AdaptiveBudget',
    'TimeBudget',
    'DeadlineBudget',
    'FullSolve',
    'build_budget',
    'FramePlan',
    'StreamPolicy',
    'INIT_MODES',
    'SKIP_RESPONSES',
    'ShotChangeDetector',
    'SHOT_RESPONSES',
    'StreamFrame',
    'StreamRun',
    'StepFn',
    'run_stream',
    'iter_stream',
    'group_plans',
    'split_outputs',
    'StreamStages',
    'PipelinedStream',
    'PipelineRun',
    'PipelineLatency',
    'ScheduledLatency',
    'DEFAULT_STAGES',
]
