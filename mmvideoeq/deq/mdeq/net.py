"""``MDEQNet``: stem, input injection, the MDEQ layer solved by a ``DEQSolver``, optional head."""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

from torch import Tensor, nn

from ..budget import FULL_SOLVE, Budget
from ..core import DEQSolver
from ..solvers import SolverStats
from .heads import MDEQClsHead, MDEQSegHead
from .layers import MDEQLayer, frozen_weight_norm
from .presets import MDEQ_PRESETS

__all__ = ['MDEQNet', 'MDEQOutput']


class MDEQOutput(NamedTuple):
    """Result of :meth:`MDEQNet.forward_features`.

    Attributes:
        features: S tensors ``(B, C_s, H/4/2^s, W/4/2^s)``, the (post-processed) equilibrium.
        z: the fixed point, S tensors of the same shapes. It carries the autograd graph in
            training; detach it before storing it across frames.
        stats: the solver's :class:`SolverStats`.
        aux: the solver wrapper's auxiliary dict, e.g. ``{'jac_loss': Tensor, 'unroll_iters': int}``
            in training (empty in evaluation).
    """

    features: list[Tensor]
    z: list[Tensor]
    stats: SolverStats
    aux: dict[str, Any]


def _conv_out(size: int) -> int:
    """Output size of a 3x3, stride-2, padding-1 convolution."""
    return (size - 1) // 2 + 1


