"""Streaming DEQ inference: stream state, iteration/time budgets, shot changes (plain PyTorch).

Implements the StreamDEQ inference scheme (Ertenli, *Streaming Multiscale Deep Equilibrium
Models*, 2022, Eq. 3.3-3.5): every frame's fixed point is solved with a few iterations starting
from the previous frame's estimate. Nothing here imports an OpenMMLab library. See
``docs/streaming.md``.
"""

from .policies import (
    INIT_MODES,
    AdaptiveBudget,
    FixedBudget,
    FramePlan,
    IterationBudget,
    StreamPolicy,
    TimeBudget,
    build_budget,
)
from .runner import StepFn, StreamFrame, StreamRun, group_plans, run_stream, split_outputs
from .shot_change import SHOT_RESPONSES, ShotChangeDetector
from .state import (
    StreamState,
    as_state_list,
    final_rel,
    first_rel,
    num_evaluations,
    split_state,
    split_stats,
    stack_states,
)

__all__ = [
    'StreamState',
    'stack_states',
    'split_state',
    'split_stats',
    'as_state_list',
    'num_evaluations',
    'first_rel',
    'final_rel',
    'IterationBudget',
    'FixedBudget',
    'AdaptiveBudget',
    'TimeBudget',
    'build_budget',
    'FramePlan',
    'StreamPolicy',
    'INIT_MODES',
    'ShotChangeDetector',
    'SHOT_RESPONSES',
    'StreamFrame',
    'StreamRun',
    'StepFn',
    'run_stream',
    'group_plans',
    'split_outputs',
]
