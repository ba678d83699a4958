"""``DEQSolver``: how a DEQ backbone finds its fixed point in training and in evaluation.

Training modes (``train_mode``), following the StreamDEQ thesis (chapter 3):

* ``'implicit'`` (StreamDEQ): ``train_max_iter`` solver iterations (Broyden, 26 or 50 in the
  thesis) from ``z0``; gradients by ``grad``: ``'implicit'`` (IFT with an adjoint solve,
  Bai et al. 2019), ``'phantom'`` (Geng et al. 2021) or ``'unroll'`` (backprop through the
  solver's iterations).
* ``'unroll'`` (UR-StreamDEQ, thesis Sec. 3.3): ``unroll_iters`` weight-tied iterations
  ``z <- f(z)`` (fixed-point iteration, Eq. 3.1) backpropagated with autograd.
* ``'stochastic_unroll'`` (SUR-StreamDEQ): as ``'unroll'`` with the number of iterations drawn
  uniformly from ``[1, unroll_max]`` at every training call (recorded in ``aux['unroll_iters']``).

Evaluation (``training=False``) runs ``solver`` for at most ``test_max_iter`` steps with tolerance
``tol`` under ``torch.no_grad()`` and returns the lowest-residual state (``return_lowest``, the
references' full solve). A :class:`~mmvideoeq.deq.Budget` given to the call replaces these for
that call only: a streaming budget is ``Budget.steps(M)``, exactly M steps and the last state
``z^[M]`` (thesis Eq. 3.5). What a step is depends on the solver (see
:mod:`mmvideoeq.deq.solvers`).

Stochastic unrolling draws one ``N`` per call, i.e. per batch (per GPU with data parallelism):
every sample of a batch is unrolled the same number of times. The draw comes from a private,
seeded ``torch.Generator`` whose state is saved in checkpoints (``RNGStateHook``), so a resumed
training draws what an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .budget import FULL_SOLVE, Budget
from .grad import implicit_layer, phantom_layer
from .jacobian import jac_frobenius_estimate
from .solvers import METHODS, STOP_MODES, SolverStats, check_method_kwargs, solve_with_preimage
from .solvers.common import check_int, check_tol
from .utils import as_state_list

__all__ = ['DEQSolver']

TRAIN_MODES = ('implicit', 'unroll', 'stochastic_unroll')
GRADS = ('implicit', 'phantom', 'unroll')
StateFn = Callable[[list[Tensor]], Sequence[Tensor]]


class DEQSolver:
    """Finds the equilibrium of a layer in training and evaluation (plain PyTorch, no params).

    Args:
        solver: Forward solver, ``'broyden'``, ``'anderson'`` or ``'fixed_point'``.
        train_max_iter: Solver steps in training with ``train_mode='implicit'``.
        test_max_iter: Solver steps of a full evaluation solve (MDEQ's ``F_THRES``).
        tol: Evaluation tolerance (``None``/``0``: always ``test_max_iter`` iterations).
        stop_mode: ``'rel'``, ``'abs'`` or ``'rms'`` residual for every tolerance (MDEQ's
            ``eps = 1e-5 sqrt(numel)`` is ``stop_mode='rms', tol=1e-5``).
        grad: Gradient with ``train_mode='implicit'``: ``'implicit'``, ``'phantom'`` or
            ``'unroll'``. ``None`` picks ``'implicit'``; the unrolled train modes always
            backpropagate through their iterations (``None`` or ``'unroll'`` accepted there).
        train_mode: ``'implicit'``, ``'unroll'`` or ``'stochastic_unroll'``.
        unroll_iters: ``N`` of ``'unroll'`` (thesis: 20).
        unroll_max: Upper bound of the uniform draw of ``'stochastic_unroll'`` (thesis: 20).
        train_tol: Tolerance of the training solve (``None``: exactly ``train_max_iter``).
        backward_solver: Solver of the adjoint equation (``None``: ``solver``).
        backward_max_iter: Adjoint iterations (``None``: ``train_max_iter``).
        backward_tol: Adjoint tolerance (``None``: ``tol``; ``0``: exactly the budget).
        phantom_steps: Unrolled steps ``k`` of the phantom gradient.
        phantom_tau: Damping ``lambda`` in ``(0, 1]`` of the phantom gradient.
        jac_reg_weight: Weight of the Jacobian regulariser; ``> 0`` adds ``aux['jac_loss']``
            (already weighted) in training.
        jac_reg_vecs: Hutchinson probe vectors of the regulariser.
        return_lowest: Full solves return the lowest-residual state (see ``solve``).
        solver_kwargs: Extra options of the forward solver (e.g. ``dict(memory=27)``).
        backward_solver_kwargs: Extra options of the adjoint solver.
        seed: Seed of the private ``torch.Generator`` of the stochastic-unroll draw; ``None``
            draws from the global RNG (seeded by the training framework).

    Raises:
        ValueError/TypeError: On an unknown mode/solver, a non-positive count, a negative
            tolerance or weight, or a ``grad`` that contradicts ``train_mode``.
    """

    def __init__(
        self,
        *,
        solver: str = 'broyden',
        train_max_iter: int = 26,
        test_max_iter: int = 26,
        tol: float | None = 1e-3,
        stop_mode: str = 'rel',
        grad: str | None = None,
        train_mode: str = 'implicit',
        unroll_iters: int = 20,
        unroll_max: int = 20,
        train_tol: float | None = None,
        backward_solver: str | None = None,
        backward_max_iter: int | None = None,
        backward_tol: float | None = None,
        phantom_steps: int = 5,
        phantom_tau: float = 1.0,
        jac_reg_weight: float = 0.0,
        jac_reg_vecs: int = 1,
        return_lowest: bool = True,
        solver_kwargs: dict | None = None,
        backward_solver_kwargs: dict | None = None,
        seed: int | None = None,
    ) -> None:
        if solver not in METHODS:
            raise ValueError(f'Unknown solver {solver!r}; choose one of {METHODS}.')
        if train_mode not in TRAIN_MODES:
            raise ValueError(f'Unknown train_mode {train_mode!r}; choose one of {TRAIN_MODES}.')
        if grad is not None and grad not in GRADS:
            raise ValueError(f'Unknown grad {grad!r}; choose one of {GRADS}.')
        if train_mode != 'implicit' and grad not in (None, 'unroll'):
            raise ValueError(
                f'train_mode={train_mode!r} backpropagates through its unrolled '
                f'iterations; grad={grad!r} only applies to '
                "train_mode='implicit'. Leave grad=None (or 'unroll')."
            )
        if stop_mode not in STOP_MODES:
            raise ValueError(f'stop_mode must be one of {STOP_MODES}, got {stop_mode!r}.')
        backward_solver = solver if backward_solver is None else backward_solver
        if backward_solver not in METHODS:
            raise ValueError(
                f'Unknown backward_solver {backward_solver!r}; choose one of ' f'{METHODS}.'
            )
        self.solver = solver
        self.train_max_iter = check_int('train_max_iter', train_max_iter, 1)
        self.test_max_iter = check_int('test_max_iter', test_max_iter, 1)
        self.tol = check_tol('tol', tol)
        self.train_tol = check_tol('train_tol', train_tol)
        self.stop_mode = stop_mode
        self.train_mode = train_mode
        self.grad = 'unroll' if train_mode != 'implicit' else (grad or 'implicit')
        self.unroll_iters = check_int('unroll_iters', unroll_iters, 1)
        self.unroll_max = check_int('unroll_max', unroll_max, 1)
        self.backward_solver = backward_solver
        self.backward_max_iter = check_int(
            'backward_max_iter',
            train_max_iter if backward_max_iter is None else backward_max_iter,
            1,
        )
        self.backward_tol = (
            self.tol if backward_tol is None else check_tol('backward_tol', backward_tol)
        )
        self.phantom_steps = check_int('phantom_steps', phantom_steps, 1)
        if not 0 < phantom_tau <= 1:
            raise ValueError(f'phantom_tau must be in (0, 1], got {phantom_tau}.')
        self.phantom_tau = float(phantom_tau)
        if not jac_reg_weight >= 0:
            raise ValueError(f'jac_reg_weight must be >= 0, got {jac_reg_weight}.')
        self.jac_reg_weight = float(jac_reg_weight)
        self.jac_reg_vecs = check_int('jac_reg_vecs', jac_reg_vecs, 1)
        self.return_lowest = bool(return_lowest)
        self.solver_kwargs = dict(solver_kwargs or {})
        self.backward_solver_kwargs = dict(backward_solver_kwargs or {})
        check_method_kwargs(solver, self.solver_kwargs)
        check_method_kwargs(backward_solver, self.backward_solver_kwargs)
        self.seed = seed
        self.generator: torch.Generator | None = None
        if seed is not None:
            self.generator = torch.Generator()
            self.generator.manual_seed(int(seed))

    def __repr__(self) -> str:
        return (
            f'{type(self).__name__}(solver={self.solver!r}, train_mode={self.train_mode!r}, '
            f'grad={self.grad!r}, train_max_iter={self.train_max_iter}, '
            f'test_max_iter={self.test_max_iter}, tol={self.tol}, '
            f'stop_mode={self.stop_mode!r})'
        )

    def draw_unroll_iters(self) -> int:
        """Draws ``N ~ U{1, ..., unroll_max}`` for stochastic unrolling (SUR)."""
        n = torch.randint(1, self.unroll_max + 1, (1,), generator=self.generator)
        return int(n.item())

    def __call__(
        self,
        f: StateFn | Callable[[Tensor], Tensor],
        z0: Tensor | Sequence[Tensor],
        *,
        training: bool,
        budget: Budget = FULL_SOLVE,
    ) -> tuple[Tensor | list[Tensor], SolverStats, dict]:
        """Finds the equilibrium ``z* = f(z*)`` starting from ``z0``.

        Args:
            f: The layer with the input injection closed over (list -> list of the same shapes;
                tensor -> tensor if ``z0`` is a tensor).
            z0: Initial state, list of S tensors ``(B, C_s, H_s, W_s)`` (or one tensor).
            training: Use the training mode (``module.training``). Without grad mode on, the
                training budget is run without any graph and ``aux`` is empty.
            budget: The :class:`~mmvideoeq.deq.Budget` of this call. :data:`FULL_SOLVE` (the
                default) is the configured solve (evaluation: ``test_max_iter``, ``tol``,
                ``return_lowest``; training: the configured train mode). Otherwise evaluation
                runs ``budget.max_iter`` steps with ``budget.tol`` and returns the
                ``budget.select`` iterate; training replaces ``train_max_iter`` or the unroll
                count with ``budget.max_iter`` (the unrolled train modes never stop early).

        Returns:
            tuple: ``(z, stats, aux)``: the equilibrium with the structure of ``z0`` (in training
            carrying the configured gradient), the forward :class:`SolverStats`, and a dict with
            ``'jac_loss'`` (training, ``jac_reg_weight > 0``), ``'unroll_iters'`` (unrolled
            modes) and, after backward of the implicit gradient, ``'backward_stats'``.
        """
        if not isinstance(training, bool):
            raise TypeError(
                f'training must be a bool (pass module.training), got '
                f'{type(training).__name__}.'
            )
        if not isinstance(budget, Budget):
            raise TypeError(f'budget must be a Budget, got {type(budget).__name__}.')
        single = isinstance(z0, Tensor)
        if single:

            def fn(zs: list[Tensor]) -> list[Tensor]:
                return [f(zs[0])]
        else:
            fn = f
        zs = as_state_list(z0)
        if training:
            out, stats, aux = self._train(fn, zs, budget)
        else:
            if budget.is_full:
                run = dict(
                    max_iter=self.test_max_iter, tol=self.tol, return_lowest=self.return_lowest
                )
            else:
                run = dict(
                    max_iter=budget.max_iter,
                    tol=budget.tol,
                    return_lowest=budget.select == 'lowest',
                )
            with torch.no_grad():
                out, _, stats = solve_with_preimage(
                    fn,
                    zs,
                    method=self.solver,
                    stop_mode=self.stop_mode,
                    **run,
                    **self.solver_kwargs,
                )
            aux = {}
        return (out[0] if single else out), stats, aux

    def _train(
        self, f: StateFn, z0: list[Tensor], budget: Budget
    ) -> tuple[list[Tensor], SolverStats, dict]:
        aux: dict = {}
        jac = self.jac_reg_weight > 0 and torch.is_grad_enabled()
        if self.train_mode != 'implicit':  # UR / SUR: fixed-point unrolling, never early
            if not budget.is_full:
                n = budget.max_iter
            elif self.train_mode == 'unroll':
                n = self.unroll_iters
            else:
                n = self.draw_unroll_iters()
            aux['unroll_iters'] = n
            run = dict(method='fixed_point', max_iter=n, tol=None, return_lowest=False)
        else:
            explicit = not budget.is_full
            run = dict(
                method=self.solver,
                max_iter=budget.max_iter if explicit else self.train_max_iter,
                tol=budget.tol if explicit else self.train_tol,
                return_lowest=budget.select == 'lowest' if explicit else self.return_lowest,
                **self.solver_kwargs,
            )
        if self.train_mode != 'implicit' or self.grad == 'unroll' or not torch.is_grad_enabled():
            # autograd records the iterations (or nothing needs a gradient)
            out, pre, stats = solve_with_preimage(
                f, z0, stop_mode=self.stop_mode, keep_preimage=jac, **run
            )
            if jac:
                aux['jac_loss'] = self._jac_loss_at(f, pre)
            return out, stats, aux

        with torch.no_grad():
            _, pre, stats = solve_with_preimage(
                f, z0, stop_mode=self.stop_mode, keep_preimage=True, **run
            )
        if self.grad == 'implicit':
            out, z_leaf, fz = implicit_layer(
                f,
                pre,
                method=self.backward_solver,
                max_iter=self.backward_max_iter,
                tol=self.backward_tol,
                stop_mode=self.stop_mode,
                record=aux,
                **self.backward_solver_kwargs,
            )
        else:
            out, z_leaf, fz = phantom_layer(
                f, pre, steps=self.phantom_steps, tau=self.phantom_tau, leaf_requires_grad=jac
            )
        if jac:
            aux['jac_loss'] = self.jac_reg_weight * jac_frobenius_estimate(
                fz, z_leaf, n_vecs=self.jac_reg_vecs
            )
        return out, stats, aux

    def _jac_loss_at(self, f: StateFn, z: list[Tensor]) -> Tensor:
        """Weighted Jacobian regulariser at ``z`` (one extra evaluation of ``f``)."""
        z_leaf = [t.detach().requires_grad_() for t in z]
        fz = list(f(z_leaf))
        return self.jac_reg_weight * jac_frobenius_estimate(fz, z_leaf, n_vecs=self.jac_reg_vecs)
