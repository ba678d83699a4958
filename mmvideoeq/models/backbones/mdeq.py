"""Registered MDEQ backbone: an mmengine ``BaseModule`` around :class:`mmvideoeq.deq.MDEQNet`."""

from __future__ import annotations

from typing import Any, Sequence

from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmvideoeq.deq import FULL_SOLVE, Budget
from mmvideoeq.deq.mdeq import MDEQNet
from mmvideoeq.deq.mdeq_convert import (
    convert_mdeq_state_dict,
    is_official_mdeq_state_dict,
    unwrap_checkpoint,
)
from mmvideoeq.deq.solvers import SolverStats
from mmvideoeq.registry import MODELS
from mmvideoeq.utils.checkpoint_schemes import load_checkpoint_weights_only

__all__ = ['MDEQ']


@MODELS.register_module()
class MDEQ(BaseModule):
    """Multiscale deep equilibrium backbone (Bai et al., NeurIPS 2020) for detection/segmentation.

    Wraps :class:`~mmvideoeq.deq.mdeq.MDEQNet` without its head (``self.net``). ``forward`` is a
    cold start with the configured test iterations (train iterations in training mode);
    ``forward_stream`` warm-starts from a previous fixed point (StreamDEQ, Eq. 3.5 of the thesis).

    In training mode the solver's auxiliary dict of the last forward is kept in ``last_aux``; the
    detector/segmentor adds its losses (``jac_loss`` when ``jac_reg_weight > 0``) to its loss dict
    with :meth:`pop_aux_losses`.

    Args:
        arch: ``'small'`` or ``'xl'``.
        task: Which reference preset to follow: ``'cls'`` (ImageNet, the usual pretraining) or
            ``'seg'`` (Cityscapes: dropout, iteration limits, BN momentum).
        deq_cfg: :class:`~mmvideoeq.deq.DEQSolver` arguments (``solver``, ``train_max_iter``,
            ``test_max_iter``, ``tol``, ``grad``, ``train_mode``, ...).
        out_indices: Which scales ``forward`` returns (highest resolution = 0).
        norm_eval: Keep the stem/injection BatchNorms in eval mode while training (small-batch
            fine-tuning, as mmdet's ResNet does).
        num_channels, num_blocks, expansion, num_groups, dropout, wnorm, downsample_times,
        bn_momentum, f_thres, b_thres: Overrides of the preset (None keeps it).
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH[, prefix=...])`` loads a checkpoint
            converted by ``tools/model_converters/mdeq_to_mmvideoeq.py`` (an official one is
            converted on the fly), strictly: every backbone key must be present with the right
            shape; head keys of the file are dropped.

    Attributes:
        out_channels (tuple[int]): Channels of each returned feature map (FPN ``in_channels``).
        strides (tuple[int]): Their strides w.r.t. the input.
    """

    def __init__(
        self,
        *,
        arch: str = 'xl',
        task: str = 'cls',
        deq_cfg: dict | None = None,
        out_indices: Sequence[int] | None = None,
        norm_eval: bool = False,
        num_channels: Sequence[int] | None = None,
        num_blocks: Sequence[int] | None = None,
        expansion: int | None = None,
        num_groups: int | None = None,
        dropout: float | None = None,
        wnorm: bool | None = None,
        downsample_times: int | None = None,
        bn_momentum: float | None = None,
        f_thres: int | None = None,
        b_thres: int | None = None,
        init_cfg: dict | list | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.net = MDEQNet(
            arch=arch,
            task=task,
            with_head=False,
            deq_cfg=deq_cfg,
            num_channels=num_channels,
            num_blocks=num_blocks,
            expansion=expansion,
            num_groups=num_groups,
            dropout=dropout,
            wnorm=wnorm,
            downsample_times=downsample_times,
            bn_momentum=bn_momentum,
            f_thres=f_thres,
            b_thres=b_thres,
        )
        n = self.net.num_branches
        if out_indices is None:
            out_indices = tuple(range(n))
        out_indices = tuple(int(i) for i in out_indices)
        if not out_indices or any(not 0 <= i < n for i in out_indices):
            raise ValueError(
                f'out_indices {out_indices} must be non-empty indices of the {n} branches'
            )
        self.out_indices = out_indices
        self.out_channels = tuple(self.net.num_channels[i] for i in out_indices)
        base = 2**self.net.downsample_times
        self.strides = tuple(base * 2**i for i in out_indices)
        self.norm_eval = bool(norm_eval)
        self.last_aux: dict[str, Any] = {}

    # ---------------------------------------------------------------- weights
    def init_weights(self) -> None:
        """Reference initialisation, or strict loading of a ``Pretrained`` checkpoint."""
        cfgs = (
            self.init_cfg
            if isinstance(self.init_cfg, list)
            else ([self.init_cfg] if self.init_cfg else [])
        )
        pretrained = [c for c in cfgs if c.get('type') == 'Pretrained']
        if not pretrained:
            super().init_weights()
            return
        if len(cfgs) > 1:
            raise ValueError(
                f'MDEQ: a Pretrained init_cfg cannot be combined with other '
                f'init_cfg entries, got {cfgs}'
            )
        cfg = pretrained[0]
        if 'checkpoint' not in cfg:
            raise ValueError("MDEQ: init_cfg=dict(type='Pretrained') needs a 'checkpoint' path")
        self.load_pretrained(cfg['checkpoint'], prefix=cfg.get('prefix'))
        self._is_init = True

    def load_pretrained(self, checkpoint: str, prefix: str | None = None) -> None:
        """Load MDEQ weights strictly into ``self.net``.

        Args:
            checkpoint: A local path or a URL / mmengine scheme (``https://``,
                ``open-mmlab://``, ...) of a converted or official MDEQ checkpoint, loaded
                weights-only whatever its kind (``load_checkpoint_weights_only``).
            prefix: Keep only keys starting with it and strip it (e.g. ``'backbone.'`` to read
                the backbone of a full detector checkpoint).

        Raises:
            FileNotFoundError: If the file does not exist.
            UnsafeCheckpointError: If the file holds pickled objects outside the allow-list.
            ValueError: If keys are missing/unexpected or shapes differ (all are listed).
        """
        ckpt = load_checkpoint_weights_only(checkpoint, map_location='cpu')
        state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else ckpt
        if not isinstance(state, dict):
            raise ValueError(f'{checkpoint} holds a {type(state).__name__}, not a state dict')
        if prefix:
            state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            if not state:
                raise ValueError(f'no key of {checkpoint} starts with prefix {prefix!r}')
        if state and all(k.startswith('net.') for k in state):
            state = {k[len('net.') :]: v for k, v in state.items()}
        official = unwrap_checkpoint(state)  # module./FullModel prefixes of the reference
        if is_official_mdeq_state_dict(official):
            state = dict(convert_mdeq_state_dict(official))
        dropped = sorted(
            {k.split('.')[0] for k in state if k.startswith(('cls_head.', 'seg_head.'))}
        )
        state = {k: v for k, v in state.items() if not k.startswith(('cls_head.', 'seg_head.'))}
        own = self.net.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        mismatched = [
            f'{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}'
            for k, v in own.items()
            if k in state and state[k].shape != v.shape
        ]
        if missing or unexpected or mismatched:
            raise ValueError(
                f'MDEQ checkpoint {checkpoint} does not match the backbone '
                f'(arch={self.net.arch!r}, num_channels={self.net.num_channels}): '
                f'missing {missing}, unexpected {unexpected}, shape mismatch {mismatched}'
            )
        self.net.load_state_dict(state, strict=True)
        print_log(
            f'MDEQ: loaded {len(state)} tensors from {checkpoint}'
            + (f' (dropped head: {dropped})' if dropped else ''),
            logger='current',
        )

    def train(self, mode: bool = True) -> 'MDEQ':
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    # ---------------------------------------------------------------- forward
    def _select(self, features: Sequence[Tensor]) -> tuple[Tensor, ...]:
        return tuple(features[i] for i in self.out_indices)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """Cold-start equilibrium features.

        Args:
            x: Images ``(B, 3, H, W)``.

        Returns:
            Feature maps ``(B, out_channels[k], H/strides[k], W/strides[k])`` (rounded up).
        """
        out = self.net.forward_features(x)
        if self.training:
            self.last_aux = out.aux
        return self._select(out.features)

    def forward_stream(
        self, x: Tensor, z0: Sequence[Tensor] | None, budget: Budget = FULL_SOLVE
    ) -> tuple[tuple[Tensor, ...], list[Tensor], SolverStats]:
        """One streaming step: solve from ``z0`` (the previous frame's fixed point); the same as
        :meth:`stream_solve` after :meth:`stream_stem`.

        Args:
            x: Frames ``(B, 3, H, W)``.
            z0: Initial state (see :meth:`init_stream_state`); None = zeros.
            budget: The frame's :class:`~mmvideoeq.deq.Budget`, handed to the solver unchanged
                (``Budget.steps(M)``: exactly ``M`` steps carrying ``z^[M]``, thesis Eq. 3.5;
                :data:`~mmvideoeq.deq.FULL_SOLVE`: the configured full solve).

        Returns:
            ``(features, z, stats)``: the selected feature maps, the full fixed point (detached,
            ready to be stored in the stream state) and the solver statistics.
        """
        return self.stream_solve(self.stream_stem(x), z0, budget)

    def stream_stem(self, x: Tensor) -> tuple[Tensor, list[Tensor | None]]:
        """The per-frame part before the solve (stem and input injection), which depends on the
        frame only: ``(x, injection)`` for :meth:`stream_solve`.

        Args:
            x: Frames ``(B, 3, H, W)``.
        """
        self.net._check_input(x)
        return x, self.net.injection_features(x)

    def stream_solve(
        self,
        stem: tuple[Tensor, list[Tensor | None]],
        z0: Sequence[Tensor] | None,
        budget: Budget = FULL_SOLVE,
    ) -> tuple[tuple[Tensor, ...], list[Tensor], SolverStats]:
        """The solve of :meth:`forward_stream` from :meth:`stream_stem`'s output.

        Returns:
            ``(features, z, stats)`` as :meth:`forward_stream`.
        """
        x, injection = stem
        out = self.net.solve_injected(x, injection, z0, budget)
        if self.training:
            self.last_aux = out.aux
        return self._select(out.features), [t.detach() for t in out.z], out.stats

    @property
    def test_max_iter(self) -> int:
        """Solver iterations of a full (non-streaming) evaluation solve."""
        return self.net.deq.test_max_iter

    def init_stream_state(self, x: Tensor) -> list[Tensor]:
        """Zero state for frames shaped like ``x`` ``(B, 3, H, W)``."""
        return self.net.init_state(x)

    def pop_aux_losses(self) -> dict[str, Tensor]:
        """Return and clear the solver's auxiliary losses of the last training forward.

        Returns:
            The tensor entries of the solver's ``aux`` whose name contains ``'loss'`` (e.g.
            ``{'jac_loss': Tensor}``, already weighted by ``jac_reg_weight``), so that mmengine's
            ``parse_losses`` adds them to the total; empty in evaluation or without a regulariser.
        """
        aux, self.last_aux = self.last_aux, {}
        return {k: v for k, v in aux.items() if 'loss' in k and isinstance(v, Tensor)}

    def extra_repr(self) -> str:
        return (
            f'arch={self.net.arch!r}, task={self.net.task!r}, '
            f'out_channels={self.out_channels}, deq_cfg={self.net.deq_cfg}'
        )
