"""Shared command-line plumbing of ``tools/train.py`` and ``tools/test.py``.

mmengine reports a bad config or checkpoint deep inside the runner, as a long traceback. The tools
check their inputs first and turn the known failure kinds into one line that names the problem:
a missing config or checkpoint file, a ``--cfg-options`` key that does not exist or a value that
cannot be parsed, an unknown registry type, a checkpoint refused by the weights-only unpickler, a
work dir that cannot be written or is in use by another run.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import errno
import filecmp
import functools
import glob
import json
import os
import pickle
import re
import shutil
import socket
import sys
import time
import traceback
from typing import Any, Callable, Iterator

from mmengine.config import Config, DictAction  # noqa: F401  (re-exported for the tools)

from .checkpoint import UnsafeCheckpointError, safe_load_checkpoint, unsafe_checkpoint_error
from .checkpoint_schemes import load_checkpoint_weights_only


class CLIError(Exception):
    """An error in the command-line input; printed as one line, exit status 2."""


def _literal(node: ast.AST) -> Any:
    """The value of a literal expression where ``dict(k=v, ...)`` is a dict and a bare name a
    string (as mmengine's ``DictAction`` reads an unquoted word); nothing is evaluated."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(e) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == 'dict'
        and not node.args
        and all(kw.arg is not None for kw in node.keywords)
    ):
        return {kw.arg: _literal(kw.value) for kw in node.keywords}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _literal(node.operand)
        if isinstance(value, (int, float)):
            return -value
    raise ValueError(f'{ast.unparse(node)!r} is not a literal')


def parse_cfg_value(key: str, text: str) -> Any:
    """One ``--cfg-options`` value: a ``dict(...)`` / ``{...}`` literal (mmengine's parser
    recurses without end on those), else what mmengine's ``DictAction`` makes of it.

    Raises:
        CLIError: The value cannot be parsed.
    """
    stripped = text.strip()
    if re.search(r'\bdict\(', stripped) or stripped.startswith('{'):
        try:
            return _literal(ast.parse(stripped, mode='eval').body)
        except (SyntaxError, ValueError) as err:
            raise CLIError(
                f'--cfg-options {key}: cannot read {text!r} ({err}); write a dict as '
                "dict(type='Pretrained', checkpoint='x.pth') or set its keys one by one "
                f'({key}.type=Pretrained {key}.checkpoint=x.pth)'
            ) from None
    try:
        return DictAction._parse_iterable(text)
    except (AssertionError, RecursionError):
        raise CLIError(
            f'--cfg-options {key}: cannot read {text!r} (unbalanced brackets?); quote the '
            "whole option, e.g. --cfg-options 'a.b=[1, 2]'"
        ) from None


class CfgOptionsAction(DictAction):
    """mmengine's ``DictAction`` (``key=value`` pairs, lists and tuples) that also reads
    ``dict(...)`` and ``{...}`` values (:func:`parse_cfg_value`)."""

    def __call__(self, parser, namespace, values, option_string=None):
        options = copy.copy(getattr(namespace, self.dest, None) or {})
        for kv in values or []:
            if '=' not in kv:
                raise CLIError(f'--cfg-options expects key=value pairs, got {kv!r}')
            key, val = kv.split('=', maxsplit=1)
            options[key] = parse_cfg_value(key, val)
        setattr(namespace, self.dest, options)


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """The arguments ``tools/train.py`` and ``tools/test.py`` share (mmdet's names)."""
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=CfgOptionsAction,
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


LOCK_NAME = '.mmvideoeq-run.lock'
_WRITE_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)


