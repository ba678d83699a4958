"""Cost of RFP and SAC against the plain ResNet-FPN, and of a streamed RFP step against T = 2.

Example:
    python tools/benchmark_detectors.py --size 256 384 --repeats 5 --threads 1
    python tools/benchmark_detectors.py --depth 26 --base-channels 8 --fpn 32 --size 144 240
    python tools/benchmark_detectors.py --configs \
        configs/detectors/faster-rcnn_r26-tiny-detectors_16e_bundled-vid.py \
        configs/detectors/faster-rcnn_r26-tiny-detectors-stream_16e_bundled-vid.py \
        --checkpoints checkpoints/faster-rcnn_r26-tiny-detectors_16e_bundled-vid.pth \
        checkpoints/faster-rcnn_r26-tiny-detectors-stream_16e_bundled-vid.pth --repeats 15

Feature extraction only (backbone + neck, the part DetectoRS changes; the heads are the same in
every row), random weights (the cost does not depend on them), one image. Every variant runs once
per repeat in turn (interleaved, so load changes on a shared machine hit all rows alike) and the
median [min, max] over the repeats is reported, with the median's ratio to the plain ResNet + FPN:

* ``plain``: ResNet + FPN (HTC's baseline backbone);
* ``plain-aws``: the same with DetectoRS' weight-standardised convolutions (``ConvAWS``, used by
  every DetectoRS config; without autograd the standardised weights are kept between frames);
* ``plain-aws-uncached``: the same, standardising the weights at every forward (the cost of a
  first frame, and of every forward in training);
* ``plain-aws-mmcv``: the same with mmcv's own ``ConvAWS2d`` (standardised at every forward);
* ``sac``, ``sac-dcn-mmcv``, ``sac-no-dcn``: SAC in stages 2-4 with the default deformable
  convolution (``deform_impl='auto'``: plain PyTorch on CPU, mmcv's op on CUDA), with mmcv's
  compiled op forced, without deformable convolution;
* ``rfp``: RFP with T = 2 (two backbone passes, ASPP, fusion);
* ``detectors``: RFP (T = 2) + SAC (``deform_impl='auto'``), the chapter's DetectoRS;
* ``rfp-step`` / ``detectors-step``: one streamed recursive step (the feedback pass from a carried
  pyramid, ``RecursiveFeaturePyramid.feedback_step``), the per-frame cost of streaming RFP with
  M = 1, next to its T = 2 row.

With ``--configs`` it times whole detectors instead (backbone, RFP, RPN and RoI heads and
post-processing; pre-processed input, the first frame of the config's test set when the data is
there, else a random image of ``--size``), through the streaming protocol (``stream_step``), three
rows per config, interleaved with each other and with the other configs' rows:

* ``full``: the model's full solve from zeros (``T = 2`` for the chapter's RFP: the detector per
  frame);
* ``cold@1``: one step from zeros (no feedback);
* ``stream@1``: one step from a carried state (the pyramid of the same frame),

and the ratio of each median to the first config's ``full`` (``x full``: the cost of a streamed
frame against a ``T = 2`` frame). ``--checkpoints`` loads trained weights (one per config).

``--json`` also writes the numbers (every repeat's time).
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

from mmvideoeq.models.layers import ConvAWS2d  # noqa: E402
from mmvideoeq.registry import MODELS  # noqa: E402
from mmvideoeq.utils import register_all_modules  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--depth', type=int, default=50, help='ResNet depth (14, 26, 50, 101)')
    p.add_argument('--base-channels', type=int, default=64)
    p.add_argument('--fpn', type=int, default=256, help='FPN width')
    p.add_argument('--size', type=int, nargs=2, default=[256, 384], metavar=('H', 'W'))
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--device', default='cpu')
    p.add_argument('--threads', type=int, default=None, help='torch threads (CPU)')
    p.add_argument('--json', default=None, help='also write the numbers here')
    p.add_argument('--configs', nargs='+', default=None, help='time these whole detectors')
    p.add_argument('--checkpoints', nargs='+', default=None, help='weights of --configs')
    return p.parse_args(argv)


def _sac(impl='auto', deform=True):
    return dict(type='SwitchableAtrousConv', use_deform=deform, deform_impl=impl)


def build_variants(depth: int, base: int, fpn: int) -> dict:
    """Backbone + neck pairs of every row (see the module docstring)."""
    stages = [4 * base * 2**i for i in range(4)]

    def backbone(sac=None, aws=False, **kw):
        cfg = dict(type='DetectoRSResNet', depth=depth, base_channels=base, **kw)
        if sac is not None or aws:  # DetectoRS' weight-standardised convolutions (ConvAWS)
            cfg['conv_cfg'] = dict(type='mmengine.ConvAWS' if aws == 'mmcv' else 'ConvAWS')
        if sac is not None:
            cfg.update(sac=sac, stage_with_sac=(False, True, True, True))
        return cfg

    def rfp(sac=None):
        return (
            backbone(sac, aws=True, output_img=True),
            dict(
                type='RecursiveFeaturePyramid',
                in_channels=stages,
                out_channels=fpn,
                num_outs=5,
                rfp_steps=2,
                aspp_out_channels=fpn // 4,
                rfp_backbone=backbone(sac, aws=True, rfp_inplanes=fpn),
            ),
        )

    plain_neck = dict(type='mmdet.FPN', in_channels=stages, out_channels=fpn, num_outs=5)
    return {
        'plain': (backbone(), plain_neck),
        'plain-aws': (backbone(aws=True), plain_neck),
        'plain-aws-uncached': (backbone(aws=True), plain_neck),
        'plain-aws-mmcv': (backbone(aws='mmcv'), plain_neck),
        'sac': (backbone(_sac()), plain_neck),
        'sac-dcn-mmcv': (backbone(_sac('mmcv')), plain_neck),
        'sac-no-dcn': (backbone(_sac(deform=False)), plain_neck),
        'rfp': rfp(),
        'detectors': rfp(_sac()),
    }


class Variant:
    """A built backbone + neck and how to run it."""

    def __init__(self, backbone_cfg: dict, neck_cfg: dict, device: str) -> None:
        self.backbone = MODELS.build(backbone_cfg).to(device)
        self.neck = MODELS.build(neck_cfg).to(device)
        self.backbone.eval()  # (mmdet's ResNet.train returns None: no chaining)
        self.neck.eval()
        self.is_rfp = 'rfp_steps' in neck_cfg

    def extract(self, x):
        feats = self.backbone(x)
        return self.neck(feats, backbone=self.backbone) if self.is_rfp else self.neck(feats)

    def streamed_step(self, x, z):
        return self.neck.feedback_step(x, z, step=1, backbone=self.backbone)


def _sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


@torch.no_grad()
def time_interleaved(runs: dict, repeats: int, device: str) -> dict:
    """Milliseconds of every run in every one of ``repeats`` rounds (after one warm-up round)."""
    for fn in runs.values():  # warm-up
        fn()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append((time.perf_counter() - t0) * 1e3)
    return times


@torch.no_grad()
def measure(variants: dict, x, repeats: int, device: str) -> dict:
    """Milliseconds of every row in every round, interleaved over ``repeats`` rounds."""
    runs = {}
    for name, v in variants.items():
        runs[name] = lambda v=v: v.extract(x)
        if v.is_rfp:
            z = [t.clone() for t in v.extract(x)]
            runs[f'{name}-step'] = lambda v=v, z=z: v.streamed_step(x, z)
    return time_interleaved(runs, repeats, device)


def _range(t: list) -> str:
    return f'{statistics.median(t):8.1f} [{min(t):.1f}, {max(t):.1f}]'


def report(times: dict) -> list:
    """Table lines: median [min, max] ms, ratio to plain, the streamed steps against T = 2."""
    ms = {name: statistics.median(t) for name, t in times.items()}
    lines = [f'{"variant":<18} {"ms median [min, max]":>26} {"x plain":>8} {"x T=2":>7}']
    for name, value in ms.items():
        t2 = ms.get(name[: -len('-step')]) if name.endswith('-step') else None
        ratio_t2 = f'{value / t2:7.2f}' if t2 else f'{"":>7}'
        lines.append(f'{name:<18} {_range(times[name]):>26} {value / ms["plain"]:8.2f} {ratio_t2}')
    return lines


def _first_frame(cfg, model, size, device):
    """The first test frame of ``cfg`` (pre-processed, with its data samples), or a random one."""
    from mmengine.runner import Runner

    try:
        loader = Runner.build_dataloader(
            dict(cfg.test_dataloader, batch_size=1, num_workers=0, persistent_workers=False)
        )
        data = model.data_preprocessor(next(iter(loader)), False)
        return data['inputs'].to(device), data['data_samples'], 'first test frame'
    except (FileNotFoundError, OSError, ValueError) as err:
        from mmdet.structures import DetDataSample

        h, w = size
        meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w), scale_factor=(1.0, 1.0))
        sample = DetDataSample(metainfo=dict(meta, batch_input_shape=(h, w)))
        x = torch.randn(1, 3, h, w, device=device)
        return x, [sample], f'random {h}x{w} image ({type(err).__name__}: no test data)'


def detector_runs(args) -> tuple[dict, list]:
    """``stream_step`` runs (full, cold@1, stream@1) of every ``--configs`` detector."""
    from mmengine.config import Config

    from mmvideoeq.deq import FULL_SOLVE, Budget
    from mmvideoeq.utils.checkpoint import load_weights

    ckpts = args.checkpoints or [None] * len(args.configs)
    if len(ckpts) != len(args.configs):
        raise SystemExit('--checkpoints needs one file per --configs entry')
    runs, notes = {}, []
    for k, (path, ckpt) in enumerate(zip(args.configs, ckpts)):
        cfg = Config.fromfile(path)
        model = MODELS.build(cfg.model)
        if ckpt:
            load_weights(model, ckpt)
        model.to(args.device).eval()
        x, samples, what = _first_frame(cfg, model, args.size, args.device)
        name = f'{k}:{osp.splitext(osp.basename(path))[0]}'
        notes.append(f'{name}: {what}')
        z = model.stream_step(x, None, [None], FULL_SOLVE, samples).z
        runs[f'{name} full'] = lambda m=model, x=x, s=samples: m.stream_step(
            x, None, [None], FULL_SOLVE, s
        )
        runs[f'{name} cold@1'] = lambda m=model, x=x, s=samples: m.stream_step(
            x, None, [None], Budget.steps(1), s
        )
        runs[f'{name} stream@1'] = lambda m=model, x=x, s=samples, z=z: m.stream_step(
            x, z, [None], Budget.steps(1), s
        )
    return runs, notes


def detector_report(times: dict) -> list:
    """Table lines: median [min, max] ms per frame and the ratio to the first config's full."""
    ms = {name: statistics.median(t) for name, t in times.items()}
    base = next(v for k, v in ms.items() if k.endswith(' full'))
    width = max(len(k) for k in ms) + 2
    lines = [f'{"detector / setting":<{width}} {"ms median [min, max]":>26} {"x full(0)":>10}']
    for name, value in ms.items():
        lines.append(f'{name:<{width}} {_range(times[name]):>26} {value / base:10.2f}')
    return lines


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    register_all_modules()
    torch.manual_seed(0)
    machine = dict(platform=platform.platform(), threads=torch.get_num_threads())
    if args.configs:
        runs, notes = detector_runs(args)
        times = time_interleaved(runs, args.repeats, args.device)
        print('\n'.join(notes + detector_report(times)))
        out = dict(ms=times, args=vars(args), machine=machine, inputs=notes)
        if args.json:
            with open(args.json, 'w') as f:
                json.dump(out, f, indent=1)
        return out
    configs = build_variants(args.depth, args.base_channels, args.fpn)
    variants = {name: Variant(*cfg, args.device) for name, cfg in configs.items()}
    for name, v in variants.items():
        if name.endswith('-uncached'):
            for m in v.backbone.modules():
                if isinstance(m, ConvAWS2d):
                    m.cache_standardised = False
    x = torch.randn(1, 3, *args.size, device=args.device)
    times = measure(variants, x, args.repeats, args.device)
    print('\n'.join(report(times)))
    out = dict(ms=times, args=vars(args), machine=machine)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == '__main__':
    main()
