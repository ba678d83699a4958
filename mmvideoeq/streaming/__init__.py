"""Streaming DEQ inference: stream state, budgets, the per-frame policy, the driver (plain torch).

Implements the StreamDEQ inference scheme (Ertenli, *Streaming Multiscale Deep Equilibrium
Models*, 2022, Eq. 3.3-3.5): every frame's fixed point is solved with a few solver steps starting
from the previous frame's estimate. Nothing here imports an OpenMMLab library. See
``docs/streaming.md``.
"""

from .budgets import (
    AdaptiveBudget,
    FixedBudget,
    FullSolve,
    IterationBudget,
    TimeBudget,
    build_budget,
)
from .policy import INIT_MODES, SKIP_RESPONSES, FramePlan, StreamPolicy
from .runner import StepFn, StreamFrame, StreamRun, group_plans, run_stream, split_outputs
from .shot_change import SHOT_RESPONSES, ShotChangeDetector
from .state import FrameRecord, Reason, StreamState, split_state, split_stats, stack_states

__all__ = [
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
    'group_plans',
    'split_outputs',
]
