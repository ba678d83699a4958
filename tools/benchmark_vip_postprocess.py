"""Streaming ViP-DeepLab: the network step against its post-processing and stitching, side by side.

Example:
    python tools/benchmark_vip_postprocess.py --size 256 512 --centers 25 100 --repeats 7 \
        --threads 1

For one streamed frame ``t`` (its predecessor's memory at hand) it times, interleaved in every
repeat,

* the **network**: the backbone (``M`` solver steps from the previous fixed point, or one forward
  pass), the heads, the next-frame branch on the remembered feature, and the resizing of all
  outputs to the input size (deeplab2 resizes inside its model too);
* the **post-processing**: the semantic ids (``semantic_ids``), Panoptic-DeepLab
  grouping of frame ``t`` (``panoptic_frame``), the pair ``(t-1, t)`` (``pair_groups``) and the
  stitching (``stitch_frame``, ``sequence_panoptic``);
* the whole ``stream_step``, as a check that the pieces add up.

Random weights suffice for the network's cost; the centre heatmap is replaced by ``K`` peaks on
a jittered grid (a random-weight head predicts none; ``--centers 0`` keeps the model's own), so
the grouping works with ``K`` centres; the semantic classes and offsets are the network's. With
random weights and noise frames that is a hard case for the post-processing (most pixels are
things, the votes spread evenly, the classes change from pixel to pixel); ``--checkpoint`` and
``--image`` (the frame pair is the image and the image shifted by 4 pixels) give a trained
model's maps. Prints medians [min, max] in ms.
"""

import argparse
import json
import os.path as osp
import platform
import statistics
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402

from mmvideoeq.deq import Budget  # noqa: E402
from mmvideoeq.models.utils.panoptic_postprocess import (  # noqa: E402
    pair_groups,
    panoptic_frame,
    semantic_ids,
)
from mmvideoeq.models.utils.video_stitching import sequence_panoptic, stitch_frame  # noqa: E402
from mmvideoeq.registry import MODELS  # noqa: E402
from mmvideoeq.utils import register_all_modules  # noqa: E402
from mmvideoeq.utils.checkpoint import load_weights  # noqa: E402

DEFAULT_CONFIG = 'configs/vip_deeplab/vip-deeplab_mdeq-tiny-sur8_600it_bundled-cityscapes-dvps.py'
NETWORK = ('backbone', 'heads', 'next_frame', 'resize')
POST = ('semantic', 'grouping', 'pair', 'stitching')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('config', nargs='?', default=DEFAULT_CONFIG)
    p.add_argument('--checkpoint', default=None)
    p.add_argument('--size', type=int, nargs=2, default=[256, 512], metavar=('H', 'W'))
    p.add_argument(
        '--centers', type=int, nargs='+', default=[25, 100], help="K centres (0: the model's)"
    )
    p.add_argument('--image', default=None, help='an image (else noise frames)')
    p.add_argument('--iters', type=int, default=1, help='solver steps M per frame')
    p.add_argument('--repeats', type=int, default=7)
    p.add_argument('--device', default='cpu')
    p.add_argument('--threads', type=int, default=None, help='torch threads (CPU)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--json', default=None, help='also write the numbers here')
    return p.parse_args(argv)


