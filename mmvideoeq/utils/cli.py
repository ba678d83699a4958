"""Shared command-line plumbing of ``tools/train.py`` and ``tools/test.py``.

mmengine reports a bad config or checkpoint deep inside the runner, as a long traceback. The tools
check their inputs first and turn the known failure kinds into one line that names the problem:
a missing config or checkpoint file, a ``--cfg-options`` key that does not exist, an unknown
registry type, a checkpoint refused by the weights-only unpickler.
"""

from __future__ import annotations

import argparse
import functools
import os
import pickle
import re
import sys
import traceback
from typing import Any, Callable

from mmengine.config import Config, DictAction  # noqa: F401  (re-exported for the tools)

from .checkpoint import (
    UnsafeCheckpointError,
    load_checkpoint_weights_only,
    safe_load_checkpoint,
    unsafe_checkpoint_error,
)


class CLIError(Exception):
    """An error in the command-line input; printed as one line, exit status 2."""


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """The arguments ``tools/train.py`` and ``tools/test.py`` share (mmdet's names)."""
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings in the config, key=value (a key the config lacks is added, '
        'with a warning)',
    )
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher',
    )
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_common(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parse, and export ``LOCAL_RANK`` for torch.distributed launchers as mmdet's tools do."""
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def require_file(path: str | None, what: str) -> None:
    """Raise :class:`CLIError` if ``path`` is given and is not an existing file."""
    if path is not None and not os.path.isfile(path):
        raise CLIError(f'{what} not found: {path!r}')


def _missing_key(cfg: Any, key: str) -> str | None:
    """Why ``key`` is not in ``cfg`` (the first missing part), or ``None`` when it exists.

    Raises:
        CLIError: The path runs into something that is not a dict or list (nothing can be set
            there).
    """
    node = cfg
    parts = key.split('.')
    for i, part in enumerate(parts):
        if isinstance(node, (list, tuple)):
            if not part.isdigit() or int(part) >= len(node):
                raise CLIError(
                    f'--cfg-options key {key!r}: {".".join(parts[:i])!r} is a list of '
                    f'{len(node)} items'
                )
            node = node[int(part)]
        elif isinstance(node, dict):
            if part not in node:
                near = ', '.join(sorted(str(k) for k in node.keys())[:12])
                return f'no {".".join(parts[: i + 1])!r}; keys there: {near}'
            node = node[part]
        else:
            raise CLIError(
                f'--cfg-options key {key!r}: {".".join(parts[:i])!r} is a '
                f'{type(node).__name__}, not a dict'
            )
    return None


def check_checkpoint(path: str, what: str) -> None:
    """Load ``path`` once before the runner is built, so that a missing, empty, corrupt or unsafe
    checkpoint ends with one line. A URL or other mmengine scheme (``https://``,
    ``torchvision://``, ...) is resolved and loaded weights-only as the runner would.

    Raises:
        CLIError: A local ``path`` that is not a file.
    """
    if '://' in str(path):
        load_checkpoint_weights_only(path)
        return
    require_file(path, what)
    safe_load_checkpoint(path)


CHECKPOINT_SUFFIXES = ('.pth', '.pt', '.pkl', '.ckpt', '.bin', '.safetensors')


def load_config(path: str, cfg_options: dict | None = None) -> Config:
    """Load ``path`` and merge ``cfg_options`` as mmdet's tools do.

    A key the config does not have is added (``dataset.skip_missing_files``, a new hook), with a
    warning that names it and the keys that do exist there, so that a misspelt key is not silent.

    Args:
        path: Config file.
        cfg_options: ``--cfg-options`` pairs (``'a.b.c': value``).
    """
    if str(path).endswith(CHECKPOINT_SUFFIXES):
        raise CLIError(
            f'{path!r} looks like a checkpoint, not a config: the arguments are CONFIG CHECKPOINT '
            '(e.g. tools/test.py configs/x.py checkpoints/x.pth)'
        )
    require_file(path, 'config file')
    cfg = Config.fromfile(path)
    for key in cfg_options or {}:
        why = _missing_key(cfg._cfg_dict, key)
        if why is not None:
            print(
                f'warning: --cfg-options adds {key!r}, which the config does not have ({why})',
                file=sys.stderr,
            )
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def set_work_dir(cfg: Config, work_dir: str | None, config_path: str) -> None:
    """``--work-dir`` (or ``./work_dirs/<config name>``) into ``cfg``; refuses a path that is a
    file."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = os.path.join(
            './work_dirs', os.path.splitext(os.path.basename(config_path))[0]
        )
    if os.path.isfile(cfg.work_dir):
        raise CLIError(f'--work-dir {cfg.work_dir!r} is a file; give a folder (it is created)')


_REGISTRY_MISS = re.compile(r'(\S+) is not in the (\S+) registry')


def describe_error(err: BaseException) -> str | None:
    """One-line description of a known user-input error, or ``None`` for anything else."""
    if isinstance(err, (CLIError, UnsafeCheckpointError, FloatingPointError)):
        return str(err)
    text0 = str(err)
    if isinstance(err, TypeError) and 'unexpected keyword argument' in text0:
        arg = re.search(r"unexpected keyword argument '(\w+)'", text0)
        owner = re.search(r'class `(\w+)`', text0) or re.search(r'(\w+)\.__init__\(\)', text0)
        return (
            f"{owner.group(1) if owner else 'a module'} has no argument "
            f"{arg.group(1) if arg else '?'!r}: check the config and --cfg-options"
        )
    if isinstance(err, FileNotFoundError):
        return f'file not found: {err}'
    if isinstance(err, ValueError) and str(err):
        # mmvideoeq's ValueErrors are written for users (bad data, config or checkpoint)
        return f'{str(err).splitlines()[0]} (MMVIDEOEQ_DEBUG=1 shows the traceback)'
    if isinstance(err, pickle.UnpicklingError):
        return str(unsafe_checkpoint_error('<checkpoint>', err))
    text = str(err.args[0]) if getattr(err, 'args', None) else str(err)
    m = _REGISTRY_MISS.search(text)
    if isinstance(err, KeyError) and m:
        return (
            f'unknown type {m.group(1)} in the {m.group(2)} registry: check the spelling, '
            "the scope prefix ('mmdet.', 'mmseg.') and that the module is imported"
        )
    return None


def cli_main(main: Callable[[], Any]) -> Callable[[], Any]:
    """Decorate a tool's ``main``: known input errors end with ``error: ...`` and exit code 2.

    Set ``MMVIDEOEQ_DEBUG=1`` to see the full traceback.
    """

    @functools.wraps(main)
    def wrapper() -> Any:
        try:
            return main()
        except Exception as err:  # noqa: BLE001
            msg = describe_error(err)
            if msg is None or os.environ.get('MMVIDEOEQ_DEBUG'):
                raise
            # the cause is often wrapped by mmengine's build_from_cfg: unwrap once for the line
            print(f'error: {msg}', file=sys.stderr)
            if os.environ.get('MMVIDEOEQ_TRACE'):
                traceback.print_exc()
            sys.exit(2)

    return wrapper
