"""What a benchmark folder holds: its parts, whether each is whole and current, and its metadata.

A benchmark folder (``data/bundled``, ``data/bundled_dvps`` ...) holds one sub-folder per format
(a *part*: ``ILSVRC/``, ``cityscapes/``, ``coco/`` ...) and ``bundled_benchmark.json``, which
records per part the preset, the seed, the part's sizes, its state (``writing`` while it is
written, ``done`` after) and the number of files written. :func:`plan_parts` compares that record
with what is asked for, so that :func:`benchgen.generate_benchmark` can add parts to a folder,
keep the parts that are already there and rebuild only those that are stale (another preset,
seed or size) or partial (an interrupted run, files missing), and say why.

The metadata file is replaced atomically (written to a temporary file, then renamed), and written
*before* a part is rendered (state ``writing``), so that an interrupted run is recognised as such.
A folder that holds a part's sub-folder but no metadata file was not written by this generator:
nothing in it is deleted. Files of version 1 (written by earlier versions, metadata written only
after all parts and without a per-part state) are read as ``done`` with the file's preset and seed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from .writers_dvps import DVPS_FORMAT_DIRS

__all__ = [
    'FORMAT_DIRS',
    'META_FILE',
    'META_VERSION',
    'PartPlan',
    'count_files',
    'load_meta',
    'save_meta',
    'plan_parts',
]

#: Output formats and the folder each is written to under ``out_dir``.
FORMAT_DIRS: Dict[str, str] = {'vid': 'ILSVRC', 'cityscapes': 'cityscapes', 'kitti': 'kitti'}
FORMAT_DIRS.update(DVPS_FORMAT_DIRS)  # cityscapes_dvps, semkitti_dvps, kitti_depth
FORMAT_DIRS['coco'] = 'coco'  # COCO + COCO-stuff + panoptic images (writers_coco)
#: Metadata file written at the root of ``out_dir``.
META_FILE = 'bundled_benchmark.json'
#: Version of the metadata layout (2: per-part preset, seed, sizes, state and file count).
META_VERSION = 2


@dataclass(frozen=True)
class PartPlan:
    """What to do with one part of a benchmark folder.

    Attributes:
        fmt (str): The format (a key of :data:`FORMAT_DIRS`).
        path (Path): The part's folder.
        action (str): ``'keep'`` (whole and current), ``'build'`` (absent) or ``'rebuild'``
            (present but stale, partial or to be overwritten).
        reason (str): Why, in words (printed by ``tools/data/make_benchmark.py``).
    """

    fmt: str
    path: Path
    action: str
    reason: str


def count_files(path: Path) -> int:
    """Number of files under ``path`` (0 if it does not exist)."""
    return sum(len(files) for _, _, files in os.walk(path))


def _spec_of(entry: dict) -> dict:
    return dict(preset=entry.get('preset'), seed=entry.get('seed'), sizes=entry.get('sizes'))


def _describe(spec: dict) -> str:
    return f"preset {spec['preset']!r}, seed {spec['seed']}"


def load_meta(out_dir: Path) -> Optional[dict]:
    """The metadata of ``out_dir`` in the current layout, or None if it has no metadata file.

    Args:
        out_dir (Path): A benchmark folder.

    Returns:
        dict | None: The metadata; a version-1 file is upgraded in memory (every part it lists
        gets the file's preset name, seed and sizes and the state ``done``; no file count).

    Raises:
        ValueError: The file is not valid JSON or not a benchmark metadata file.
    """
    path = Path(out_dir) / META_FILE
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(
            f'{path} cannot be read ({err}); delete it and the part folders beside it to '
            'regenerate the benchmark'
        ) from None
    if not isinstance(meta, dict) or meta.get('generator') != 'benchgen':
        raise ValueError(
            f'{path} was not written by benchgen; choose another out_dir or delete the file'
        )
    if meta.get('version', 1) < META_VERSION:
        preset = meta.get('preset') or {}
        for fmt in meta.get('formats', []):
            part = meta.get(fmt)
            if not isinstance(part, dict):
                continue
            part.setdefault('preset', preset.get('name'))
            part.setdefault('seed', meta.get('seed'))
            if 'sizes' not in part:
                part['sizes'] = preset.get(fmt)
            part.setdefault('state', 'done')
            part.setdefault('num_files', None)
        meta['version'] = META_VERSION
    return meta


def save_meta(out_dir: Path, meta: dict) -> None:
    """Write ``out_dir``'s metadata file atomically (the old one stays until it is replaced)."""
    path = Path(out_dir) / META_FILE
    tmp = path.with_name(path.name + '.tmp')
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, path)


def plan_parts(out_dir: Path, wanted: Dict[str, dict], overwrite: bool = False) -> List[PartPlan]:
    """Decide, part by part, whether ``out_dir`` already holds what is asked for.

    Args:
        out_dir (Path): The benchmark folder (need not exist).
        wanted (dict[str, dict]): Format -> its spec: ``preset`` (name), ``seed`` and ``sizes``
            (the part's sizes as JSON-like values).
        overwrite (bool): Rebuild the parts even when they are whole and current.

    Returns:
        list[PartPlan]: One plan per wanted format, in the given order.

    Raises:
        ValueError: ``out_dir`` or a part's path exists and is not a folder, or a part's folder
            exists but ``out_dir`` holds no metadata file (not written by this generator: it is
            never deleted).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f'out_dir {out_dir} exists and is not a directory')
    meta = load_meta(out_dir)
    plans = []
    for fmt, spec in wanted.items():
        spec = json.loads(json.dumps(spec))  # tuples -> lists, as read back from the file
        path = out_dir / FORMAT_DIRS[fmt]
        if path.exists() and not path.is_dir():
            raise ValueError(f'{path} exists and is not a directory; move it away')
        if path.exists() and meta is None:
            raise ValueError(
                f'{path} exists but {out_dir} holds no {META_FILE}: not written by this '
                'generator, so it is not deleted; move it away or choose another out_dir'
            )
        entry = (meta or {}).get(fmt)
        entry = entry if isinstance(entry, dict) else None
        if not path.exists():
            action, reason = 'build', 'absent' if entry is None else 'recorded but absent'
        elif entry is None:
            action, reason = 'rebuild', f'not recorded in {META_FILE} (an interrupted run)'
        elif entry.get('state') != 'done':
            action, reason = 'rebuild', 'partial: an earlier run stopped while writing it'
        elif _spec_of(entry) != spec:
            stale = _spec_of(entry)
            what = _describe(stale)
            if stale['preset'] == spec['preset'] and stale['seed'] == spec['seed']:
                what += ' with other sizes'
            action, reason = 'rebuild', f'stale: {what} on disk, asked {_describe(spec)}'
        else:
            found, written = count_files(path), entry.get('num_files')
            if written is not None and found != written:
                action, reason = 'rebuild', f'partial: {found} files, {written} were written'
            elif overwrite:
                action, reason = 'rebuild', 'overwrite asked'
            else:
                action, reason = 'keep', f'up to date ({_describe(spec)}, {found} files)'
        plans.append(PartPlan(fmt, path, action, reason))
    return plans
