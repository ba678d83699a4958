"""Test (evaluate) a model from a config and a checkpoint (mmdet 3.x ``tools/test.py`` flags).

Plain evaluation runs the config's ``test_cfg`` loop. ``--streaming`` switches to the registered
``StreamingTestLoop``: every video is walked in frame order and the DEQ solver of each frame is
started from the previous frame's fixed point (StreamDEQ, thesis Eq. 3.5) with a budget of M
iterations, for every M of ``--iters`` in one command, next to the same budgets without the warm
start and the full solve. Results: ``<work_dir>/streaming/results.json``, ``curves.png`` and a table
in the log (each run's copy stays in ``<work_dir>/<timestamp>/streaming/``). Exit status 1 when a
setting ends without a metric (every frame skipped or diverged).

``--tta`` (per-image box detectors): every image is also tested flipped and the boxes are merged
by mmdet's ``DetTTAModel`` (mmdet's ``tools/test.py --tta``); other models are refused with one
message.

Examples:
    python tools/test.py CONFIG CKPT
    python tools/test.py CONFIG CKPT --tta
    python tools/test.py CONFIG CKPT --streaming --iters 1 2 4 8
    python tools/test.py CONFIG CKPT --streaming --iters 8 --budget adaptive --tol 1e-2
    python tools/test.py CONFIG CKPT --streaming --realtime-fps 10 30 60 [--eta 0]
        [--latency-table FILE]     # streaming AP / mIoU of every setting, played back in real time
"""

import argparse
import copy
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from mmengine.runner import Runner  # noqa: E402

from mmvideoeq.utils import register_all_modules  # noqa: E402
from mmvideoeq.utils.cli import (  # noqa: E402
    CLIError,
    add_common_args,
    check_checkpoint,
    claim_work_dir,
    cli_main,
    finish_distributed,
    keep_earlier_results,
    keep_run_results,
    load_config,
    parse_common,
    require_file,
    set_work_dir,
    settings_without_metric,
    setup_launcher,
    wait_for_fresh_run_folder,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) a mmvideoeq model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the directory to save evaluation results')
    parser.add_argument('--out', type=str, help='dump predictions to a pickle file (.pkl)')
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument('--show-dir', help='directory where painted images will be saved')
    parser.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument(
        '--tta',
        action='store_true',
        help="test-time augmentation (horizontal flip, boxes merged by mmdet's DetTTAModel); "
        'per-image box detectors only',
    )
    parser.add_argument(
        '--allow-missing-weights',
        action='store_true',
        help='evaluate even if the checkpoint leaves model weights missing (they keep their '
        'random initialisation); refused by default',
    )
    parser.add_argument(
        '--allow-nonfinite-weights',
        action='store_true',
        help='evaluate even if the checkpoint holds NaN/inf weights (refused by default)',
    )
    add_common_args(parser)
    stream = parser.add_argument_group('streaming (StreamDEQ inference)')
    stream.add_argument(
        '--streaming',
        action='store_true',
        help='walk each video in frame order, warm-starting each frame',
    )
    stream.add_argument(
        '--iters',
        type=int,
        nargs='+',
        default=None,
        help='iteration budgets M per frame to sweep (default: 1 2 4 8)',
    )
    stream.add_argument(
        '--no-warm-start',
        action='store_true',
        help='evaluate only the non-streaming baseline (cold start each frame)',
    )
    stream.add_argument(
        '--no-baseline', action='store_true', help='skip the cold-start baseline runs'
    )
    stream.add_argument('--no-full-solve', action='store_true', help='skip the full-solve run')
    stream.add_argument(
        '--no-timing',
        action='store_true',
        help='skip the timing repeats (ms/frame then comes from the accuracy pass alone)',
    )
    stream.add_argument(
        '--init',
        choices=['zeros', 'reference'],
        default=None,
        help='first frame: zeros (Eq. 3.5, default) or a full solve (Eq. 3.4)',
    )
    stream.add_argument(
        '--budget',
        choices=['fixed', 'adaptive', 'time'],
        default=None,
        help='per-frame iteration budget policy',
    )
    stream.add_argument(
        '--tol', type=float, default=None, help='relative-residual tolerance of the adaptive budget'
    )
    stream.add_argument(
        '--ms-per-frame',
        type=float,
        default=None,
        help='time budget per frame in milliseconds (--budget time)',
    )
    stream.add_argument(
        '--shot-change',
        choices=['none', 'extra_iters', 'reset'],
        default=None,
        help='response to a detected shot change',
    )
    rt = parser.add_argument_group(
        'real-time simulation (streaming AP, mIoU or PQ / DVPQ, with --streaming)'
    )
    rt.add_argument(
        '--realtime-fps',
        type=float,
        nargs='+',
        default=None,
        help='play every setting back in real time at these frame rates and report streaming '
        'AP (sAP, sAP@50, in_time/miss/mismatch) next to offline AP, plus the deadline '
        'scheduler; for a segmentor (mmseg IoUMetric) streaming mIoU and aAcc next to mIoU; '
        'for DVPS (DVPQMetric) streaming DVPQ and PQ next to DVPQ and PQ',
    )
    rt.add_argument(
        '--eta',
        type=float,
        default=None,
        help='answer ground-truth frame i at (i - eta) / fps: 0 (default) when it arrives, -1 '
        'until the next frame arrives',
    )
    rt.add_argument(
        '--latency-table',
        default=None,
        help='latency table JSON (ms per frame of each setting, e.g. measured on a GPU) to use '
        'instead of the latencies measured in this run',
    )
    rt.add_argument(
        '--realtime-latency',
        choices=['auto', 'trace', 'median', 'timing'],
        default=None,
        help="measured latency of a frame: its own (trace), its setting's median, or the "
        "setting's timing repeats (timing); auto (default): timing for a fixed budget, trace "
        'where the cost varies',
    )
    rt.add_argument(
        '--realtime-pipeline',
        action='store_true',
        help='also play every stream@M back as a depth-parallel pipeline (stem / solve / heads '
        'stage times measured here)',
    )
    rt.add_argument(
        '--save-latency-table',
        default=None,
        help='write the latencies used (one per setting) to this latency table JSON',
    )
    return parse_common(parser, argv)