def peaks(h: int, w: int, k: int, seed: int, device) -> torch.Tensor:
    """``(1, 1, H, W)`` heatmap with ``k`` peaks on a jittered grid (at least 2 cells apart)."""
    g = torch.Generator().manual_seed(seed)
    rows = max(1, round((k * h / w) ** 0.5))
    cols = -(-k // rows)
    heat = torch.zeros(1, 1, h, w)
    cells = torch.randperm(rows * cols, generator=g)[:k]
    for c in cells.tolist():
        r, q = divmod(c, cols)
        y = int((r + 0.25 + 0.5 * float(torch.rand(1, generator=g))) * h / rows)
        x = int((q + 0.25 + 0.5 * float(torch.rand(1, generator=g))) * w / cols)
        heat[0, 0, min(y, h - 1), min(x, w - 1)] = 0.5 + 0.5 * float(torch.rand(1, generator=g))
    return heat.to(device)


class Timer:
    def __init__(self, device):
        self.device = device
        self.ms: dict[str, list[float]] = {}

    def __call__(self, name, fn):
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
        t0 = time.perf_counter()
        out = fn()
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
        self.ms.setdefault(name, []).append((time.perf_counter() - t0) * 1e3)
        return out


def frames(model, size, image, seed, device) -> list[torch.Tensor]:
    """Two preprocessed frames ``(1, 3, H, W)``: noise, or an image and the image shifted."""
    h, w = size
    if image is None:
        g = torch.Generator().manual_seed(seed)
        return [torch.randn(1, 3, h, w, generator=g).to(device) for _ in range(2)]
    import mmcv

    img = torch.from_numpy(mmcv.imresize(mmcv.imread(image), (w, h))).permute(2, 0, 1)
    pair = [img, torch.roll(img, 4, dims=2)]
    data = dict(inputs=[f.contiguous() for f in pair], data_samples=[SegDataSample()] * 2)
    return list(model.data_preprocessor(data, False)['inputs'].to(device).split(1))


@torch.no_grad()
def measure(model, x, k, iters, repeats, seed, device) -> dict:
    h, w = x[0].shape[-2:]
    head = model.decode_head
    div, gap, kw = head.label_divisor, model.test_cfg['id_reuse_gap'], model.pp_kwargs()
    samples = [SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))]
    heat = peaks(h, w, k, seed, device) if k else None
    to_network = model.to_network

    def inject(outs, input_size, data_samples):  # K centres instead of the random head's
        maps = to_network(outs, input_size, data_samples)
        return dict(maps, center=heat) if heat is not None and 'center' in maps else maps

    model.to_network = inject
    budget = Budget.steps(iters)
    try:
        first = model.stream_step(x[0], None, [None], budget, samples)
        z, mem = first.z, first.memory
        timer = Timer(device)
        for _ in range(repeats + 1):  # the first pass warms up
            # the network
            if model._has_solver:
                feats = timer('backbone', lambda: model.backbone.forward_stream(x[1], z, budget)[0])
            else:
                feats = timer('backbone', lambda: model.backbone(x[1]))
            feats = tuple(feats)
            outs = timer('heads', lambda: head(feats))
            nxt = timer(
                'next_frame', lambda: dict(next_offset=head.forward_next(mem[0].high, feats))
            )
            maps, nxt = timer(
                'resize',
                lambda: (
                    model.to_network(outs, (h, w), samples),
                    model.to_network(nxt, (h, w), samples),
                ),
            )
            # the post-processing
            sem = timer(
                'semantic',
                lambda: semantic_ids(maps['semantic']),
            )
            f = timer(
                'grouping',
                lambda: panoptic_frame(
                    sem[0], maps['center'][0, 0], maps['offset'][0], label_divisor=div, **kw
                ),
            )
            right = timer('pair', lambda: pair_groups(mem[0].centers, f, nxt['next_offset'][0]))

            def stitch():
                seq, _ = stitch_frame(
                    f, right, mem[0].seq_ids, mem[0].ids, label_divisor=div, reuse_gap=gap
                )
                return sequence_panoptic(f, seq)

            timer('stitching', stitch)
            timer('stream_step', lambda: model.stream_step(x[1], z, mem, budget, samples))
    finally:
        del model.to_network
    ms = {name: v[1:] for name, v in timer.ms.items()}
    ms['network'] = [sum(ms[p][i] for p in NETWORK) for i in range(repeats)]
    ms['post'] = [sum(ms[p][i] for p in POST) for i in range(repeats)]
    ratio = [p / n for p, n in zip(ms['post'], ms['network'])]
    thing = torch.isin(sem, torch.tensor(head.thing_ids, device=sem.device)).float().mean()
    return dict(
        size=[h, w],
        centers=int(f.centers.shape[0]),
        thing_fraction=float(thing),
        ms=ms,
        ratio=ratio,
    )


def _fmt(v, digits=1) -> str:
    return f'{statistics.median(v):.{digits}f} [{min(v):.{digits}f}, {max(v):.{digits}f}]'


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    register_all_modules()
    cfg = Config.fromfile(args.config)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)  # the random weights
    model = MODELS.build(cfg.model)
    if args.checkpoint:
        load_weights(model, args.checkpoint)
    model = model.to(device).eval()
    if not model.decode_head.with_next:
        raise ValueError(f'{args.config}: the model has no next-frame branch to stream with')
    x = frames(model, args.size, args.image, args.seed, device)
    results = [
        measure(model, x, k, args.iters, args.repeats, args.seed, device) for k in args.centers
    ]
    weights = f'checkpoint {osp.basename(args.checkpoint)}' if args.checkpoint else 'random weights'
    frames_from = f'image {osp.basename(args.image)}' if args.image else 'noise frames'
    print(
        f'{osp.basename(args.config)}, {args.size[0]}x{args.size[1]}, M = {args.iters}, '
        f'device {device} ({platform.processor() or platform.machine()}, '
        f'{torch.get_num_threads()} threads), torch {torch.__version__}, {args.repeats} repeats, '
        f'{weights}, {frames_from}; '
        'ms per frame, median [min, max]'
    )
    print('\n| piece | ' + ' | '.join(f"K = {r['centers']}" for r in results) + ' |')
    print('|---|' + '---|' * len(results))
    for name in NETWORK + ('network',) + POST + ('post', 'stream_step'):
        label = {'network': '**network**', 'post': '**post-processing + stitching**'}.get(
            name, name
        )
        print(f'| {label} | ' + ' | '.join(_fmt(r['ms'][name]) for r in results) + ' |')
    print('| **post / network** | ' + ' | '.join(_fmt(r['ratio'], 3) for r in results) + ' |')
    print('\nthing pixels: ' + ', '.join(f"{r['thing_fraction']:.2f}" for r in results))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(config=args.config, iters=args.iters, results=results), f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
