"""Batched fixed-point solvers for (multiscale) DEQ states: one contract, three methods.

All solvers find ``z* = f(z*)`` (the root of ``g(z) = f(z) - z``, StreamDEQ thesis Eq. 3.1/3.2) for
a state ``z = [z_1, ..., z_S]`` of tensors ``(B, *shape_s)``::

    z, stats = solve(f, z0, method='broyden', max_iter=26, tol=1e-3, stop_mode='rel')

What ``max_iter`` counts and which state is returned follow each method's reference
(``docs/deq_core.md`` has the table):

* ``'broyden'`` (locuslab/mdeq's L-Broyden): ``max_iter`` = Broyden steps after the initial
  evaluation (MDEQ's ``threshold``), ``max_iter + 1`` evaluations of ``f``; returns an iterate.
* ``'fixed_point'``, ``'anderson'`` (torchdeq): ``max_iter`` = evaluations of ``f``; returns the
  image ``f(x_k)`` of an iterate.

``return_lowest=True`` returns each sample's lowest-residual state (the references' default for a
full solve); ``False`` the last one, ``z^[M]`` after a budget of ``M`` steps, which is what a
streaming frame carries to the next (thesis Eq. 3.5). With a ``tol``, sample ``b`` stops at the
first step whose ``stop_mode`` residual is below it (``'rel'``: ``||g|| / (||f|| + 1e-9)``,
``'abs'``: ``||g||``, ``'rms'``: ``||g|| / sqrt(D)``, i.e. MDEQ's ``eps = 1e-5 sqrt(numel)`` is
``stop_mode='rms', tol=1e-5``), and its result is frozen there, so it does not depend on the
other samples of the batch. A sample also stops at its first non-finite residual; a non-finite
state is never returned (the lowest-residual finite one is, or ``z0``). ``stats.diverged`` flags
a non-finite residual or one above ``divergence_factor`` times the initial one.

Without autograd, Broyden and Anderson write their histories in place into one buffer per solve;
on CPU these buffers are kept between solves of the same batch size, state size and dtype
(:func:`release_workspace` frees them; see :func:`.common.history_buffer`). Their iterates are
overwritten once no state the solve may return lives in them (Anderson forms each in the
residual row it turns into, Broyden uses a few buffers of the solve's own, which the returned
state may be one of), so ``f`` must not keep a reference to its input past the call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor

from ..utils import StateLayout, as_state_list
from .anderson import anderson
from .broyden import MDEQ_MEMORY, broyden
from .common import StateFn, check_int, check_tol, image_norm, release_workspace
from .fixed_point import fixed_point
from .stats import STOP_MODES, SolverStats, Tracker

__all__ = [
    'SolverStats',
    'solve',
    'solve_with_preimage',
    'METHODS',
    'MDEQ_MEMORY',
    'STOP_MODES',
    'release_workspace',
]

#: name -> (solver function, state it returns, options it accepts)
_SOLVERS: dict[str, tuple[Callable, str, frozenset]] = {
    'broyden': (
        broyden,
        'iterate',
        frozenset({'memory', 'line_search', 'ls_max_halvings', 'ls_c1'}),
    ),
    'anderson': (anderson, 'image', frozenset({'m', 'beta', 'lam'})),
    'fixed_point': (fixed_point, 'image', frozenset()),
}
METHODS = tuple(_SOLVERS)


def check_method_kwargs(method: str, kwargs: dict) -> None:
    """Refuses options the method does not take and out-of-range values."""
    if method not in _SOLVERS:
        raise ValueError(f'Unknown solver method {method!r}; choose one of {METHODS}.')
    unknown = set(kwargs) - _SOLVERS[method][2]
    if unknown:
        raise TypeError(
            f'Unexpected solver option(s) {sorted(unknown)} for method={method!r}; '
            f'it accepts {sorted(_SOLVERS[method][2]) or "none"}.'
        )
    if 'm' in kwargs:
        check_int('m', kwargs['m'], 1)
    if 'beta' in kwargs and not 0 < kwargs['beta'] <= 1:
        raise ValueError(f"Anderson beta must be in (0, 1], got {kwargs['beta']}.")
    if 'lam' in kwargs and not kwargs['lam'] >= 0:
        raise ValueError(f"Anderson lam must be >= 0, got {kwargs['lam']}.")
    if kwargs.get('memory') is not None:
        check_int('memory', kwargs['memory'], 1)
    if 'ls_max_halvings' in kwargs:
        check_int('ls_max_halvings', kwargs['ls_max_halvings'], 1)


def evaluations(method: str, max_iter: int) -> int:
    """Evaluations of ``f`` a solve of ``max_iter`` steps costs without early stopping."""
    return max_iter + 1 if _SOLVERS[method][1] == 'iterate' else max_iter


def solve_with_preimage(
    f: StateFn,
    z0: Sequence[Tensor],
    *,
    method: str = 'broyden',
    max_iter: int = 30,
    tol: float | None = 1e-3,
    stop_mode: str = 'rel',
    return_lowest: bool = True,
    divergence_factor: float = 1e3,
    keep_preimage: bool = False,
    **method_kwargs,
) -> tuple[list[Tensor], list[Tensor], SolverStats]:
    """Like :func:`solve` on a list state; also returns the iterate that describes the output.

    For Broyden that iterate is the output itself; for the image methods it is the ``x_k`` whose
    image ``f(x_k)`` was returned (tracked only with ``keep_preimage``, else the output is
    returned in its place). The gradient code re-evaluates ``f`` there with autograd.
    """
    check_method_kwargs(method, method_kwargs)
    check_int('max_iter', max_iter, 1)
    tol = check_tol('tol', tol)
    if stop_mode not in STOP_MODES:
        raise ValueError(f'stop_mode must be one of {STOP_MODES}, got {stop_mode!r}.')
    if not divergence_factor > 1:
        raise ValueError(f'divergence_factor must be > 1, got {divergence_factor}.')
    z0 = as_state_list(z0)
    if not all(bool(t.isfinite().all()) for t in z0):
        raise ValueError('z0 contains NaN or inf; start from a finite state (e.g. zeros).')
    run, returns, _ = _SOLVERS[method]
    stall = 30 if method == 'broyden' else None  # locuslab/mdeq's no-progress break
    tracker = Tracker(
        z0,
        max_iter,
        tol,
        stop_mode,
        return_lowest,
        divergence_factor,
        returns,
        keep_preimage,
        stall,
    )
    run(f, z0, StateLayout(z0), tracker, max_iter, **method_kwargs)
    out, pre, stats = tracker.finish(method)
    out = [t.contiguous() for t in out]
    stats.out_norm = image_norm(out, tracker.sdt)  # while the returned state is in cache
    stats.out_ptrs = tuple(t.data_ptr() for t in out)
    return out, list(pre), stats


def solve(
    f: StateFn | Callable[[Tensor], Tensor],
    z0: Tensor | Sequence[Tensor],
    *,
    method: str = 'broyden',
    max_iter: int = 30,
    tol: float | None = 1e-3,
    stop_mode: str = 'rel',
    return_lowest: bool = True,
    divergence_factor: float = 1e3,
    **method_kwargs,
) -> tuple[Tensor | list[Tensor], SolverStats]:
    """Solves ``z = f(z)`` for a batched (multiscale) state; see the module docstring.

    Autograd: the iterations are recorded if grad mode is on (backprop through the solver, the
    ``'unroll'`` gradient); wrap the call in ``torch.no_grad()`` otherwise.

    Args:
        f: The layer ``f_theta(.; x)`` with the input injection closed over: list of S tensors
            to a list/tuple of S tensors of the same shapes (tensor to tensor if ``z0`` is one).
        z0: Initial state, a tensor ``(B, ...)`` or a list of S tensors ``(B, C_s, H_s, W_s)``.
        method: ``'broyden'``, ``'anderson'`` or ``'fixed_point'``.
        max_iter: Step budget (Broyden: steps after the initial evaluation; the others:
            evaluations of ``f``).
        tol: Per-sample stopping tolerance on the ``stop_mode`` residual; ``None``/``0``: none.
        stop_mode: ``'rel'``, ``'abs'`` or ``'rms'``.
        return_lowest: Return the lowest-residual state (``True``) or the last one.
        divergence_factor: A residual above this factor times the initial one flags divergence.
        **method_kwargs: Broyden: ``memory`` (stored updates, 27; ``None`` = all),
            ``line_search`` (False), ``ls_max_halvings`` (3), ``ls_c1`` (1e-4). Anderson: ``m``
            (window, 6), ``beta`` (mixing, 1.0), ``lam`` (Tikhonov, 1e-4).

    Returns:
        tuple: ``(z, stats)``, ``z`` with the structure of ``z0``.

    Raises:
        ValueError: Unknown method/stop_mode, ``max_iter < 1``, ``tol < 0``, non-finite ``z0``,
            or ``f`` returning a state of another structure.
        TypeError: Wrong argument types or an option the method does not accept.
    """
    if not callable(f):
        raise TypeError(f'f must be callable, got {type(f).__name__}.')
    single = isinstance(z0, Tensor)
    if single:

        def fn(zs: list[Tensor]) -> list[Tensor]:
            out = f(zs[0])
            if not isinstance(out, Tensor):
                raise TypeError(
                    'z0 is a single tensor, so f must return a single tensor, got '
                    f'{type(out).__name__}.'
                )
            return [out]
    else:
        fn = f
    out, _, stats = solve_with_preimage(
        fn,
        as_state_list(z0),
        method=method,
        max_iter=max_iter,
        tol=tol,
        stop_mode=stop_mode,
        return_lowest=return_lowest,
        divergence_factor=divergence_factor,
        **method_kwargs,
    )
    return (out[0] if single else out), stats