def apply_streaming_args(cfg, args) -> None:
    """Turn the streaming flags into the ``StreamingTestLoop`` config (flags win over config)."""
    loop = dict(cfg.get('streaming_test_cfg', dict()))
    loop['type'] = 'StreamingTestLoop'
    if args.iters is not None:
        loop['iters'] = list(args.iters)
    if args.no_warm_start:
        loop['warm_start'] = False
        loop['baseline'] = True
    if args.no_baseline:
        loop['baseline'] = False
    if args.no_full_solve:
        loop['full_solve'] = False
    if args.no_timing:
        loop['timing'] = False
    for key, value in (
        ('init', args.init),
        ('budget', args.budget),
        ('tol', args.tol),
        ('ms_per_frame', args.ms_per_frame),
        ('shot_change', args.shot_change),
    ):
        if value is not None:
            loop[key] = value
    if args.realtime_fps is not None:
        if any(f <= 0 for f in args.realtime_fps):
            raise CLIError(f'--realtime-fps must be positive frame rates, got {args.realtime_fps}')
        realtime = dict(loop.get('realtime') or {}, fps=list(args.realtime_fps))
        if args.latency_table is not None:
            require_file(args.latency_table, 'latency table')
        for key, value in (
            ('eta', args.eta),
            ('latency_table', args.latency_table),
            ('latency', args.realtime_latency),
            ('save_latency_table', args.save_latency_table),
            ('pipeline', args.realtime_pipeline or None),
        ):
            if value is not None:
                realtime[key] = value
        loop['realtime'] = realtime
    elif (
        any(
            v is not None
            for v in (args.eta, args.latency_table, args.realtime_latency, args.save_latency_table)
        )
        or args.realtime_pipeline
    ):
        raise CLIError(
            '--eta/--latency-table/--realtime-latency/--realtime-pipeline/--save-latency-table '
            'need --realtime-fps'
        )
    cfg.test_cfg = loop


def enable_visualization(cfg, args) -> None:
    """``--show``/``--show-dir``: switch the config's visualization hook on (mmdet's way)."""
    hook = cfg.default_hooks.get('visualization', None)
    if hook is None:
        hook = cfg.default_hooks['visualization'] = dict(type='VideoVisualizationHook')
    hook['draw'] = True
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    if args.show_dir:
        hook['test_out_dir'] = args.show_dir


#: Detectors whose predictions are boxes only: what mmdet's DetTTAModel merges (it refuses masks).
TTA_DETECTORS = ('DetectoRSFasterRCNN', 'DetectoRSCascadeRCNN', 'StreamDEQFasterRCNN')


