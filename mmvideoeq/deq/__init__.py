"""Deep-equilibrium core: fixed-point solvers, gradients and training modes (plain PyTorch).

Nothing in this package imports an OpenMMLab library. See ``docs/deq_core.md``.
"""

from .budget import FULL_SOLVE, Budget
from .core import DEQSolver
from .grad import implicit_layer, phantom_layer
from .jacobian import jac_frobenius_estimate
from .mdeq import MDEQNet
from .solvers import METHODS, SolverStats, solve, solve_with_preimage

__all__ = [
    'Budget',
    'FULL_SOLVE',
    'solve',
    'SolverStats',
    'DEQSolver',
    'METHODS',
    'implicit_layer',
    'phantom_layer',
    'jac_frobenius_estimate',
    'MDEQNet',
    'solve_with_preimage',
]
