"""State helpers for the DEQ core: validation, packing and per-sample norms.

A DEQ *state* is a list of tensors ``[z_1, ..., z_S]``, each ``(B, *shape_s)`` (for MDEQ,
``(B, C_s, H_s, W_s)``). Quasi-Newton solvers work on the packed form ``(B, D)`` with
``D = sum_s prod(shape_s)``; :class:`StateLayout` converts between the two without copying on
the way out (``unpack`` returns views).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ['StateLayout', 'as_state_list', 'check_state_like', 'norm_dtype']


def as_state_list(z: Tensor | Sequence[Tensor], name: str = 'z0') -> list[Tensor]:
    """Validates a state and returns it as a list of tensors.

    Args:
        z: A tensor ``(B, ...)`` or a non-empty list/tuple of tensors ``(B, *shape_s)`` that share
            the batch size, dtype and device.
        name: Name used in error messages.

    Returns:
        list[Tensor]: The state as a list (the tensors themselves, not copies).

    Raises:
        TypeError: If ``z`` is not a tensor or a list/tuple of floating-point tensors.
        ValueError: If the list is empty, a tensor has no batch dimension, or the tensors disagree
            on batch size, dtype or device.
    """
    if isinstance(z, Tensor):
        zs = [z]
    elif isinstance(z, (list, tuple)):
        zs = list(z)
    else:
        raise TypeError(
            f'{name} must be a Tensor or a list/tuple of Tensors (one per scale), '
            f'got {type(z).__name__}.'
        )
    if not zs:
        raise ValueError(f'{name} is an empty list; pass at least one tensor (B, ...).')
    for i, t in enumerate(zs):
        if not isinstance(t, Tensor):
            raise TypeError(f'{name}[{i}] must be a Tensor, got {type(t).__name__}.')
        if not t.is_floating_point():
            raise TypeError(
                f'{name}[{i}] must be a floating-point tensor, got {t.dtype}; '
                'cast the state with .float().'
            )
        if t.dim() < 2:
            raise ValueError(
                f'{name}[{i}] has shape {tuple(t.shape)}; every state tensor needs a '
                'batch dimension and at least one feature dimension, (B, ...).'
            )
    first = zs[0]
    for i, t in enumerate(zs[1:], start=1):
        if t.shape[0] != first.shape[0]:
            raise ValueError(
                f'{name}[{i}] has batch size {t.shape[0]} but {name}[0] has '
                f'{first.shape[0]}; all scales must share the batch dimension.'
            )
        if t.dtype != first.dtype or t.device != first.device:
            raise ValueError(
                f'{name}[{i}] is {t.dtype} on {t.device} but {name}[0] is '
                f'{first.dtype} on {first.device}; move all scales to one '
                'dtype/device.'
            )
    return zs


def check_state_like(out: object, ref: list[Tensor], what: str = 'f(z)') -> list[Tensor]:
    """Checks that a function output has the structure of the state ``ref``.

    Args:
        out: What the function returned: a list/tuple of tensors.
        ref: The reference state (list of S tensors).
        what: Name used in error messages.

    Returns:
        list[Tensor]: ``out`` as a list.

    Raises:
        TypeError: If ``out`` is not a list/tuple of tensors.
        ValueError: If the number of scales or a shape differs from ``ref``.
    """
    if not isinstance(out, (list, tuple)):
        raise TypeError(
            f'{what} must return a list/tuple of {len(ref)} tensors (one per scale), '
            f'got {type(out).__name__}.'
        )
    if len(out) != len(ref):
        raise ValueError(
            f'{what} returned {len(out)} tensors but the state has {len(ref)} '
            'scales; f must map the state to a state of the same structure.'
        )
    for i, (o, r) in enumerate(zip(out, ref)):
        if not isinstance(o, Tensor):
            raise TypeError(f'{what}[{i}] must be a Tensor, got {type(o).__name__}.')
        if o.shape != r.shape:
            raise ValueError(
                f'{what}[{i}] has shape {tuple(o.shape)} but the state has '
                f"{tuple(r.shape)}; f must preserve every scale's shape."
            )
    return list(out)


def norm_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype used for residual norms and statistics: float64 for float64 states, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


class StateLayout:
    """Packs a multiscale state into ``(B, D)`` and unpacks views back.

    Args:
        ref: Reference state, list of S tensors ``(B, *shape_s)``.
    """

    def __init__(self, ref: Sequence[Tensor]) -> None:
        self.batch = ref[0].shape[0]
        self.shapes = [tuple(t.shape[1:]) for t in ref]
        self.sizes = [int(torch.Size(s).numel()) for s in self.shapes]
        self.dim = sum(self.sizes)
        self.dtype = ref[0].dtype
        self.device = ref[0].device

    def pack(self, zs: Sequence[Tensor]) -> Tensor:
        """Concatenates a state into one ``(B, D)`` tensor (one copy; differentiable)."""
        if len(zs) == 1:
            return zs[0].reshape(self.batch, self.dim)
        return torch.cat([t.reshape(self.batch, -1) for t in zs], dim=1)

    def flat_views(self, x: Tensor) -> list[Tensor]:
        """Splits ``(B, D)`` into S views ``(B, D_s)`` (no copy)."""
        if len(self.sizes) == 1:
            return [x]
        return list(torch.split(x, self.sizes, dim=1))

    def pack_into(self, zs: Sequence[Tensor], out: Tensor) -> Tensor:
        """Writes the packed state into ``out`` ``(B, D)`` (any row stride; not differentiable)."""
        for z, o in zip(zs, self.flat_views(out)):
            o.copy_(z.reshape(self.batch, -1))
        return out

    def residual(self, fz: Sequence[Tensor], x: Tensor, out: Tensor | None = None) -> Tensor:
        """``pack(fz) - x`` ``(B, D)``; with ``out``, written there scale by scale (no copy of
        ``fz``; not differentiable), else computed out of place (differentiable)."""
        if out is None:
            return self.pack(fz) - x
        for a, z, o in zip(fz, self.flat_views(x), self.flat_views(out)):
            torch.sub(a.reshape(self.batch, -1), z, out=o)
        return out

    def unpack(self, x: Tensor) -> list[Tensor]:
        """Splits ``(B, D)`` into S views ``(B, *shape_s)`` (no copy; differentiable)."""
        if len(self.sizes) == 1:
            return [x.view(self.batch, *self.shapes[0])]
        return [
            p.view(self.batch, *s) for p, s in zip(torch.split(x, self.sizes, dim=1), self.shapes)
        ]
