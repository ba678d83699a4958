"""Train a model from a config (mmdet 3.x ``tools/train.py`` conventions).

Example:
    python tools/train.py configs/streamdeq_vid.py --work-dir work_dirs/vid
    bash tools/dist_train.sh configs/streamdeq_vid.py 8      # 8 GPUs, torchrun + mmengine DDP
"""

import argparse
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
    load_config,
    parse_common,
    require_file,
    set_work_dir,
    setup_launcher,
    wait_for_fresh_run_folder,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a mmvideoeq model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true', help='enable automatic mixed precision')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the total batch size',
    )
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or from the latest checkpoint in the work dir '
        'when no path is given',
    )
    add_common_args(parser)
    return parse_common(parser, argv)


def check_amp_device() -> None:
    """``--amp`` needs a device mmengine's ``AmpOptimWrapper`` trains on: say so before starting."""
    from mmengine.device import (
        is_cuda_available,
        is_mlu_available,
        is_musa_available,
        is_npu_available,
    )

    if not (is_cuda_available() or is_npu_available() or is_mlu_available() or is_musa_available()):
        raise CLIError(
            "--amp: mixed precision (mmengine's AmpOptimWrapper) trains on a CUDA, NPU, MLU or "
            'MUSA device and none is available here; drop --amp to train in float32'
        )


def build_cfg(args):
    cfg = load_config(args.config, args.cfg_options)
    setup_launcher(cfg, args.launcher)
    set_work_dir(cfg, args.work_dir, args.config)
    if args.amp and cfg.optim_wrapper.get('type', 'OptimWrapper') != 'AmpOptimWrapper':
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise CLIError('--auto-scale-lr needs `auto_scale_lr.base_batch_size` in the config')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        check_checkpoint(args.resume, 'checkpoint to resume from')  # one line if unusable
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


@cli_main
def main():
    args = parse_args()
    if args.amp:
        check_amp_device()  # before anything is built or printed
    register_all_modules(init_default_scope=False)
    cfg = build_cfg(args)
    if cfg.get('load_from') and not cfg.resume and '://' not in str(cfg.load_from):
        require_file(cfg.load_from, 'checkpoint in load_from')  # URLs: loaded weights-only
    with claim_work_dir(cfg.work_dir):
        wait_for_fresh_run_folder(cfg.work_dir)
        if 'runner_type' in cfg:
            from mmvideoeq.registry import RUNNERS

            runner = RUNNERS.build(cfg)
        else:
            runner = Runner.from_cfg(cfg)
        runner.train()
        finish_distributed()


if __name__ == '__main__':
    main()
