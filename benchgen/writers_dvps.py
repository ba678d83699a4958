"""Write rendered driving videos as Cityscapes-DVPS, SemKITTI-DVPS and the KITTI depth selection.

The same rendered videos (real photographs, tracked objects, metric depth; :mod:`.scene`) in the
layouts of the real releases, so that ``mmvideoeq``'s DVPS datasets and metrics read both alike:

* ``cityscapes_dvps`` (ViP-DeepLab's Cityscapes-DVPS, ``video_sequence/{split}``): 6 annotated
  frames per sequence, every 5th rendered frame (Cityscapes-VPS annotates every 5th frame of a
  snippet), renumbered ``000000 .. 000005``; ``*_gtFine_instanceTrainIds.png`` = train id * 1000
  + track id on things (person), train id * 1000 on stuff, 32000 on void (the animals are
  Cityscapes' ``dynamic``, water ``unlabeled``); ``*_depth.png`` = metres * 256, 0 on sky;
* ``semkitti_dvps`` (ViP-DeepLab's SemKITTI-DVPS): every frame labelled, but only on a
  LiDAR-like point pattern (:func:`lidar_mask`) within 80 m (depth on every point, labels void
  on the classes SemanticKITTI lacks: animals, water, sky), void (class 255, instance 0,
  depth 0) elsewhere; person is the only thing class; ``*_depth_{focal}.png`` with the focal
  length in pixels in the name;
* ``kitti_depth`` (``depth_selection/val_selection_cropped``): ``image/``,
  ``groundtruth_depth/`` (semi-dense LiDAR-like depth), ``velodyne_raw/`` (sparser) and
  ``intrinsics/`` (3x3 K).

Plain numpy + Pillow, no OpenMMLab import (class tables from :mod:`mmvideoeq.class_names`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, Tuple

import numpy as np

from mmvideoeq.class_names import (
    CITYSCAPES_DVPS_IGNORE_LABEL,
    CITYSCAPES_DVPS_LABEL_DIVISOR,
    SEMKITTI_DVPS_CLASSES,
    SEMKITTI_DVPS_IGNORE_LABEL,
)

from .classes import CITYSCAPES_LABELS, CLASSES, TO_CITYSCAPES
from .scene import DRIVING, RenderedVideo
from .writers import _save_png

__all__ = [
    'DVPS_FORMAT_DIRS',
    'DVPS_PRESETS',
    'DVPSSizes',
    'lidar_mask',
    'cityscapes_dvps_maps',
    'semkitti_dvps_maps',
    'CityscapesDVPSWriter',
    'SemKITTIDVPSWriter',
    'KittiDepthSelectionWriter',
    'dvps_video_plan',
    'write_dvps_format',
]

#: Output folder of each format under the benchmark root.
DVPS_FORMAT_DIRS: Dict[str, str] = {
    'cityscapes_dvps': 'cityscapes_dvps',
    'semkitti_dvps': 'semkitti_dvps',
    'kitti_depth': 'kitti_depth',
}
#: SemanticKITTI class of each internal class (None: unlabelled).
TO_SEMKITTI = {
    'road': 'road',
    'sidewalk': 'sidewalk',
    'terrain': 'terrain',
    'building': 'building',
    'vegetation': 'vegetation',
    'person': 'person',
}
_LIDAR_RANGE = 80.0
_FRAME_STEP = 5  # Cityscapes-VPS annotates every 5th frame


@dataclass(frozen=True)
class DVPSSizes:
    """Size of one DVPS format in a preset.

    Attributes:
        size (tuple[int, int]): Frame size ``(H, W)``.
        train (int): Sequences (drives) in ``train``.
        val (int): Sequences in ``val``.
        frames (int): Labelled frames per sequence.
    """

    size: Tuple[int, int]
    train: int
    val: int
    frames: int


#: Sizes per preset name (the presets of :data:`benchgen.PRESETS`).
DVPS_PRESETS: Dict[str, Dict[str, DVPSSizes]] = {
    'tiny': dict(
        cityscapes_dvps=DVPSSizes((32, 64), 1, 1, 6),
        semkitti_dvps=DVPSSizes((32, 96), 1, 1, 6),
        kitti_depth=DVPSSizes((32, 96), 0, 1, 4),
    ),
    'small': dict(
        cityscapes_dvps=DVPSSizes((64, 128), 4, 2, 6),
        semkitti_dvps=DVPSSizes((64, 208), 2, 1, 30),
        kitti_depth=DVPSSizes((64, 208), 0, 2, 10),
    ),
    'large': dict(
        cityscapes_dvps=DVPSSizes((256, 512), 24, 8, 6),
        semkitti_dvps=DVPSSizes((192, 640), 6, 2, 60),
        kitti_depth=DVPSSizes((192, 640), 0, 4, 25),
    ),
}


def _table(mapping: Callable[[str], int]) -> np.ndarray:
    return np.array([mapping(name) for name in CLASSES], np.int64)


#: Internal class -> Cityscapes train id (void: 32) / SemKITTI class (void: 255).
_CS_TRAIN_ID = _table(
    lambda n: CITYSCAPES_LABELS[TO_CITYSCAPES[n]].train_id
    if CITYSCAPES_LABELS[TO_CITYSCAPES[n]].train_id != 255
    else CITYSCAPES_DVPS_IGNORE_LABEL
)
_CS_THING = _table(lambda n: CITYSCAPES_LABELS[TO_CITYSCAPES[n]].has_instances).astype(bool)
_SK_ID = _table(
    lambda n: SEMKITTI_DVPS_CLASSES.index(TO_SEMKITTI[n])
    if n in TO_SEMKITTI
    else SEMKITTI_DVPS_IGNORE_LABEL
)
_SK_THING = _table(lambda n: n == 'person').astype(bool)


def lidar_mask(shape: Tuple[int, int], horizon: float, focal: float, col_step: int) -> np.ndarray:
    """Pixels hit by a 64-beam LiDAR mounted at the camera (HDL-64E: +2 to -24.8 degrees).

    Beam ``i`` at elevation ``a_i`` projects to row ``horizon - focal * tan(a_i)``; distinct rows
    are thinned to at most one in two, and each ring keeps every ``col_step``-th column
    (shifted by one on every other ring).

    Args:
        shape (tuple[int, int]): ``(H, W)``.
        horizon (float): Principal-point row.
        focal (float): Focal length in pixels.
        col_step (int): Horizontal spacing of the points.

    Returns:
        np.ndarray: ``(H, W)`` bool.
    """
    h, w = shape
    angles = np.deg2rad(np.linspace(2.0, -24.8, 64))
    rows = np.unique(np.floor(horizon - focal * np.tan(angles)).astype(int))
    rows = rows[(rows >= 0) & (rows < h)]
    if len(rows) > h // 2:
        rows = rows[::2]
    mask = np.zeros((h, w), bool)
    for k, r in enumerate(rows):
        mask[r, (k % col_step) :: col_step] = True
    return mask


def _depth_png(depth: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(depth.astype(np.float64) * 256), 0, 65535).astype(np.uint16)


def cityscapes_dvps_maps(semantic: np.ndarray, instance: np.ndarray) -> np.ndarray:
    """Cityscapes-DVPS panoptic map: train id * 1000 + track id (things), void 32000.

    Args:
        semantic (np.ndarray): ``(H, W)`` internal class ids.
        instance (np.ndarray): ``(H, W)`` track ids (0 = background).

    Returns:
        np.ndarray: ``(H, W)`` uint16.
    """
    train_id = _CS_TRAIN_ID[semantic]
    panoptic = train_id * CITYSCAPES_DVPS_LABEL_DIVISOR
    things = _CS_THING[semantic] & (instance > 0)
    panoptic[things] += instance[things]
    return panoptic.astype(np.uint16)


def semkitti_dvps_maps(
    semantic: np.ndarray, instance: np.ndarray, labelled: np.ndarray
) -> Tuple[np.ndarray, np.ndarray]:
    """SemKITTI-DVPS class (8-bit, void 255) and instance (16-bit) maps on the labelled pixels.

    Args:
        semantic (np.ndarray): ``(H, W)`` internal class ids.
        instance (np.ndarray): ``(H, W)`` track ids.
        labelled (np.ndarray): ``(H, W)`` bool, the LiDAR points.

    Returns:
        tuple[np.ndarray, np.ndarray]: uint8 classes and uint16 instances.
    """
    cls = np.where(labelled, _SK_ID[semantic], SEMKITTI_DVPS_IGNORE_LABEL)
    inst = np.where(labelled & _SK_THING[semantic] & (instance > 0), instance, 0)
    return cls.astype(np.uint8), inst.astype(np.uint16)


class _VideoSequenceWriter:
    """Writes into ``{root}/video_sequence/{split}`` (the DVPS layouts).

    Args:
        root (Path): The format's folder.
        split (str): ``'train'`` or ``'val'``.
    """

    def __init__(self, root: Path, split: str) -> None:
        self.folder = Path(root) / 'video_sequence' / split


class CityscapesDVPSWriter(_VideoSequenceWriter):
    """``video_sequence/{split}`` of Cityscapes-DVPS (see :class:`_VideoSequenceWriter`)."""

    def add(self, seq: int, video: RenderedVideo) -> dict:
        """Write the annotated frames (every 5th) of one rendered snippet."""
        city = video.shots[0]['backdrop']
        picked = list(range(0, video.frames.shape[0], _FRAME_STEP))
        for i, t in enumerate(picked):
            stem = self.folder / f'{seq:06d}_{i:06d}_{city}_{seq:06d}_{t:06d}'
            _save_png(Path(f'{stem}_leftImg8bit.png'), video.frames[t])
            panoptic = cityscapes_dvps_maps(video.semantic[t], video.instance[t])
            _save_png(Path(f'{stem}_gtFine_instanceTrainIds.png'), panoptic)
            _save_png(Path(f'{stem}_depth.png'), _depth_png(video.depth[t]))
        return dict(name=f'{seq:06d}', num_frames=len(picked), source_frames=picked, city=city)


class SemKITTIDVPSWriter(_VideoSequenceWriter):
    """``video_sequence/{split}`` of SemKITTI-DVPS, LiDAR-like sparse labels and depth."""

    def add(self, seq: int, video: RenderedVideo) -> dict:
        """Write every frame of one drive."""
        focal = float(np.float32(video.focal[0]))
        density = []
        for t in range(video.frames.shape[0]):
            depth = video.depth[t]
            mask = lidar_mask(depth.shape, float(video.horizon[t]), float(video.focal[t]), 2)
            mask &= (depth > 0) & (depth <= _LIDAR_RANGE)
            cls, inst = semkitti_dvps_maps(video.semantic[t], video.instance[t], mask)
            stem = self.folder / f'{seq:06d}_{t:06d}'
            _save_png(Path(f'{stem}_leftImg8bit.png'), video.frames[t])
            _save_png(Path(f'{stem}_gtFine_class.png'), cls)
            _save_png(Path(f'{stem}_gtFine_instance.png'), inst)
            _save_png(Path(f'{stem}_depth_{focal!r}.png'), _depth_png(np.where(mask, depth, 0)))
            density.append(float(mask.mean()))
        return dict(
            name=f'{seq:06d}',
            num_frames=int(video.frames.shape[0]),
            focal=focal,
            labelled_fraction=float(np.mean(density)),
        )


class KittiDepthSelectionWriter:
    """``depth_selection/val_selection_cropped`` of the KITTI depth prediction benchmark.

    Args:
        root (Path): The format's folder.
        date (str): Recording date in the drive names.
    """

    def __init__(self, root: Path, date: str = '2000_01_01') -> None:
        self.folder = Path(root) / 'depth_selection' / 'val_selection_cropped'
        self.date = date

    def add(self, index: int, video: RenderedVideo) -> dict:
        """Write the frames of one drive (camera 02)."""
        drive = f'{self.date}_drive_{index:04d}_sync'
        h, w = video.frames.shape[1:3]
        for t in range(video.frames.shape[0]):
            depth, f = video.depth[t], float(video.focal[t])
            cy = float(video.horizon[t]) - 0.5
            in_range = (depth > 0) & (depth <= _LIDAR_RANGE)
            dense = lidar_mask((h, w), cy + 0.5, f, 1) & in_range
            sparse = lidar_mask((h, w), cy + 0.5, f, 4) & in_range
            frame = f'{t:010d}_image_02'
            _save_png(self.folder / 'image' / f'{drive}_image_{frame}.png', video.frames[t])
            _save_png(
                self.folder / 'groundtruth_depth' / f'{drive}_groundtruth_depth_{frame}.png',
                _depth_png(np.where(dense, depth, 0)),
            )
            _save_png(
                self.folder / 'velodyne_raw' / f'{drive}_velodyne_raw_{frame}.png',
                _depth_png(np.where(sparse, depth, 0)),
            )
            k = [f, 0.0, w / 2 - 0.5, 0.0, f, cy, 0.0, 0.0, 1.0]
            path = self.folder / 'intrinsics' / f'{drive}_image_{frame}.txt'
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(' '.join(f'{v:.6f}' for v in k) + '\n')
        return dict(name=drive, num_frames=int(video.frames.shape[0]))


def _sizes(fmt: str, preset_name: str) -> DVPSSizes:
    if preset_name not in DVPS_PRESETS:
        raise ValueError(
            f'no {fmt} sizes for preset {preset_name!r}; presets with DVPS formats: '
            f'{sorted(DVPS_PRESETS)}'
        )
    return DVPS_PRESETS[preset_name][fmt]


def dvps_video_plan(fmt: str, preset_name: str):
    """Style, size, rendered frames, videos per split and cuts (0) of a DVPS format."""
    sizes = _sizes(fmt, preset_name)
    frames = (sizes.frames - 1) * _FRAME_STEP + 1 if fmt == 'cityscapes_dvps' else sizes.frames
    return DRIVING, sizes.size, frames, dict(train=sizes.train, val=sizes.val), 0


def write_dvps_format(
    fmt: str, root: Path, preset_name: str, render: Callable[[str, int], RenderedVideo]
) -> dict:
    """Render and write every video of a DVPS format.

    Args:
        fmt (str): A key of :data:`DVPS_FORMAT_DIRS`.
        root (Path): The format's folder.
        preset_name (str): Preset.
        render (Callable[[str, int], RenderedVideo]): ``(split, index) -> video`` (the
            benchmark's seeded renderer).

    Returns:
        dict: The format's entry of the benchmark metadata (``root``, ``size``, ``sizes``,
        ``train``, ``val``: per-video entries).
    """
    sizes = _sizes(fmt, preset_name)
    part: dict = dict(root=DVPS_FORMAT_DIRS[fmt], size=list(sizes.size), sizes=asdict(sizes))
    drive = 0
    for split in ('train', 'val'):
        entries = []
        for index in range(getattr(sizes, split)):
            video = render(split, index)
            if fmt == 'cityscapes_dvps':
                entry = CityscapesDVPSWriter(root, split).add(index, video)
            elif fmt == 'semkitti_dvps':
                entry = SemKITTIDVPSWriter(root, split).add(drive, video)
                drive += 1
            else:
                entry = KittiDepthSelectionWriter(root).add(drive, video)
                drive += 1
            tracks = {str(k): v for k, v in video.track_classes.items()}
            entries.append(dict(index=index, shot_changes=[], tracks=tracks, **entry))
        part[split] = entries
    return part