class MDEQNet(nn.Module):
    """Multiscale deep equilibrium network (MDEQ), with optional classification/segmentation head.

    ``features = z*`` where ``z* = f_theta(z*; x)`` is found by a :class:`DEQSolver` (Bai et al.,
    2020, Eq. 5-7); the solver, its iteration limits and the training mode (implicit / unrolled /
    stochastically unrolled) are configured by ``deq_cfg``.

    Args:
        arch: Preset, ``'small'`` or ``'xl'`` (see :data:`MDEQ_PRESETS`).
        task: Preset variant, ``'cls'`` (ImageNet settings) or ``'seg'`` (Cityscapes settings).
            Also decides which head ``with_head`` builds.
        with_head: Build the task head (needed to compare logits with the reference); a backbone
            leaves it off.
        deq_cfg: Keyword arguments of :class:`DEQSolver`. Defaults: ``solver='broyden'``,
            ``train_max_iter=test_max_iter=f_thres``, ``backward_max_iter=b_thres``; given keys
            override them.
        num_classes, num_channels, num_blocks, expansion, num_groups, dropout, wnorm,
        downsample_times, bn_momentum, head_channels, final_chansize, final_conv_kernel, f_thres,
        b_thres: Overrides of the preset (None keeps the preset value), e.g. for a tiny test net.

    Example:
        >>> net = MDEQNet(arch='small', num_channels=(4, 8), num_blocks=(1, 1), expansion=2,
        ...               num_groups=2, with_head=False)
        >>> out = net.eval().forward_features(torch.randn(1, 3, 32, 32), budget=Budget.steps(4))
        >>> [tuple(f.shape) for f in out.features]
        [(1, 4, 8, 8), (1, 8, 4, 4)]
    """

    def __init__(
        self,
        *,
        arch: str = 'small',
        task: str = 'cls',
        with_head: bool = True,
        deq_cfg: dict | None = None,
        num_classes: int | None = None,
        num_channels: Sequence[int] | None = None,
        num_blocks: Sequence[int] | None = None,
        expansion: int | None = None,
        num_groups: int | None = None,
        dropout: float | None = None,
        wnorm: bool | None = None,
        downsample_times: int | None = None,
        bn_momentum: float | None = None,
        head_channels: Sequence[int] | None = None,
        final_chansize: int | None = None,
        final_conv_kernel: int | None = None,
        f_thres: int | None = None,
        b_thres: int | None = None,
    ) -> None:
        super().__init__()
        if arch not in MDEQ_PRESETS:
            raise ValueError(f'unknown MDEQ arch {arch!r}; choose one of {sorted(MDEQ_PRESETS)}')
        if task not in ('cls', 'seg'):
            raise ValueError(f"task must be 'cls' or 'seg', got {task!r}")
        if deq_cfg is not None and not isinstance(deq_cfg, dict):
            raise TypeError(
                f'deq_cfg must be a dict of DEQSolver arguments, got {type(deq_cfg).__name__}'
            )
        cfg = dict(MDEQ_PRESETS[arch][task])
        overrides = dict(
            num_classes=num_classes,
            num_channels=num_channels,
            num_blocks=num_blocks,
            expansion=expansion,
            num_groups=num_groups,
            dropout=dropout,
            wnorm=wnorm,
            downsample_times=downsample_times,
            bn_momentum=bn_momentum,
            head_channels=head_channels,
            final_chansize=final_chansize,
            final_conv_kernel=final_conv_kernel,
            f_thres=f_thres,
            b_thres=b_thres,
        )
        cfg.update({k: v for k, v in overrides.items() if v is not None})
        if num_channels is not None and num_blocks is None:
            cfg['num_blocks'] = (1,) * len(cfg['num_channels'])
        if num_channels is not None and head_channels is None:
            # Keep the preset's ratio head/branch width (rounded, at least 1).
            ratio = (
                MDEQ_PRESETS[arch][task]['head_channels'][0]
                / MDEQ_PRESETS[arch][task]['num_channels'][0]
            )
            cfg['head_channels'] = tuple(max(1, round(c * ratio)) for c in cfg['num_channels'])
        if cfg['downsample_times'] not in (0, 1, 2):
            raise ValueError(f"downsample_times must be 0, 1 or 2, got {cfg['downsample_times']}")
        if len(cfg['num_channels']) < 1:
            raise ValueError('num_channels must list at least one branch width')

        self.arch, self.task, self.cfg = arch, task, cfg
        self.num_channels: tuple[int, ...] = tuple(int(c) for c in cfg['num_channels'])
        self.num_branches = len(self.num_channels)
        self.downsample_times = int(cfg['downsample_times'])
        self.f_thres, self.b_thres = int(cfg['f_thres']), int(cfg['b_thres'])
        c0, mom = self.num_channels[0], float(cfg['bn_momentum'])

        s1 = 2 if self.downsample_times >= 1 else 1
        s2 = 2 if self.downsample_times >= 2 else 1
        self.stem = nn.Sequential(
            nn.Conv2d(3, c0, 3, stride=s1, padding=1, bias=False),
            nn.BatchNorm2d(c0, momentum=mom),
            nn.ReLU(),
            nn.Conv2d(c0, c0, 3, stride=s2, padding=1, bias=False),
            nn.BatchNorm2d(c0, momentum=mom),
            nn.ReLU(),
        )
        self.injection = nn.Sequential(
            nn.Conv2d(c0, c0, 1, bias=False), nn.BatchNorm2d(c0, momentum=mom), nn.ReLU()
        )
        self.layer = MDEQLayer(
            self.num_channels,
            cfg['num_blocks'],
            int(cfg['expansion']),
            int(cfg['num_groups']),
            float(cfg['dropout']),
            bool(cfg['wnorm']),
        )

        solver_cfg = dict(
            solver='broyden',
            train_max_iter=self.f_thres,
            test_max_iter=self.f_thres,
            backward_max_iter=self.b_thres,
        )
        solver_cfg.update(deq_cfg or {})
        self.deq_cfg = solver_cfg
        self.deq = DEQSolver(**solver_cfg)

        self.with_head = bool(with_head)
        self.num_classes = int(cfg['num_classes'])
        self.cls_head: MDEQClsHead | None = None
        self.seg_head: MDEQSegHead | None = None
        if self.with_head and task == 'cls':
            self.cls_head = MDEQClsHead(
                self.num_channels,
                cfg['head_channels'],
                int(cfg['final_chansize']),
                self.num_classes,
                mom,
            )
        elif self.with_head:
            self.seg_head = MDEQSegHead(
                self.num_channels, self.num_classes, int(cfg['final_conv_kernel']), mom
            )
        self.init_weights()

    def init_weights(self) -> None:
        """Reference initialisation (``init_weights`` of ``mdeq.py``).

        Plain convs (stem, injection, fusion, heads): ``N(0, 0.01)`` weights and biases;
        BatchNorm: weight 1, bias 0. Weight-normalised convs keep PyTorch's default
        (kaiming-uniform) ``v`` with ``g = ||v||``: the reference's normal init never reaches them
        because their ``weight`` is recomputed from ``g, v``. GroupNorm/Linear keep defaults.
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.01)
                if m.bias is not None:
                    nn.init.normal_(m.bias, 0.0, 0.01)
            elif isinstance(m, nn.BatchNorm2d) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ shapes and state
    def state_shapes(self, height: int, width: int) -> list[tuple[int, int, int]]:
        """``(C_s, H_s, W_s)`` of each state tensor for an input of ``height x width``."""
        h, w = height, width
        for _ in range(self.downsample_times):
            h, w = _conv_out(h), _conv_out(w)
        shapes = []
        for s, c in enumerate(self.num_channels):
            if s > 0:
                h, w = _conv_out(h), _conv_out(w)
            shapes.append((c, h, w))
        return shapes

    def _check_input(self, x: Any) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f'MDEQNet expects an image tensor (B, 3, H, W), got {type(x).__name__}')
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(
                f'MDEQNet expects an image tensor (B, 3, H, W), got shape {tuple(x.shape)}'
            )
        if x.shape[0] == 0:
            raise ValueError('MDEQNet got an empty batch (B=0)')

    def init_state(self, x: Tensor) -> list[Tensor]:
        """Zero initial state for input ``x`` ``(B, 3, H, W)``: S tensors ``(B, C_s, H_s, W_s)``."""
        self._check_input(x)
        b = x.shape[0]
        return [x.new_zeros(b, *shape) for shape in self.state_shapes(*x.shape[-2:])]

    def _check_state(self, z0: Any, x: Tensor) -> list[Tensor]:
        if isinstance(z0, Tensor):
            z0 = [z0]
        if not isinstance(z0, (list, tuple)) or not all(isinstance(t, Tensor) for t in z0):
            raise TypeError(
                f'z0 must be a list of {self.num_branches} tensors (see init_state), '
                f'got {type(z0).__name__}'
            )
        expected = [(x.shape[0], *s) for s in self.state_shapes(*x.shape[-2:])]
        got = [tuple(t.shape) for t in z0]
        if got != expected:
            raise ValueError(
                f'z0 shapes {got} do not match the state shapes {expected} of an '
                f'input {tuple(x.shape)}; reset the stream state (init_state) when '
                f'the frame size or batch changes'
            )
        return [t.to(device=x.device, dtype=x.dtype) for t in z0]

    # ------------------------------------------------------------------ forward
    def injection_features(self, x: Tensor) -> list[Tensor | None]:
        """The input injection ``[stage0(stem(x)), None, ...]`` (only the first scale gets one)."""
        return [self.injection(self.stem(x))] + [None] * (self.num_branches - 1)

    def forward_features(
        self,
        x: Tensor,
        z0: Sequence[Tensor] | None = None,
        budget: Budget = FULL_SOLVE,
    ) -> MDEQOutput:
        """Solve for the equilibrium of ``f_theta(.; x)``: :meth:`injection_features` (the stem),
        then :meth:`solve_injected`.

        Args:
            x: Images ``(B, 3, H, W)``.
            z0: Initial state (S tensors shaped as :meth:`init_state`); None = zeros (cold start).
                Streaming passes the previous frame's fixed point here.
            budget: The solve of this call (:class:`~mmvideoeq.deq.Budget`, forwarded to
                :class:`DEQSolver`): :data:`FULL_SOLVE` is the configured solve,
                ``Budget.steps(M)`` exactly ``M`` steps returning ``z^[M]`` (a streaming frame).

        Returns:
            :class:`MDEQOutput` with ``features``/``z`` (S tensors ``(B, C_s, H_s, W_s)``),
            ``stats`` and ``aux``.
        """
        self._check_input(x)
        return self.solve_injected(x, self.injection_features(x), z0, budget)

    def solve_injected(
        self,
        x: Tensor,
        injection: Sequence[Tensor | None],
        z0: Sequence[Tensor] | None = None,
        budget: Budget = FULL_SOLVE,
    ) -> MDEQOutput:
        """The solve of :meth:`forward_features` from a precomputed input injection (the part a
        pipelined stream runs as its own stage, after the stem).

        Args:
            x: The images ``(B, 3, H, W)`` the injection was computed from (for the state shapes).
            injection: ``injection_features(x)``.
            z0, budget: As in :meth:`forward_features`.

        Returns:
            :class:`MDEQOutput`, as :meth:`forward_features`.
        """
        z_init = self.init_state(x) if z0 is None else self._check_state(z0, x)
        if self.training:
            self.layer.reset_dropout(x.shape[0], x.device, x.dtype)
        layer = self.layer
        injection = list(injection)

        def f(z: list[Tensor]) -> list[Tensor]:
            return layer(z, injection)

        with frozen_weight_norm(layer):
            z, stats, aux = self.deq(
                f,
                z_init,
                training=self.training,
                budget=budget,
            )
        z = list(z)
        # The reference's output dropout (``iodrop``) has rate 0, i.e. features == z.
        # ``aux`` is the solver's own dict (it records e.g. backward statistics after backward).
        return MDEQOutput(features=list(z), z=z, stats=stats, aux=aux)

    def forward(
        self,
        x: Tensor,
        z0: Sequence[Tensor] | None = None,
        budget: Budget = FULL_SOLVE,
    ) -> Tensor | list[Tensor]:
        """Features through the head.

        Returns:
            ``(B, num_classes)`` logits (cls head), ``(B, num_classes, H/4, W/4)`` logits (seg
            head) or, without a head, the list of S feature maps.
        """
        feats = self.forward_features(x, z0, budget).features
        if self.cls_head is not None:
            return self.cls_head(feats)
        if self.seg_head is not None:
            return self.seg_head(feats)
        return feats
