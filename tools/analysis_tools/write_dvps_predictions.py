"""Stream a ViP-DeepLab model over a DVPS dataset and write its predictions in the reference layout.

Example (the bundled Cityscapes-DVPS part; evaluate the folder with ``eval_dvps.py``)::

    python tools/analysis_tools/write_dvps_predictions.py \
        configs/vip_deeplab/vip-deeplab_mdeq-tiny-sur8_600it_bundled-cityscapes-dvps.py \
        checkpoints/vip-deeplab_mdeq-tiny-sur8_600it_bundled-cityscapes-dvps.pth \
        --iters 2 --out-dir preds
    python tools/analysis_tools/eval_dvps.py cityscapes_dvps \
        data/bundled_dvps/cityscapes_dvps/video_sequence/val \
        --pan-dir preds/panoptic --depth-dir preds/depth

The frames of the config's test set are streamed in order, each video from a cold start: with
an equilibrium backbone every frame gets ``--iters`` solver steps from the previous frame's
fixed point (the model's full solve without ``--iters``), a per-frame backbone runs one forward
pass; the stitching carries the instance ids. ``OUT/panoptic`` and ``OUT/depth`` receive the
files in the layout ViP-DeepLab's evaluation scripts read (``cityscapes_dvps`` or
``semkitti_dvps``, from the dataset); instance ids that would not fit the format are re-numbered
per sequence (``mmvideoeq.apis.prediction_writer``). Labels are not needed (test splits).
"""

import argparse
import copy
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from mmvideoeq.apis.prediction_writer import PREDICTION_FORMATS, DVPSPredictionWriter  # noqa: E402
from mmvideoeq.registry import MODELS  # noqa: E402
from mmvideoeq.streaming import StreamFrame, StreamPolicy, run_stream  # noqa: E402
from mmvideoeq.structures import SKIP_KEY  # noqa: E402
from mmvideoeq.utils import register_all_modules  # noqa: E402
from mmvideoeq.utils.checkpoint import load_weights  # noqa: E402
from mmvideoeq.utils.cli import (  # noqa: E402
    CLIError,
    DictAction,
    cli_main,
    load_config,
    require_file,
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('config', help='model config (its test_dataloader gives the frames)')
    p.add_argument('checkpoint', help='checkpoint file')
    p.add_argument('--out-dir', required=True, help='predictions go to OUT/panoptic, OUT/depth')
    p.add_argument(
        '--iters', type=int, default=None, help='solver steps per frame (default: the full solve)'
    )
    p.add_argument('--overwrite', action='store_true', help='write into non-empty folders')
    p.add_argument('--device', default='cpu')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config keys')
    return p.parse_args(argv)


def build_loader(cfg):
    """The test set in order, one frame per batch, without the annotation loaders."""
    loader_cfg = copy.deepcopy(cfg.test_dataloader)
    dataset = loader_cfg['dataset']
    dataset['pipeline'] = [t for t in dataset['pipeline'] if 'Annotation' not in t['type']]
    dataset['require_labels'] = False
    loader_cfg.update(batch_size=1, num_workers=0, persistent_workers=False)
    loader_cfg['sampler'] = dict(type='DefaultSampler', shuffle=False)
    return Runner.build_dataloader(loader_cfg)


def dataset_format(loader) -> str:
    dataset = loader.dataset
    fmt = dataset.get_data_info(0).get('panoptic_format') if len(dataset) else None
    if fmt not in PREDICTION_FORMATS:
        raise CLIError(
            f'the test set ({type(dataset).__name__}) is not a DVPS dataset with a prediction '
            f'layout ({", ".join(PREDICTION_FORMATS)}); got panoptic_format {fmt!r}'
        )
    return fmt


@torch.no_grad()
def write_predictions(model, loader, writer, policy) -> dict:
    """Stream every frame of ``loader`` through ``model`` and write it; returns counts."""
    div = model.decode_head.label_divisor
    states: dict = {}
    counts = dict(written=0, skipped=0, diverged=0)
    for batch in loader:
        data = model.data_preprocessor(batch, False)
        sample = data['data_samples'][0]
        meta = sample.metainfo
        frame = StreamFrame(
            data['inputs'],
            meta['video_id'],
            meta['frame_id'],
            payload=sample,
            skip=meta.get(SKIP_KEY),
        )
        run = run_stream(
            model.stream_step, [frame], policy, states=states, zeros_like_fn=model.stream_zero_state
        )
        if run.outputs[0] is None:
            counts['skipped'] += 1
            print(f'skipped {meta.get("img_path")}: {meta.get(SKIP_KEY)}', file=sys.stderr)
            continue
        counts['diverged'] += bool(run.records[0].diverged)
        writer.write_sample(run.outputs[0], label_divisor=div)
        counts['written'] += 1
    return counts


@cli_main
def main(argv=None):
    args = parse_args(argv)
    require_file(args.checkpoint, 'checkpoint')
    cfg = load_config(args.config, args.cfg_options)
    register_all_modules()
    model = MODELS.build(cfg.model)
    load_weights(model, args.checkpoint)
    model = model.to(args.device).eval()
    if not getattr(model.decode_head, 'with_panoptic', False):
        raise CLIError(f'{args.config}: the model predicts no panoptic ids (a depth-only model)')
    loader = build_loader(cfg)
    fmt = dataset_format(loader)
    budget = (
        dict(type='FullSolve') if args.iters is None else dict(type='FixedBudget', iters=args.iters)
    )
    policy = StreamPolicy.from_cfg(dict(budget=budget, init='zeros', max_history=0))
    writer = DVPSPredictionWriter(
        fmt, args.out_dir, reuse_gap=model.test_cfg['id_reuse_gap'], overwrite=args.overwrite
    )
    counts = write_predictions(model, loader, writer, policy)
    print(
        f"wrote {counts['written']} frames ({fmt}) to {writer.pan_dir} and {writer.depth_dir}; "
        f"{counts['skipped']} skipped, {counts['diverged']} diverged"
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