def apply_tta(cfg, streaming: bool) -> None:
    """``--tta``: mmdet's flip test-time augmentation, or one message saying why not.

    As mmdet's ``tools/test.py``: the config's ``tta_model``/``tta_pipeline`` when present, else
    ``DetTTAModel`` (NMS at IoU 0.5, 100 boxes) over the test pipeline with its packing step
    replaced by ``TestTimeAug`` (flipped and not), keeping ``flip``/``flip_direction`` for the
    merge.
    """
    model_type = str(cfg.model.get('type', '')).split('.')[-1]
    if streaming:
        raise CLIError(
            '--tta and --streaming: a streamed frame is solved once, warm-started from the '
            "previous frame's state; test-time augmentation would need one stream per view. "
            'Use --tta without --streaming'
        )
    if model_type not in TTA_DETECTORS and 'tta_model' not in cfg:
        raise CLIError(
            f"--tta: {model_type} is not supported (mmdet's DetTTAModel merges boxes only; "
            f'supported: {", ".join(TTA_DETECTORS)}). Run without --tta'
        )
    if 'tta_model' not in cfg:
        cfg.tta_model = dict(
            type='mmdet.DetTTAModel',
            tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100),
        )
    dataset = cfg.test_dataloader.dataset
    while 'pipeline' not in dataset and 'dataset' in dataset:
        dataset = dataset['dataset']
    if 'tta_pipeline' not in cfg:
        pipeline = copy.deepcopy(dataset.pipeline)
        pack = dict(pipeline[-1])
        if 'meta_keys' in pack:
            pack['meta_keys'] = tuple(pack['meta_keys']) + ('flip', 'flip_direction')
        flips = [dict(type='mmdet.RandomFlip', prob=1.0), dict(type='mmdet.RandomFlip', prob=0.0)]
        pipeline[-1] = dict(type='TestTimeAug', transforms=[flips, [pack]])
        cfg.tta_pipeline = pipeline
    cfg.model = dict(**cfg.tta_model, module=cfg.model)
    dataset.pipeline = cfg.tta_pipeline


def add_checkpoint_check(cfg, allow_missing: bool, allow_nonfinite: bool = False) -> None:
    """Make sure a ``CheckpointCheckHook`` runs (a config may have replaced ``custom_hooks``)."""
    hooks = list(cfg.get('custom_hooks', []) or [])
    found = [
        h
        for h in hooks
        if h.get('type') in ('CheckpointCheckHook', 'mmvideoeq.CheckpointCheckHook')
    ]
    if not found:
        found = [dict(type='CheckpointCheckHook')]
        hooks += found
    for h in found:
        h['allow_missing_weights'] = allow_missing
        h['allow_nonfinite_weights'] = allow_nonfinite
    cfg.custom_hooks = hooks


@cli_main
def main():
    args = parse_args()
    register_all_modules(init_default_scope=False)
    if str(args.checkpoint).endswith('.py'):
        raise CLIError(
            f'the checkpoint argument {args.checkpoint!r} is a .py file; the arguments are CONFIG '
            'CHECKPOINT'
        )
    check_checkpoint(args.checkpoint, 'checkpoint')  # missing, empty, corrupt, unsafe: one line
    cfg = load_config(args.config, args.cfg_options)
    setup_launcher(cfg, args.launcher)
    set_work_dir(cfg, args.work_dir, args.config)
    cfg.load_from = args.checkpoint
    add_checkpoint_check(cfg, args.allow_missing_weights, args.allow_nonfinite_weights)
    if args.streaming:
        apply_streaming_args(cfg, args)
    elif any(v for v in (args.iters, args.no_warm_start, args.init, args.budget)):
        raise CLIError('--iters/--no-warm-start/--init/--budget need --streaming')
    elif args.realtime_fps is not None:
        raise CLIError('--realtime-fps needs --streaming')
    if args.tta:
        apply_tta(cfg, args.streaming)
    if args.show or args.show_dir:
        enable_visualization(cfg, args)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise CLIError(f'--out must be a .pkl file, got {args.out!r}')
    with claim_work_dir(cfg.work_dir):
        run_test(cfg, args)


def run_test(cfg, args) -> None:
    """Build the runner and test. A streaming run keeps a copy of its results in its own run
    folder (``<work_dir>/<timestamp>/streaming/``, beside its log) and fails (exit 1) when a
    setting produced no metric, e.g. because every frame diverged."""
    out_dir = None
    main_rank = int(os.environ.get('RANK', '0')) == 0  # one process keeps the results
    if args.streaming and main_rank:
        out_dir = cfg.test_cfg.get('out_dir') or osp.join(cfg.work_dir, 'streaming')
        kept = keep_earlier_results(out_dir, cfg.work_dir)
        if kept is not None:
            print(
                f'note: {out_dir} holds the results of an earlier run, which this run replaces; '
                f'they are kept in {kept}',
                file=sys.stderr,
            )
    wait_for_fresh_run_folder(cfg.work_dir)
    runner = Runner.from_cfg(cfg)
    if args.out is not None:
        from mmengine.evaluator import DumpResults

        runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
    try:
        metrics = runner.test()
    finally:
        if out_dir is not None:
            keep_run_results(out_dir, runner.log_dir)
    finish_distributed()
    settings = None
    if hasattr(runner.test_loop, 'settings'):
        settings = [s['name'] for s in runner.test_loop.settings()]
    empty = settings_without_metric(metrics, settings)
    if empty:
        print(
            f'error: no metric for {", ".join(empty)}: every frame was skipped or diverged '
            f'(the reasons are listed in the log{" and results.json" if out_dir else ""}); '
            'check the checkpoint and the data',
            file=sys.stderr,
        )
        sys.exit(1)


if __name__ == '__main__':
    main()
