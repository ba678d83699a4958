"""Convert an official MDEQ checkpoint (locuslab/mdeq) to mmvideoeq's ``MDEQNet`` keys.

Reads the released ImageNet (``MDEQClsNet`` state dict) and Cityscapes (``FullModel`` state dict,
``model.``/``loss.`` prefixes) ``.pkl`` files, as well as ``checkpoint.pth.tar`` files
(``{'state_dict': ...}``) and DataParallel (``module.``) saves. Writes
``{'state_dict': ..., 'meta': ...}``, loadable by ``MDEQNet.load_state_dict`` and by the
``mmvideoeq.MDEQ`` backbone's ``init_cfg=dict(type='Pretrained', checkpoint=DST)``.

Plain PyTorch: runs without any OpenMMLab package.

Examples:
    python tools/model_converters/mdeq_to_mmvideoeq.py MDEQ_XL_Cls.pkl mdeq_xl_imagenet.pth
    python tools/model_converters/mdeq_to_mmvideoeq.py MDEQ_XL_Seg.pkl mdeq_xl_cityscapes.pth
    # the whole segmentor (StreamDEQEncoderDecoder + mmseg FCNHead), for `load_from`:
    python tools/model_converters/mdeq_to_mmvideoeq.py MDEQ_XL_Seg.pkl mdeq_xl_cs_segmentor.pth \
        --layout encoder-decoder
"""

import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402

from mmvideoeq.deq.mdeq import MDEQ_PRESETS  # noqa: E402
from mmvideoeq.deq.mdeq_convert import (  # noqa: E402
    convert_mdeq_state_dict,
    infer_mdeq_arch,
    load_official_checkpoint,
    to_encoder_decoder_layout,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert an official MDEQ checkpoint to mmvideoeq MDEQNet keys'
    )
    parser.add_argument('src', help='official checkpoint (.pkl / .pth / .pth.tar)')
    parser.add_argument('dst', help='output file (.pth)')
    parser.add_argument(
        '--allow-pickle',
        action='store_true',
        help='load SRC with full unpickling (only for files you trust)',
    )
    parser.add_argument(
        '--drop-head', action='store_true', help='keep only the backbone (stem, injection, layer)'
    )
    parser.add_argument(
        '--layout',
        choices=['mdeqnet', 'encoder-decoder'],
        default='mdeqnet',
        help='mdeqnet: MDEQNet keys (backbone init_cfg Pretrained); encoder-decoder: keys of '
        'StreamDEQEncoderDecoder + mmseg FCNHead (segmentation checkpoints, for load_from)',
    )
    parser.add_argument('--force', action='store_true', help='overwrite DST if it exists')
    return parser.parse_args(argv)


def matching_preset(arch: dict) -> str | None:
    """Name of the preset whose widths/expansion match ``arch`` (e.g. ``'xl'``), else None."""
    for name, tasks in MDEQ_PRESETS.items():
        p = tasks['cls']
        if tuple(p['num_channels']) == arch['num_channels'] and p['expansion'] == arch['expansion']:
            return name
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    if osp.abspath(args.src) == osp.abspath(args.dst):
        raise ValueError('src and dst are the same file')
    if osp.exists(args.dst) and not args.force:
        raise ValueError(f'{args.dst} exists; pass --force to overwrite it')
    obj = load_official_checkpoint(args.src, allow_pickle=args.allow_pickle)
    state = convert_mdeq_state_dict(obj)
    if args.drop_head:
        state = type(state)(
            (k, v) for k, v in state.items() if not k.startswith(('cls_head.', 'seg_head.'))
        )
    arch = infer_mdeq_arch(state)
    preset = matching_preset(arch)
    if args.layout == 'encoder-decoder':
        state = to_encoder_decoder_layout(state)
    meta = dict(
        layout=args.layout,
        source=osp.basename(args.src),
        converter='tools/model_converters/mdeq_to_mmvideoeq.py',
        arch=preset,
        **arch,
    )
    out_dir = osp.dirname(osp.abspath(args.dst))
    os.makedirs(out_dir, exist_ok=True)
    torch.save(dict(state_dict=state, meta=meta), args.dst)
    n_params = sum(
        v.numel()
        for k, v in state.items()
        if not k.endswith(('running_mean', 'running_var', 'num_batches_tracked'))
    )
    print(f'converted {len(state)} tensors ({n_params / 1e6:.2f}M parameters) -> {args.dst}')
    print(
        f'arch: {preset or "custom"} num_channels={arch["num_channels"]} '
        f'expansion={arch["expansion"]} head={arch["head"]} num_classes={arch["num_classes"]}'
    )
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except (ValueError, TypeError, FileNotFoundError) as err:
        if os.environ.get('MMVIDEOEQ_DEBUG'):
            raise
        print(f'error: {err}', file=sys.stderr)
        sys.exit(2)
