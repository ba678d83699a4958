"""``Budget``: how much solving one call gets, handed unchanged from a stream policy to the solver.

A budget has three fields and one meaning per field, in every layer (policy, model, backbone,
:class:`~mmvideoeq.deq.DEQSolver`):

* ``max_iter``: solver steps as the method counts them (``mmvideoeq.deq.solvers``: Broyden steps
  after the initial evaluation, fixed-point/Anderson evaluations), or ``None`` for the model's
  configured full solve (its own steps, tolerance and iterate selection, e.g. MDEQ's
  ``test_max_iter``/``tol``/``return_lowest``; :data:`FULL_SOLVE`);
* ``tol``: early-stop tolerance on the solver's ``stop_mode`` residual; ``0.0`` runs exactly
  ``max_iter`` steps;
* ``select``: ``'last'`` returns the last iterate ``z^[M]`` (what a streaming frame carries to the
  next, StreamDEQ thesis Eq. 3.5), ``'lowest'`` the lowest-residual one (the references' full
  solve).
"""

from __future__ import annotations

from dataclasses import dataclass

from mmvideoeq.utils.checks import check_int, check_tol

__all__ = ['Budget', 'FULL_SOLVE', 'SELECT_MODES']

SELECT_MODES = ('last', 'lowest')


@dataclass(frozen=True)
class Budget:
    """The solve of one call (see the module docstring).

    Args:
        max_iter: Steps, or ``None`` for the model's configured full solve (then ``tol`` and
            ``select`` must keep their defaults: the model's configuration decides them).
        tol: Early-stop tolerance, ``>= 0``; ``0.0``: exactly ``max_iter`` steps.
        select: ``'last'`` or ``'lowest'``.
    """

    max_iter: int | None = None
    tol: float = 0.0
    select: str = 'last'

    def __post_init__(self) -> None:
        if self.max_iter is not None:
            object.__setattr__(self, 'max_iter', check_int('Budget.max_iter', self.max_iter, 1))
        object.__setattr__(self, 'tol', check_tol('Budget.tol', self.tol))
        if self.select not in SELECT_MODES:
            raise ValueError(f'Budget.select must be one of {SELECT_MODES}, got {self.select!r}')
        if self.max_iter is None and (self.tol != 0.0 or self.select != 'last'):
            raise ValueError(
                "Budget(max_iter=None) is the model's configured full solve; its tolerance and "
                f'iterate selection come from the model config, got tol={self.tol}, '
                f'select={self.select!r}. Give max_iter to set them.'
            )

    @property
    def is_full(self) -> bool:
        """Whether this is the model's configured full solve."""
        return self.max_iter is None

    @classmethod
    def steps(cls, max_iter: int) -> Budget:
        """Exactly ``max_iter`` steps, the last iterate: the StreamDEQ-M budget."""
        return cls(max_iter, 0.0, 'last')

    def __str__(self) -> str:
        if self.is_full:
            return 'full solve (model config)'
        stop = f', tol={self.tol:g}' if self.tol else ''
        return f'{self.max_iter} steps{stop}, {self.select} iterate'


#: The model's configured full solve.
FULL_SOLVE = Budget()
