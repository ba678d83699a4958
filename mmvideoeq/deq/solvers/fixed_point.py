"""Fixed-point iteration ``z_{k+1} = f(z_k)`` (StreamDEQ thesis Eq. 3.1).

Conventions of torchdeq's ``fixed_point_iter`` (``torchdeq/solver/fp_iter.py``, MIT): ``max_iter``
counts evaluations of ``f``; the state at step ``s`` is the image ``f(z_{s-1}) = z_s``, reported
with the residual ``||f(z_{s-1}) - z_{s-1}||`` of its pre-image. ``max_iter=M`` without a tolerance
therefore returns ``f`` applied ``M`` times, ``z^[M]`` of the thesis (UR-StreamDEQ). Written for
mmvideoeq; no code was copied.
"""

from __future__ import annotations

from ..utils import StateLayout, check_state_like
from .common import StateFn, residual_norms
from .stats import Tracker

__all__ = ['fixed_point']


def fixed_point(f: StateFn, z0: list, layout: StateLayout, tracker: Tracker, max_iter: int) -> None:
    """Runs at most ``max_iter`` evaluations; ``f`` gets its own output list back."""
    z = z0
    for k in range(max_iter):
        fz = f(z)
        fz = check_state_like(fz, z0) if k == 0 else list(fz)
        tracker.n_eval += 1
        tracker.record(k, z, fz, residual_norms(fz, z, layout, tracker.sdt))
        if tracker.tol is not None and tracker.all_stopped():
            return
        z = fz