def _unwritable(folder: str, err: OSError) -> CLIError:
    return CLIError(
        f'cannot write to the work dir {folder!r}: {err.strerror or err} '
        f'({errno.errorcode.get(err.errno, err.errno)}); free some space, fix its permissions '
        'or give another --work-dir'
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_rank0() -> bool:
    return os.environ.get('RANK', '0') in ('', '0')


@contextlib.contextmanager
def claim_work_dir(work_dir: str) -> Iterator[None]:
    """Create ``work_dir`` and hold it for this run (rank 0 only).

    A lock file (``.mmvideoeq-run.lock``: pid, host, start, command) refuses a second run on the
    same folder while the first is alive: their logs would interleave (mmengine names its
    per-run log folder by the second the run started) and their checkpoints and
    ``results.json`` overwrite each other. A lock left by a run that died on this host is taken
    over. Writing the lock is also the check that the folder can be written.

    Raises:
        CLIError: The folder cannot be created or written (read-only, full, no permission), or
            another run holds it.
    """
    if not _is_rank0():
        yield
        return
    try:
        os.makedirs(work_dir, exist_ok=True)
    except OSError as err:
        raise _unwritable(work_dir, err) from None
    lock = os.path.join(work_dir, LOCK_NAME)
    info = dict(pid=os.getpid(), host=socket.gethostname(), started=time.ctime(), argv=sys.argv)
    for attempt in (0, 1):
        try:
            with open(lock, 'x') as f:
                f.write(json.dumps(info))
                f.flush()
                os.fsync(f.fileno())
            break
        except FileExistsError:
            other = _read_lock(lock)
            stale = other.get('host') == info['host'] and not _alive(int(other.get('pid', -1)))
            if attempt == 0 and stale:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(lock)
                continue
            raise CLIError(
                f'--work-dir {work_dir!r} is in use by another run (pid {other.get("pid")} on '
                f'{other.get("host")}, started {other.get("started")}: '
                f'{" ".join(other.get("argv", []))}); two runs on one work dir would interleave '
                'its log and overwrite its checkpoints and results. Wait for that run or give '
                f'another --work-dir (if no run is using it, delete {lock})'
            ) from None
        except OSError as err:
            with contextlib.suppress(OSError):
                os.remove(lock)
            raise _unwritable(work_dir, err) from None
    try:
        yield
    finally:
        if _read_lock(lock).get('pid') == info['pid']:
            with contextlib.suppress(OSError):
                os.remove(lock)


def wait_for_fresh_run_folder(work_dir: str) -> None:
    """Return once no folder of ``work_dir`` is named by the current second.

    mmengine names a run's log folder by the second the runner is built
    (``<work_dir>/%Y%m%d_%H%M%S``) and truncates the log file there: a run started in the same
    second as the previous one would share the folder and wipe that run's log. Called right
    before building the runner (at most a second's wait).
    """
    while os.path.exists(os.path.join(work_dir, time.strftime('%Y%m%d_%H%M%S'))):
        time.sleep(0.05)


def _read_lock(path: str) -> dict:
    try:
        with open(path) as f:
            return json.loads(f.read() or '{}')
    except (OSError, ValueError):
        return {}


RESULT_FILES = ('results.json', 'accuracy_vs_cost.png', 'curves.png')


def _copy_results(src: str, dst: str) -> None:
    os.makedirs(dst, exist_ok=True)
    for name in RESULT_FILES:
        if os.path.isfile(os.path.join(src, name)):
            shutil.copy2(os.path.join(src, name), os.path.join(dst, name))


def keep_earlier_results(out_dir: str, work_dir: str) -> str | None:
    """Before a streaming run replaces ``<out_dir>/results.json``: make sure the earlier run's
    files have a copy in a timestamped run folder (``<work_dir>/<timestamp>/streaming/``, the
    time the file was last written, unless a run folder already holds the same file).

    Returns:
        str | None: The folder holding the earlier results, or ``None`` when there are none (or
        on ranks other than 0).
    """
    current = os.path.join(out_dir, 'results.json')
    if not _is_rank0() or not os.path.isfile(current):
        return None
    for copy_ in glob.glob(os.path.join(work_dir, '*', 'streaming', 'results.json')):
        if filecmp.cmp(copy_, current, shallow=False):
            return os.path.dirname(copy_)
    stamp = time.strftime('%Y%m%d_%H%M%S', time.localtime(os.path.getmtime(current)))
    dst = os.path.join(work_dir, stamp, 'streaming')
    _copy_results(out_dir, dst)
    return dst


def keep_run_results(out_dir: str, log_dir: str) -> str | None:
    """Copy this run's streaming results into its own run folder (``<log_dir>/streaming``, next
    to its log), so a later run on the same work dir replaces only ``<out_dir>``.

    Returns:
        str | None: The copy's folder, or ``None`` when the run wrote no results.
    """
    if not _is_rank0() or not os.path.isfile(os.path.join(out_dir, 'results.json')):
        return None
    dst = os.path.join(log_dir, 'streaming')
    _copy_results(out_dir, dst)
    return dst


def settings_without_metric(metrics: dict, settings: list[str] | None = None) -> list[str]:
    """The settings (``<setting>/<metric>`` prefixes) that produced no metric value, e.g.
    because every frame was skipped or diverged.

    Args:
        metrics: What ``runner.test()`` returned.
        settings: The settings that ran (a streaming sweep), or ``None`` to take the key
            prefixes.

    Returns:
        list[str]: The settings with no numeric metric other than counts (``num_*``).
    """
    valued = set()
    for key, value in (metrics or {}).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not key.split('/')[-1].startswith('num_'):
            valued.add(key.split('/')[0])
    names = settings if settings is not None else sorted({k.split('/')[0] for k in metrics})
    return [n for n in names if n not in valued]


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
    if isinstance(err, OSError) and err.errno in _WRITE_ERRNOS:
        where = err.filename or 'a file of the run'
        return (
            f'cannot write {where!r}: {err.strerror} ({errno.errorcode.get(err.errno)}); free '
            'some space, fix the permissions or give another --work-dir'
        )
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


def finish_distributed() -> None:
    """End a finished run's process group: a barrier, then ``destroy_process_group``.

    mmengine's runner leaves the group to the interpreter's exit, where gloo's background
    threads can be torn down while still joinable (``terminate called without an active
    exception``, SIGABRT) and torchrun reports a finished run as failed. Called by the tools
    after a run that ended normally; nothing happens without a process group.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def setup_launcher(cfg: Config, launcher: str) -> None:
    """``--launcher`` into ``cfg``; on a machine without CUDA, a gloo process group for it.

    mmengine's ``init_dist`` calls ``torch.cuda.set_device`` and its default model wrapper passes
    ``device_ids=[LOCAL_RANK]``, both of which fail with CPU-only PyTorch. Without CUDA the
    process group is initialised here with the gloo backend from torchrun's environment
    (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) before the runner is built
    (mmengine then keeps it), and the model is wrapped in ``MMDistributedDataParallel`` without
    device ids. With CUDA nothing changes (mmengine's NCCL set-up).
    """
    import torch

    cfg.launcher = launcher
    if launcher == 'none' or torch.cuda.is_available():
        return
    if launcher != 'pytorch':
        raise CLIError(
            f'--launcher {launcher} needs CUDA; without a GPU use --launcher pytorch (torchrun, '
            'e.g. tools/dist_test.sh), which runs on CPU with the gloo backend'
        )
    missing = [
        k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT') if k not in os.environ
    ]
    if missing:
        raise CLIError(
            f'--launcher pytorch needs torchrun\'s environment ({", ".join(missing)} unset): start '
            'the tool with tools/dist_train.sh / tools/dist_test.sh or torchrun'
        )
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend='gloo', init_method='env://')
    env = dict(cfg.get('env_cfg', None) or {})
    env['dist_cfg'] = dict(env.get('dist_cfg', None) or {}, backend='gloo')
    cfg.env_cfg = env
    wrapper = dict(cfg.get('model_wrapper_cfg', None) or dict(type='MMDistributedDataParallel'))
    wrapper['device_ids'] = None
    wrapper.setdefault('broadcast_buffers', False)
    wrapper.setdefault('find_unused_parameters', cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper
