"""Convert official MDEQ checkpoints (locuslab/mdeq) to :class:`~mmvideoeq.deq.mdeq.MDEQNet` keys.

Layout of the official checkpoints (from the reference code, MIT licence):

* ``tools/cls_train.py`` saves ``model.state_dict()`` of ``MDEQClsNet`` (``final_state.pth.tar``)
  or ``{'state_dict': ..., 'epoch': ..., 'optimizer': ...}`` (``checkpoint.pth.tar``); the
  released ImageNet ``.pkl`` files are such state dicts. A DataParallel save adds ``module.``.
* ``tools/seg_train.py`` saves the state dict of ``FullModel(model, loss)``: every model key has a
  ``model.`` prefix and the loss adds ``loss.criterion.weight`` (the class weights), which is what
  the released Cityscapes ``.pkl`` contains (``seg_test.py`` strips ``k[6:]``).
* Inside the model: ``downsample.*`` (stem), ``stage0.*`` (injection), ``fullstage.*`` (the layer
  f, weight-normed convs stored as ``weight_g``/``weight_v``), ``fullstage_copy.*`` (a detached copy
  of f with plain ``weight`` used by the reference's backward pass), ``deq.func.*`` and
  ``deq.func_copy.*`` (the same two modules again, registered under the ``MDEQWrapper``), and the
  head: ``incre_modules``/``downsamp_modules``/``final_layer``/``classifier`` (classification) or
  ``last_layer`` (segmentation).

The conversion renames top-level prefixes (sub-keys are identical by construction of
:class:`MDEQNet`) and drops the three duplicates and the loss weights. Any other key is an error.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from typing import Any, Mapping

import torch
from torch import Tensor

__all__ = [
    'convert_mdeq_state_dict',
    'unwrap_checkpoint',
    'infer_mdeq_arch',
    'KEY_MAP',
    'DROPPED_PREFIXES',
    'OFFICIAL_KEY_PATTERNS',
    'is_official_mdeq_state_dict',
    'load_official_checkpoint',
    'to_encoder_decoder_layout',
]

# official prefix -> MDEQNet prefix
KEY_MAP: tuple[tuple[str, str], ...] = (
    ('downsample.', 'stem.'),
    ('stage0.', 'injection.'),
    ('fullstage.', 'layer.'),
    ('incre_modules.', 'cls_head.incre_modules.'),
    ('downsamp_modules.', 'cls_head.downsamp_modules.'),
    ('final_layer.', 'cls_head.final_layer.'),
    ('classifier.', 'cls_head.classifier.'),
    ('last_layer.', 'seg_head.last_layer.'),
)
# Duplicates of ``fullstage`` kept by the reference for its backward pass.
DROPPED_PREFIXES: tuple[str, ...] = ('fullstage_copy.', 'deq.func.', 'deq.func_copy.')
_LOSS_PREFIX = 'loss.'

# Grammar of the official model keys (module names of mdeq_core.py / mdeq.py); a key that matches
# a prefix of KEY_MAP but not this grammar is reported as unknown instead of renamed blindly.
_BN = r'(weight|bias|running_mean|running_var|num_batches_tracked)'
_WCONV = r'conv\.(weight|weight_g|weight_v)'
OFFICIAL_KEY_PATTERNS: tuple[re.Pattern, ...] = tuple(
    re.compile(p)
    for p in (
        r'downsample\.[03]\.weight',
        rf'downsample\.[14]\.{_BN}',
        r'stage0\.0\.weight',
        rf'stage0\.1\.{_BN}',
        r'fullstage\.branches\.\d+\.blocks\.\d+\.(conv[12]\.(weight|weight_g|weight_v)|'
        r'gn[123]\.(weight|bias))',
        r'fullstage\.fuse_layers\.\d+\.\d+\.net\.(\d+\.)?(conv\.weight|gnorm\.(weight|bias))',
        rf'fullstage\.post_fuse_layers\.\d+\.({_WCONV}|gnorm\.(weight|bias))',
        rf'incre_modules\.\d+\.0\.(conv[123]\.weight|bn[123]\.{_BN}|downsample\.0\.weight|'
        rf'downsample\.1\.{_BN})',
        rf'downsamp_modules\.\d+\.(0\.(weight|bias)|1\.{_BN})',
        rf'final_layer\.(0\.(weight|bias)|1\.{_BN})',
        r'classifier\.(weight|bias)',
        rf'last_layer\.([03]\.(weight|bias)|1\.{_BN})',
    )
)


def unwrap_checkpoint(obj: Any) -> dict[str, Tensor]:
    """Return the bare model state dict of an official checkpoint.

    Handles a ``{'state_dict': ...}`` wrapper, the ``module.`` prefix of (Distributed)DataParallel
    and the ``model.``/``loss.`` layout of the segmentation ``FullModel``.

    Args:
        obj: What ``torch.load`` returned.

    Returns:
        An ordered ``{key: tensor}`` dict with the official model keys.

    Raises:
        TypeError: If ``obj`` is not a mapping of tensors.
        ValueError: If a ``FullModel``-style dict has keys outside ``model.``/``loss.``.
    """
    if isinstance(obj, Mapping) and 'state_dict' in obj and isinstance(obj['state_dict'], Mapping):
        obj = obj['state_dict']
    if not isinstance(obj, Mapping):
        raise TypeError(f'expected a state dict (a mapping of tensors), got {type(obj).__name__}')
    sd = OrderedDict(obj)
    bad = [k for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise TypeError(f'not a state dict: entries {bad[:5]} are not (str, Tensor) pairs')
    while sd and all(k.startswith('module.') for k in sd):
        sd = OrderedDict((k[len('module.') :], v) for k, v in sd.items())
    if any(k.startswith('model.fullstage.') for k in sd):  # FullModel(model, loss) of seg_train
        stray = [k for k in sd if not k.startswith(('model.', _LOSS_PREFIX))]
        if stray:
            raise ValueError(
                f'FullModel-style checkpoint (model./loss. prefixes) with other keys: {stray}'
            )
        sd = OrderedDict((k[len('model.') :], v) for k, v in sd.items() if k.startswith('model.'))
    return sd


def is_official_mdeq_state_dict(sd: Mapping[str, Any]) -> bool:
    """Whether ``sd`` (already unwrapped) uses the official key layout (``fullstage.*``)."""
    return any(k.startswith('fullstage.') for k in sd)


def convert_mdeq_state_dict(obj: Any) -> OrderedDict[str, Tensor]:
    """Map an official MDEQ checkpoint to :class:`MDEQNet` keys.

    Args:
        obj: An official checkpoint as loaded by ``torch.load`` (see :func:`unwrap_checkpoint`).

    Returns:
        ``OrderedDict`` with keys ``stem.*``, ``injection.*``, ``layer.*`` and
        ``cls_head.*``/``seg_head.*`` if the checkpoint had a head. Tensors are shared, not copied.

    Raises:
        ValueError: If the checkpoint has no ``fullstage.*`` keys, or has keys that are neither
            mapped nor known duplicates (all of them are listed).
    """
    sd = unwrap_checkpoint(obj)
    if not is_official_mdeq_state_dict(sd):
        sample = list(sd)[:8]
        raise ValueError(
            'not an official MDEQ checkpoint: no "fullstage.*" keys (first keys: '
            f'{sample}); if it is already converted, load it directly'
        )
    out: OrderedDict[str, Tensor] = OrderedDict()
    unknown = []
    for key, value in sd.items():
        if key.startswith(DROPPED_PREFIXES):
            continue
        if not any(p.fullmatch(key) for p in OFFICIAL_KEY_PATTERNS):
            unknown.append(key)
            continue
        for src, dst in KEY_MAP:
            if key.startswith(src):
                out[dst + key[len(src) :]] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(
            f'{len(unknown)} key(s) of the checkpoint are not official MDEQ keys '
            f'and have no MDEQNet counterpart: {unknown}. Known modules: '
            f'{[s for s, _ in KEY_MAP]} (dropped: {list(DROPPED_PREFIXES)})'
        )
    return out


_BRANCH_RE = re.compile(r'^layer\.branches\.(\d+)\.blocks\.(\d+)\.conv1\.weight(_v)?$')


def infer_mdeq_arch(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    """Read the architecture of a converted state dict from its shapes.

    Args:
        sd: A state dict with :class:`MDEQNet` keys.

    Returns:
        ``dict(num_channels, num_blocks, expansion, wnorm, head, num_classes)``; ``head`` is
        ``'cls'``, ``'seg'`` or None and ``num_classes`` None without a head.

    Raises:
        ValueError: If no ``layer.branches.*.conv1`` weight is present.
    """
    blocks: dict[int, int] = {}
    widths: dict[int, tuple[int, int]] = {}
    wnorm = False
    for key, value in sd.items():
        m = _BRANCH_RE.match(key)
        if m:
            b, k = int(m.group(1)), int(m.group(2))
            blocks[b] = max(blocks.get(b, 0), k + 1)
            widths[b] = (int(value.shape[1]), int(value.shape[0]))  # (C, E*C)
            wnorm = wnorm or m.group(3) is not None
    if not blocks:
        raise ValueError('no layer.branches.*.blocks.*.conv1 weights: not an MDEQNet state dict')
    n = max(blocks) + 1
    chans = tuple(widths[i][0] for i in range(n))
    head, num_classes = None, None
    if 'cls_head.classifier.weight' in sd:
        head, num_classes = 'cls', int(sd['cls_head.classifier.weight'].shape[0])
    elif 'seg_head.last_layer.3.weight' in sd:
        head, num_classes = 'seg', int(sd['seg_head.last_layer.3.weight'].shape[0])
    return dict(
        num_channels=chans,
        num_blocks=tuple(blocks[i] for i in range(n)),
        expansion=widths[0][1] // widths[0][0],
        wnorm=wnorm,
        head=head,
        num_classes=num_classes,
    )


def load_official_checkpoint(path: str, *, allow_pickle: bool = False) -> Any:
    """``torch.load`` an official checkpoint on CPU (``weights_only`` unless ``allow_pickle``).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file needs full unpickling and ``allow_pickle`` is False.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    try:
        return torch.load(path, map_location='cpu', weights_only=not allow_pickle)
    except Exception as err:  # noqa: BLE001 - torch raises UnpicklingError/RuntimeError
        if allow_pickle:
            raise
        raise ValueError(
            f'{path} could not be loaded with weights_only=True ({err}); if you '
            f'trust the file, pass allow_pickle=True (--allow-pickle)'
        ) from err


def to_encoder_decoder_layout(state: Mapping[str, Tensor]) -> OrderedDict[str, Tensor]:
    """Re-key a converted *segmentation* MDEQ for ``StreamDEQEncoderDecoder`` + mmseg ``FCNHead``.

    The backbone goes to ``backbone.net.*`` (the ``mmvideoeq.MDEQ`` backbone wraps ``MDEQNet`` as
    ``net``); the reference's ``last_layer`` maps to an ``FCNHead(num_convs=1, kernel_size=1,
    concat_input=False)`` with a BN ``norm_cfg``: ``last_layer.0`` -> ``decode_head.convs.0.conv``,
    ``last_layer.1`` -> ``decode_head.convs.0.bn``, ``last_layer.3`` -> ``decode_head.conv_seg``.
    mmcv's ``ConvModule`` has no conv bias when it has a norm, so the reference's conv bias ``b`` is
    folded into the BN statistics (``running_mean - b``): exact in evaluation, and irrelevant in
    training where BN subtracts the batch mean. The decode head must use ``align_corners=True``
    (the reference's bilinear resizing) to reproduce the reference's logits.

    Args:
        state: A state dict with :class:`MDEQNet` keys including ``seg_head.*``.

    Returns:
        ``OrderedDict`` with ``backbone.net.*`` and ``decode_head.*`` keys.

    Raises:
        ValueError: If ``state`` has no segmentation head or has other unexpected keys.
    """
    if 'seg_head.last_layer.0.weight' not in state:
        raise ValueError(
            'to_encoder_decoder_layout needs a segmentation checkpoint (seg_head.*); '
            'a classification checkpoint initialises the backbone only: use '
            "init_cfg=dict(type='Pretrained', checkpoint=...) on the backbone"
        )
    out: OrderedDict[str, Tensor] = OrderedDict()
    head = {}
    for key, value in state.items():
        if key.startswith(('stem.', 'injection.', 'layer.')):
            out['backbone.net.' + key] = value
        elif key.startswith('seg_head.last_layer.'):
            head[key[len('seg_head.last_layer.') :]] = value
        else:
            raise ValueError(f'unexpected key {key!r} for the encoder-decoder layout')
    bias = head.pop('0.bias')
    out['decode_head.convs.0.conv.weight'] = head.pop('0.weight')
    for name in ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked'):
        out[f'decode_head.convs.0.bn.{name}'] = head.pop(f'1.{name}')
    out['decode_head.convs.0.bn.running_mean'] = out['decode_head.convs.0.bn.running_mean'] - bias
    out['decode_head.conv_seg.weight'] = head.pop('3.weight')
    out['decode_head.conv_seg.bias'] = head.pop('3.bias')
    if head:
        raise ValueError(f'unexpected segmentation head keys: {sorted(head)}')
    return out
