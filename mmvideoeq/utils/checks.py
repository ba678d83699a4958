"""Argument checks shared by every layer (plain Python; importing this imports nothing else).

Wrong types raise ``TypeError`` and out-of-range values ``ValueError``; every message names the
argument, what it must be and what it got.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

__all__ = ['check_int', 'check_tol', 'check_positive', 'check_ms']


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum`` (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(
            f'{name} must be an int >= {minimum}, got {type(value).__name__} ({value!r}).'
        )
    if value < minimum:
        raise ValueError(f'{name} must be an int >= {minimum}, got {value}.')
    return int(value)


def _check_real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f'{name} must be a number, got {type(value).__name__} ({value!r}).')
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f'{name} must be finite, got {value}.')
    return value


def check_tol(name: str, tol: Any) -> float:
    """A stopping tolerance ``>= 0``; ``0`` means no early stop (run the whole budget)."""
    tol = _check_real(name, tol)
    if tol < 0:
        raise ValueError(f'{name} must be >= 0 (0: no early stopping), got {tol}.')
    return tol


def check_positive(name: str, value: Any, allow_none: bool = False) -> float | None:
    """A positive finite number (or ``None`` when ``allow_none``)."""
    if value is None and allow_none:
        return None
    value = _check_real(name, value)
    if value <= 0:
        raise ValueError(f'{name} must be a positive finite number, got {value}.')
    return value


def check_ms(name: str, value: Any) -> float:
    """A finite number of milliseconds ``>= 0``."""
    value = _check_real(name, value)
    if value < 0:
        raise ValueError(f'{name} must be a finite number of milliseconds >= 0, got {value}.')
    return value
