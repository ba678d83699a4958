"""The bundled benchmark: presets, the per-video seeds, and :func:`generate_benchmark`.

Every video is rendered from its own generator, seeded with ``(seed, format, split, index)``, so a
video does not depend on which other videos or formats are generated, and
:func:`render_benchmark_video` re-renders any one of them (with its per-pixel ground truth) without
writing anything.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np

from mmvideoeq.class_names import VID_CATEGORY_IDS

from .classes import CITYSCAPES_LABELS, TO_CITYSCAPES, TO_VID
from .parts import (
    FORMAT_DIRS,
    META_FILE,
    META_VERSION,
    PartPlan,
    count_files,
    load_meta,
    plan_parts,
    save_meta,
)
from .scene import DRIVING, HANDHELD, RenderedVideo, SceneStyle, render_video, sample_video
from .sources import SOURCES
from .writers import CityscapesWriter, KittiWriter, VidWriter
from .writers_coco import CocoWriter
from .writers_dvps import DVPS_FORMAT_DIRS, _sizes, dvps_video_plan, write_dvps_format

__all__ = [
    'VidPreset',
    'CityscapesPreset',
    'KittiPreset',
    'CocoPreset',
    'BenchmarkPreset',
    'PRESETS',
    'FORMATS',
    'FORMAT_DIRS',
    'META_FILE',
    'KITTI_DRIVING',
    'generate_benchmark',
    'plan_benchmark',
    'render_benchmark_video',
    'get_preset',
]

FORMATS: Tuple[str, ...] = tuple(FORMAT_DIRS)
SPLITS: Tuple[str, ...] = ('train', 'val')
_FORMAT_KEYS = {'vid': 1, 'cityscapes': 2, 'kitti': 3}
_FORMAT_KEYS.update(cityscapes_dvps=12, semkitti_dvps=13, kitti_depth=14)
_FORMAT_KEYS['coco'] = 7
_SPLIT_KEYS = {'train': 0, 'val': 1}

#: Driving scenes with one camera for every drive (KITTI keeps one calibration per date).
KITTI_DRIVING = dataclasses.replace(
    DRIVING, name='driving_kitti', horizon=(0.46, 0.46), cam_height=(1.65, 1.65)
)


@dataclass(frozen=True)
class VidPreset:
    """Size of the ImageNet-VID part.

    Attributes:
        size (tuple[int, int]): Frame size ``(H, W)``.
        train_videos (int): Videos in ``train``.
        val_videos (int): Videos in ``val``.
        frames (int): Frames per video.
        cuts_per_video (int): Shot changes in every second video (odd indices); the others have
            none.
        jpeg_quality (int): JPEG quality.
        min_box_area (int): Objects with fewer visible pixels get no box.
        train_frames_per_video (int): Frames per training video flagged ``is_vid_train_frame``.
    """

    size: Tuple[int, int]
    train_videos: int
    val_videos: int
    frames: int
    cuts_per_video: int = 1
    jpeg_quality: int = 90
    min_box_area: int = 16
    train_frames_per_video: int = 15


@dataclass(frozen=True)
class CityscapesPreset:
    """Size of the Cityscapes part.

    Attributes:
        size (tuple[int, int]): Frame size ``(H, W)``.
        train_snippets (int): Snippets in ``train``.
        val_snippets (int): Snippets in ``val``.
        frames (int): Frames per snippet (30 in Cityscapes).
        annotated_index (int): Index of the annotated frame in the snippet (19 in Cityscapes).
        dense_labels (bool): Write ``gtFine_sequence`` labels for every frame.
        disparity (bool): Write disparity and camera files.
    """

    size: Tuple[int, int]
    train_snippets: int
    val_snippets: int
    frames: int = 30
    annotated_index: int = 19
    dense_labels: bool = True
    disparity: bool = True


@dataclass(frozen=True)
class KittiPreset:
    """Size of the KITTI part.

    Attributes:
        size (tuple[int, int]): Frame size ``(H, W)``.
        train_drives (int): Drives in ``train``.
        val_drives (int): Drives in ``val``.
        frames (int): Frames per drive.
    """

    size: Tuple[int, int]
    train_drives: int
    val_drives: int
    frames: int


@dataclass(frozen=True)
class CocoPreset:
    """Size of the COCO part (instances, COCO-stuff maps, panoptic; ``writers_coco``).

    Attributes:
        size (tuple[int, int]): Image size ``(H, W)``.
        train_images (int): Images in ``train2017``.
        val_images (int): Images in ``val2017``.
        min_area (int): Objects with fewer visible pixels get no annotation.
        jpeg_quality (int): JPEG quality.
    """

    size: Tuple[int, int]
    train_images: int
    val_images: int
    min_area: int = 16
    jpeg_quality: int = 90


@dataclass(frozen=True)
class BenchmarkPreset:
    """Sizes of every part of the benchmark."""

    name: str
    vid: VidPreset
    cityscapes: CityscapesPreset
    kitti: KittiPreset
    coco: CocoPreset = CocoPreset(size=(64, 96), train_images=4, val_images=2)


PRESETS: Dict[str, BenchmarkPreset] = {
    # unit and end-to-end tests: a few short videos, rendered in about a second
    'tiny': BenchmarkPreset(
        'tiny',
        vid=VidPreset(
            size=(64, 96),
            train_videos=2,
            val_videos=2,
            frames=4,
            cuts_per_video=1,
            min_box_area=16,
            train_frames_per_video=4,
        ),
        cityscapes=CityscapesPreset(size=(32, 64), train_snippets=1, val_snippets=1),
        kitti=KittiPreset(size=(32, 96), train_drives=1, val_drives=1, frames=4),
        coco=CocoPreset(size=(64, 96), train_images=4, val_images=2),
    ),
    # CPU: a tiny model trains and streams through it in minutes on 2 cores
    'small': BenchmarkPreset(
        'small',
        vid=VidPreset(
            size=(96, 160),
            train_videos=8,
            val_videos=4,
            frames=20,
            cuts_per_video=1,
            min_box_area=24,
        ),
        cityscapes=CityscapesPreset(size=(64, 128), train_snippets=4, val_snippets=2),
        kitti=KittiPreset(size=(64, 208), train_drives=2, val_drives=1, frames=30),
        coco=CocoPreset(size=(128, 192), train_images=300, val_images=100, min_area=24),
    ),
    # GPU runs
    'large': BenchmarkPreset(
        'large',
        vid=VidPreset(
            size=(288, 512),
            train_videos=32,
            val_videos=8,
            frames=60,
            cuts_per_video=2,
            min_box_area=100,
        ),
        cityscapes=CityscapesPreset(size=(256, 512), train_snippets=24, val_snippets=8),
        kitti=KittiPreset(size=(192, 640), train_drives=8, val_drives=2, frames=60),
        coco=CocoPreset(size=(384, 576), train_images=4000, val_images=500, min_area=100),
    ),
}


def get_preset(preset: Union[str, BenchmarkPreset]) -> BenchmarkPreset:
    """Resolve a preset name.

    Args:
        preset (str | BenchmarkPreset): A key of :data:`PRESETS`, or a preset.

    Returns:
        BenchmarkPreset: The preset.

    Raises:
        ValueError: Unknown name.
    """
    if isinstance(preset, BenchmarkPreset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f'unknown preset {preset!r}; choose one of {sorted(PRESETS)}')
    return PRESETS[preset]


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f'seed must be a non-negative int, got {seed!r}')
    return int(seed)


def _video_plan(
    fmt: str, preset: BenchmarkPreset
) -> Tuple[SceneStyle, Tuple[int, int], int, Dict[str, int], int]:
    """Style, size, frames, videos per split and cuts per cut video of a format."""
    if fmt in DVPS_FORMAT_DIRS:
        return dvps_video_plan(fmt, preset.name)
    if fmt == 'vid':
        p = preset.vid
        return (
            HANDHELD,
            p.size,
            p.frames,
            dict(train=p.train_videos, val=p.val_videos),
            p.cuts_per_video,
        )
    if fmt == 'cityscapes':
        c = preset.cityscapes
        return DRIVING, c.size, c.frames, dict(train=c.train_snippets, val=c.val_snippets), 0
    if fmt == 'kitti':
        k = preset.kitti
        return KITTI_DRIVING, k.size, k.frames, dict(train=k.train_drives, val=k.val_drives), 0
    if fmt == 'coco':  # every image is a one-frame video
        c = preset.coco
        return HANDHELD, c.size, 1, dict(train=c.train_images, val=c.val_images), 0
    raise ValueError(f'unknown format {fmt!r}; choose from {FORMATS}')


def _shot_changes(
    rng: np.random.Generator, num_frames: int, count: int, min_gap: int = 5
) -> List[int]:
    """``count`` cut frames, at least ``min_gap`` frames from each other and from both ends."""
    cuts: List[int] = []
    for _ in range(count):
        free = [
            t
            for t in range(min_gap, num_frames - min_gap + 1)
            if all(abs(t - c) >= min_gap for c in cuts)
        ]
        if not free:
            break
        cuts.append(int(free[int(rng.integers(len(free)))]))
    return sorted(cuts)


def render_benchmark_video(
    fmt: str,
    split: str,
    index: int,
    *,
    preset: Union[str, BenchmarkPreset] = 'small',
    seed: int = 0,
) -> RenderedVideo:
    """Render one video of the benchmark with its dense ground truth, writing nothing.

    Args:
        fmt (str): ``'vid'``, ``'cityscapes'`` or ``'kitti'``.
        split (str): ``'train'`` or ``'val'``.
        index (int): Index of the video in the split.
        preset (str | BenchmarkPreset): Preset.
        seed (int): Benchmark seed.

    Returns:
        RenderedVideo: Exactly the video :func:`generate_benchmark` writes at that place.

    Raises:
        ValueError: Unknown format, split or preset, or an index out of range.
    """
    preset = get_preset(preset)
    seed = _check_seed(seed)
    style, size, frames, counts, cuts = _video_plan(fmt, preset)
    if split not in SPLITS:
        raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
    if not 0 <= index < counts[split]:
        raise ValueError(
            f'{fmt} {split} has {counts[split]} videos in preset {preset.name!r}; '
            f'index {index} is out of range'
        )
    rng = np.random.default_rng([seed, _FORMAT_KEYS[fmt], _SPLIT_KEYS[split], index])
    changes = _shot_changes(rng, frames, cuts if index % 2 == 1 else 0)
    return render_video(sample_video(rng, style, size, frames, changes))


def _part_spec(fmt: str, preset: BenchmarkPreset, seed: int) -> dict:
    """What identifies a written part: the preset's name, the seed and the part's sizes."""
    sizes = _sizes(fmt, preset.name) if fmt in DVPS_FORMAT_DIRS else getattr(preset, fmt)
    return dict(preset=preset.name, seed=seed, sizes=dataclasses.asdict(sizes))


def _write_coco(
    root: Path, part: dict, counts: Dict[str, int], preset: BenchmarkPreset, seed: int
) -> dict:
    """Render and write the COCO part (``writers_coco.CocoWriter``); return its metadata."""
    for split in SPLITS:
        writer = CocoWriter(
            root, split, jpeg_quality=preset.coco.jpeg_quality, min_area=preset.coco.min_area
        )
        part[split] = [
            writer.add(render_benchmark_video('coco', split, index, preset=preset, seed=seed))
            for index in range(counts[split])
        ]
        writer.finish()
    return part


def _write_part(fmt: str, root: Path, preset: BenchmarkPreset, seed: int) -> dict:
    """Render and write one format into ``root``; return its metadata entry."""
    _, size, _, counts, _ = _video_plan(fmt, preset)
    part: dict = dict(root=FORMAT_DIRS[fmt], size=list(size))
    if fmt == 'coco':
        return _write_coco(root, part, counts, preset, seed)
    if fmt in DVPS_FORMAT_DIRS:
        return write_dvps_format(
            fmt, root, preset.name, lambda split, i: render_benchmark_video(
                fmt, split, i, preset=preset, seed=seed)
        )  # fmt: skip
    city_seq: Dict[str, int] = {}
    drive = 0
    for split in SPLITS:
        entries = []
        if fmt == 'vid':
            writer = VidWriter(
                root,
                split,
                jpeg_quality=preset.vid.jpeg_quality,
                min_box_area=preset.vid.min_box_area,
                train_frames_per_video=preset.vid.train_frames_per_video,
            )
        elif fmt == 'cityscapes':
            writer = CityscapesWriter(
                root,
                split,
                annotated_index=preset.cityscapes.annotated_index,
                dense_labels=preset.cityscapes.dense_labels,
                disparity=preset.cityscapes.disparity,
            )
        else:
            writer = KittiWriter(root, split)
        for index in range(counts[split]):
            video = render_benchmark_video(fmt, split, index, preset=preset, seed=seed)
            if fmt == 'vid':
                entry = writer.add(index, video)
            elif fmt == 'cityscapes':
                city = video.shots[0]['backdrop']
                entry = writer.add(city, city_seq.get(city, 0), video)
                city_seq[city] = city_seq.get(city, 0) + 1
            else:
                entry = writer.add(drive, video)
                drive += 1
            entries.append(dict(index=index, **entry))
        if fmt == 'vid':
            writer.finish()
        part[split] = entries
    return part


def _check_formats(formats: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    unknown = [f for f in formats if f not in FORMAT_DIRS]
    if not formats or unknown or len(set(formats)) != len(formats):
        raise ValueError(
            f'formats must be a non-empty list of distinct formats from {FORMATS}, '
            f'got {list(formats)}'
        )
    return formats


def plan_benchmark(
    out_dir: Union[str, Path],
    *,
    preset: Union[str, BenchmarkPreset] = 'small',
    seed: int = 0,
    formats: Sequence[str] = ('vid', 'cityscapes'),
    overwrite: bool = False,
) -> List[PartPlan]:
    """What :func:`generate_benchmark` would do with each part, writing nothing.

    Args:
        out_dir, preset, seed, formats, overwrite: As :func:`generate_benchmark`.

    Returns:
        list[PartPlan]: Per format: ``keep`` (already there, same preset, seed and sizes, all
        its files), ``build`` (absent) or ``rebuild`` (stale, partial, or ``overwrite``), and why.

    Raises:
        ValueError: As :func:`generate_benchmark`.
    """
    preset = get_preset(preset)
    seed = _check_seed(seed)
    formats = _check_formats(formats)
    return plan_parts(
        Path(out_dir), {f: _part_spec(f, preset, seed) for f in formats}, overwrite=overwrite
    )


def _new_meta() -> dict:
    return dict(
        generator='benchgen',
        version=META_VERSION,
        preset=None,
        seed=None,
        formats=[],
        sources={k: dataclasses.asdict(s) for k, s in SOURCES.items()},
        classes=dict(
            vid={
                k: dict(name=v, category_id=VID_CATEGORY_IDS[v]) if v else None
                for k, v in TO_VID.items()
            },
            cityscapes={
                k: dict(name=v, id=CITYSCAPES_LABELS[v].id, trainId=CITYSCAPES_LABELS[v].train_id)
                for k, v in TO_CITYSCAPES.items()
            },
        ),
    )


def generate_benchmark(
    out_dir: Union[str, Path],
    *,
    preset: Union[str, BenchmarkPreset] = 'small',
    seed: int = 0,
    formats: Sequence[str] = ('vid', 'cityscapes'),
    overwrite: bool = False,
) -> dict:
    """Render the bundled benchmark and write it in the real datasets' formats, part by part.

    Writes, under ``out_dir``: ``ILSVRC/`` (ImageNet-VID, ``'vid'``), ``cityscapes/``
    (``'cityscapes'``), ``kitti/`` (``'kitti'``), ``coco/`` (COCO + COCO-stuff + panoptic,
    ``'coco'``), the DVPS folders, and ``bundled_benchmark.json`` (the metadata: sources and
    licences, class mappings and, per part, its preset, seed, sizes, state, file count and per
    video its name, shot changes, shots and track classes). The same arguments give the same
    files bit for bit.

    Adds to what ``out_dir`` holds (:func:`plan_benchmark` says what happens to each part): a
    part already there with the same preset, seed and sizes and all its files is kept; an absent
    one is written; a stale one (another preset or seed) or a partial one (an interrupted run,
    files missing) is deleted and written again. When every part is kept nothing is written.

    Args:
        out_dir (str | Path): Output folder (created if missing).
        preset (str | BenchmarkPreset): ``'tiny'``, ``'small'`` (CPU) or ``'large'`` (GPU), or a
            preset.
        seed (int): Non-negative seed.
        formats (Sequence[str]): Any of ``'vid'``, ``'cityscapes'``, ``'kitti'``, the DVPS
            formats ``'cityscapes_dvps'``, ``'semkitti_dvps'``, ``'kitti_depth'``
            (:mod:`.writers_dvps`) and ``'coco'`` (:mod:`.writers_coco`).
        overwrite (bool): Rewrite the named parts even when they are up to date.

    Returns:
        dict: The metadata in ``bundled_benchmark.json`` (every part of the folder; the top-level
        ``preset`` and ``seed`` are those of all its parts when they agree, else None).

    Raises:
        ValueError: Unknown preset or format, bad seed, an ``out_dir`` that is not a folder, or
            a part's folder in an ``out_dir`` without the metadata file (not written by this
            generator; nothing there is deleted).
    """
    preset = get_preset(preset)
    plans = plan_benchmark(out_dir, preset=preset, seed=seed, formats=formats, overwrite=overwrite)
    seed = int(seed)
    out_dir = Path(out_dir)
    meta = load_meta(out_dir) or _new_meta()
    if all(plan.action == 'keep' for plan in plans):
        return meta
    out_dir.mkdir(parents=True, exist_ok=True)
    fresh = _new_meta()
    meta.update(generator=fresh['generator'], version=META_VERSION, sources=fresh['sources'])
    meta['classes'] = fresh['classes']
    for plan in plans:
        if plan.action == 'keep':
            continue
        if plan.path.is_dir():
            shutil.rmtree(plan.path)
        spec = _part_spec(plan.fmt, preset, seed)
        meta[plan.fmt] = dict(root=FORMAT_DIRS[plan.fmt], **spec, state='writing')
        if plan.fmt not in meta['formats']:
            meta['formats'].append(plan.fmt)
        save_meta(out_dir, meta)
        part = _write_part(plan.fmt, plan.path, preset, seed)
        part.update(spec, state='done', num_files=count_files(plan.path))
        meta[plan.fmt] = part
        save_meta(out_dir, meta)
    for fmt in meta['formats']:  # parts recorded by version 1 get their file count now
        if meta[fmt].get('num_files') is None:
            meta[fmt]['num_files'] = count_files(out_dir / FORMAT_DIRS[fmt])
    specs = {(meta[f]['preset'], meta[f]['seed']) for f in meta['formats']}
    same = specs == {(preset.name, seed)}
    meta['preset'] = dataclasses.asdict(preset) if same else None
    meta['seed'] = seed if same else None
    save_meta(out_dir, meta)
    return meta
