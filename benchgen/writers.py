"""Write rendered videos in the on-disk formats of ImageNet-VID, Cityscapes and KITTI.

Each writer reproduces the layout the real dataset has after OpenMMLab's preparation, so the
project's dataset classes read the real data and the bundled benchmark alike:

* :class:`VidWriter` -- ILSVRC2015 VID (``Data/VID``, ``Annotations/VID`` XML, FGFA's ``Lists``)
  plus ``annotations/imagenet_vid_{split}.json`` exactly as mmtracking's ``imagenet2coco_vid.py``
  converts them (CocoVID);
* :class:`CityscapesWriter` -- ``leftImg8bit_sequence`` snippets of 30 frames, the annotated 20th
  frame in ``leftImg8bit`` and ``gtFine`` (``labelIds``, ``labelTrainIds``, ``instanceIds``,
  ``color``), ``disparity``/``disparity_sequence`` and ``camera``; and, an extension that real
  Cityscapes does not have, ``gtFine_sequence`` with the labels of every frame;
* :class:`KittiWriter` -- KITTI raw ``image_02`` drives and the depth benchmark's
  ``data_depth_annotated`` 16-bit depth PNGs (``depth * 256``, 0 = no depth).

Boxes and annotations follow the real conventions; see ``data/README.md``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Sequence, Tuple
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image

from mmvideoeq.class_names import VID_CATEGORY_IDS, VID_CLASSES, VID_WNIDS, vid_categories

from .classes import CITYSCAPES_LABELS, CLASSES, TO_CITYSCAPES, TO_VID
from .scene import RenderedVideo

__all__ = [
    'VidWriter',
    'CityscapesWriter',
    'KittiWriter',
    'visible_boxes',
    'uniform_train_frames',
    'cityscapes_lookup',
    'CITYSCAPES_BASELINE',
]

#: Stereo baseline (m) written to Cityscapes camera files and used to turn depth into disparity
#: (the value of Cityscapes' own camera files).
CITYSCAPES_BASELINE = 0.209313


def _mkdir(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)


def _save_png(path: Path, array: np.ndarray) -> None:
    """Save as PNG: uint8 ``(H, W)`` grey, ``(H, W, 3|4)`` RGB(A), uint16 ``(H, W)`` 16-bit."""
    _mkdir(path.parent)
    Image.fromarray(np.ascontiguousarray(array)).save(path, format='PNG', compress_level=1)


def _dump_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'w') as f:
        json.dump(obj, f)


def uniform_train_frames(num_frames: int, num_samples: int) -> List[int]:
    """Frames marked ``is_vid_train_frame``: the centres of ``num_samples`` equal segments.

    This is how FGFA's ``VID_train_15frames.txt`` picks 15 frames per training video; a video
    with at most ``num_samples`` frames keeps all of them.

    Args:
        num_frames (int): Frames in the video.
        num_samples (int): Frames to mark, >= 1.

    Returns:
        list[int]: Sorted frame ids.
    """
    if num_frames <= num_samples:
        return list(range(num_frames))
    return [int((i + 0.5) * num_frames / num_samples) for i in range(num_samples)]


def visible_boxes(instance: np.ndarray, min_area: int) -> Dict[int, Tuple[int, int, int, int, int]]:
    """Tight boxes of the visible pixels of each object in an instance map.

    Args:
        instance (np.ndarray): ``(H, W)`` track ids, 0 for background.
        min_area (int): Objects with fewer visible pixels are left out.

    Returns:
        dict[int, tuple]: ``track id -> (x, y, w, h, visible pixels)``, ``w``/``h`` counting
        pixels (the box spans ``[x, x + w) x [y, y + h)``), sorted by track id.
    """
    out = {}
    ids, counts = np.unique(instance, return_counts=True)
    for tid, count in zip(ids.tolist(), counts.tolist()):
        if tid == 0 or count < min_area:
            continue
        mask = instance == tid
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        out[tid] = (
            int(cols[0]),
            int(rows[0]),
            int(cols[-1] - cols[0] + 1),
            int(rows[-1] - rows[0] + 1),
            int(count),
        )
    return out


class VidWriter:
    """ImageNet-VID (ILSVRC2015) layout with OpenMMLab's CocoVID annotation files.

    Args:
        root (Path): The ``ILSVRC`` folder.
        split (str): ``'train'`` or ``'val'``.
        jpeg_quality (int): JPEG quality of the frames.
        min_box_area (int): Objects with fewer visible pixels get no box.
        occluded_ratio (float): An object is ``occluded`` when less than this fraction of its
            in-frame pixels is visible.
        train_frames_per_video (int): Frames per training video marked ``is_vid_train_frame``.
    """

    def __init__(
        self,
        root: Path,
        split: str,
        *,
        jpeg_quality: int = 90,
        min_box_area: int = 16,
        occluded_ratio: float = 0.9,
        train_frames_per_video: int = 15,
    ) -> None:
        if split not in ('train', 'val'):
            raise ValueError(f"ImageNet-VID split must be 'train' or 'val', got {split!r}")
        self.root, self.split = Path(root), split
        self.jpeg_quality = jpeg_quality
        self.min_box_area = min_box_area
        self.occluded_ratio = occluded_ratio
        self.train_frames_per_video = train_frames_per_video
        self.coco: dict = dict(categories=vid_categories(), videos=[], images=[], annotations=[])
        self.list_lines: List[str] = []
        self.frame_lines: List[str] = []
        self._global_instance = 1
        self._global_frame = 1

    def video_name(self, index: int) -> str:
        """Name of the ``index``-th video, as in ``Lists/`` and the CocoVID ``videos``."""
        if self.split == 'train':
            return f'train/BUNDLED_VID_train_0000/BUNDLED_train_{index:08d}'
        return f'val/BUNDLED_val_{index:08d}'

    def add(self, index: int, video: RenderedVideo) -> dict:
        """Write the frames and annotations of one video.

        Args:
            index (int): Index of the video in the split.
            video (RenderedVideo): The rendered video.

        Returns:
            dict: Its entry in the benchmark's metadata.
        """
        name = self.video_name(index)
        num_frames, height, width = video.frames.shape[:3]
        vid_id = len(self.coco['videos']) + 1
        train_frames = (
            uniform_train_frames(num_frames, self.train_frames_per_video)
            if self.split == 'train'
            else []
        )
        self.coco['videos'].append(
            dict(
                id=vid_id,
                name=name,
                vid_train_frames=train_frames,
                shot_changes=list(video.shot_changes),
            )
        )
        instance_ids: Dict[int, int] = {}
        for t in range(num_frames):
            img_id = len(self.coco['images']) + 1
            file_name = f'{name}/{t:06d}.JPEG'
            path = self.root / 'Data' / 'VID' / file_name
            _mkdir(path.parent)
            Image.fromarray(video.frames[t]).save(path, format='JPEG', quality=self.jpeg_quality)
            self.coco['images'].append(
                dict(
                    file_name=file_name,
                    height=height,
                    width=width,
                    id=img_id,
                    frame_id=t,
                    video_id=vid_id,
                    is_vid_train_frame=t in train_frames,
                )
            )
            objects = []
            for tid, (x, y, w, h, area) in visible_boxes(
                video.instance[t], self.min_box_area
            ).items():
                vid_name = TO_VID[video.track_classes[tid]]
                if vid_name is None:
                    continue
                if tid not in instance_ids:
                    instance_ids[tid] = self._global_instance
                    self._global_instance += 1
                occluded = area < self.occluded_ratio * video.unoccluded_area[t].get(tid, area)
                objects.append((tid, vid_name, x, y, w, h, occluded))
                self.coco['annotations'].append(
                    dict(
                        id=len(self.coco['annotations']) + 1,
                        video_id=vid_id,
                        image_id=img_id,
                        category_id=VID_CATEGORY_IDS[vid_name],
                        instance_id=instance_ids[tid],
                        bbox=[x, y, w, h],
                        area=w * h,
                        iscrowd=False,
                        occluded=occluded,
                        generated=False,
                    )
                )
            self._write_xml(name, t, width, height, objects)
            self.frame_lines.append(f'{name}/{t:06d} {self._global_frame}')
            self._global_frame += 1
        if self.split == 'train':
            self.list_lines += [f'{name} 1 {t + 1} {num_frames}' for t in train_frames]
        else:
            start = self._global_frame - num_frames
            self.list_lines.append(f'{name} {start} 0 {num_frames}')
        return dict(
            name=name,
            num_frames=num_frames,
            shot_changes=list(video.shot_changes),
            shots=video.shots,
            tracks={str(k): v for k, v in video.track_classes.items()},
        )

    def _write_xml(
        self, name: str, t: int, width: int, height: int, objects: Sequence[tuple]
    ) -> None:
        """ILSVRC VID XML of a frame (``xmax = x + w``: the box's right edge)."""
        lines = [
            '<annotation>',
            f'\t<folder>{escape(name.split("/", 1)[1])}</folder>',
            f'\t<filename>{t:06d}</filename>',
            '\t<source>',
            '\t\t<database>ILSVRC_2015 (mmvideoeq bundled benchmark)</database>',
            '\t</source>',
            '\t<size>',
            f'\t\t<width>{width}</width>',
            f'\t\t<height>{height}</height>',
            '\t</size>',
        ]
        for tid, vid_name, x, y, w, h, occluded in objects:
            wnid = VID_WNIDS[VID_CLASSES.index(vid_name)]
            lines += [
                '\t<object>',
                f'\t\t<trackid>{tid - 1}</trackid>',
                f'\t\t<name>{wnid}</name>',
                '\t\t<bndbox>',
                f'\t\t\t<xmax>{x + w}</xmax>',
                f'\t\t\t<xmin>{x}</xmin>',
                f'\t\t\t<ymax>{y + h}</ymax>',
                f'\t\t\t<ymin>{y}</ymin>',
                '\t\t</bndbox>',
                f'\t\t<occluded>{int(occluded)}</occluded>',
                '\t\t<generated>0</generated>',
                '\t</object>',
            ]
        lines.append('</annotation>')
        path = self.root / 'Annotations' / 'VID' / name / f'{t:06d}.xml'
        _mkdir(path.parent)
        path.write_text('\n'.join(lines) + '\n')

    def finish(self) -> None:
        """Write ``annotations/imagenet_vid_{split}.json`` and the ``Lists/`` files."""
        _dump_json(self.root / 'annotations' / f'imagenet_vid_{self.split}.json', self.coco)
        lists = self.root / 'Lists'
        lists.mkdir(parents=True, exist_ok=True)
        if self.split == 'train':
            (lists / 'VID_train_15frames.txt').write_text('\n'.join(self.list_lines) + '\n')
        else:
            (lists / 'VID_val_videos.txt').write_text('\n'.join(self.list_lines) + '\n')
            (lists / 'VID_val_frames.txt').write_text('\n'.join(self.frame_lines) + '\n')


def cityscapes_lookup() -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Lookup tables from internal class ids to Cityscapes values.

    Returns:
        tuple[np.ndarray, ...]: ``(label_id, train_id, has_instances, color)`` indexed by the
        internal class id: uint8, uint8, bool and ``(N, 3)`` uint8 arrays.
    """
    n = len(CLASSES)
    label_id = np.zeros(n, np.uint8)
    train_id = np.zeros(n, np.uint8)
    has_inst = np.zeros(n, bool)
    color = np.zeros((n, 3), np.uint8)
    for i, name in enumerate(CLASSES):
        label = CITYSCAPES_LABELS[TO_CITYSCAPES[name]]
        label_id[i], train_id[i], has_inst[i], color[i] = (
            label.id,
            label.train_id,
            label.has_instances,
            label.color,
        )
    return label_id, train_id, has_inst, color


class CityscapesWriter:
    """Cityscapes ``leftImg8bit_sequence`` snippets with ``gtFine`` labels of the annotated frame.

    Args:
        root (Path): The ``cityscapes`` folder.
        split (str): ``'train'`` or ``'val'``.
        annotated_index (int): Index in the snippet of the annotated frame (19: the 20th frame).
        dense_labels (bool): Also write ``gtFine_sequence`` labels for every frame.
        disparity (bool): Write ``disparity``/``disparity_sequence`` and ``camera`` files.
    """

    def __init__(
        self,
        root: Path,
        split: str,
        *,
        annotated_index: int = 19,
        dense_labels: bool = True,
        disparity: bool = True,
    ) -> None:
        if split not in ('train', 'val', 'test'):
            raise ValueError(f"Cityscapes split must be 'train', 'val' or 'test', got {split!r}")
        self.root, self.split = Path(root), split
        self.annotated_index = annotated_index
        self.dense_labels = dense_labels
        self.disparity = disparity
        self.label_id, self.train_id, self.has_inst, self.color = cityscapes_lookup()

    def label_maps(
        self, semantic: np.ndarray, instance: np.ndarray
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cityscapes ``labelIds``, ``labelTrainIds`` and ``instanceIds`` of a frame.

        ``instanceIds`` is ``labelId * 1000 + k`` on objects of a class with instances
        (``k`` = track id - 1, stable over the snippet) and ``labelId`` elsewhere.

        Args:
            semantic (np.ndarray): ``(H, W)`` internal class ids.
            instance (np.ndarray): ``(H, W)`` track ids (0 = background).

        Returns:
            tuple[np.ndarray, np.ndarray, np.ndarray]: uint8, uint8 and uint16 ``(H, W)`` maps.
        """
        label_ids = self.label_id[semantic]
        instance_ids = label_ids.astype(np.uint16)
        things = self.has_inst[semantic] & (instance > 0)
        instance_ids[things] = label_ids[things].astype(np.uint16) * 1000 + (
            instance[things] - 1
        ).astype(np.uint16)
        return label_ids, self.train_id[semantic], instance_ids

    def add(self, city: str, seq: int, video: RenderedVideo) -> dict:
        """Write one snippet (frame numbers ``0 .. T-1``; the annotated one is 19).

        Args:
            city (str): City name (lowercase, no ``_``).
            seq (int): Sequence number.
            video (RenderedVideo): The rendered snippet.

        Returns:
            dict: Its entry in the benchmark's metadata.
        """
        if '_' in city:
            raise ValueError(f'a Cityscapes city name must not contain "_", got {city!r}')
        num_frames = video.frames.shape[0]
        if not 0 <= self.annotated_index < num_frames:
            raise ValueError(
                f'annotated_index {self.annotated_index} is outside the snippet of '
                f'{num_frames} frames'
            )
        sub = Path(self.split) / city
        for t in range(num_frames):
            stem = f'{city}_{seq:06d}_{t:06d}'
            _save_png(
                self.root / 'leftImg8bit_sequence' / sub / f'{stem}_leftImg8bit.png',
                video.frames[t],
            )
            annotated = t == self.annotated_index
            if annotated:
                _save_png(
                    self.root / 'leftImg8bit' / sub / f'{stem}_leftImg8bit.png', video.frames[t]
                )
            if annotated or self.dense_labels:
                label_ids, train_ids, instance_ids = self.label_maps(
                    video.semantic[t], video.instance[t]
                )
                folders = (['gtFine'] if annotated else []) + (
                    ['gtFine_sequence'] if self.dense_labels else []
                )
                for folder in folders:
                    base = self.root / folder / sub / f'{stem}_gtFine_'
                    _save_png(Path(f'{base}labelIds.png'), label_ids)
                    _save_png(Path(f'{base}labelTrainIds.png'), train_ids)
                    _save_png(Path(f'{base}instanceIds.png'), instance_ids)
                if annotated:
                    rgba = np.concatenate(
                        [
                            self.color[video.semantic[t]],
                            np.full(label_ids.shape + (1,), 255, np.uint8),
                        ],
                        axis=2,
                    )
                    _save_png(self.root / 'gtFine' / sub / f'{stem}_gtFine_color.png', rgba)
            if self.disparity:
                disp = self._disparity(video.depth[t], video.focal[t])
                _save_png(self.root / 'disparity_sequence' / sub / f'{stem}_disparity.png', disp)
                if annotated:
                    _save_png(self.root / 'disparity' / sub / f'{stem}_disparity.png', disp)
                    self._write_camera(sub / f'{stem}_camera.json', video, t)
        return dict(
            name=f'{city}_{seq:06d}',
            city=city,
            num_frames=num_frames,
            annotated_frame=f'{city}_{seq:06d}_{self.annotated_index:06d}',
            shot_changes=list(video.shot_changes),
            shots=video.shots,
            tracks={str(k): v for k, v in video.track_classes.items()},
        )

    @staticmethod
    def _disparity(depth: np.ndarray, focal: float) -> np.ndarray:
        """Cityscapes disparity PNG values: ``d * 256 + 1`` with ``d = f B / depth``, 0 invalid."""
        out = np.zeros(depth.shape, np.uint16)
        valid = depth > 0
        disp = focal * CITYSCAPES_BASELINE / depth[valid]
        out[valid] = np.clip(np.rint(disp * 256 + 1), 1, 65535).astype(np.uint16)
        return out

    def _write_camera(self, rel: Path, video: RenderedVideo, t: int) -> None:
        """Cityscapes camera file: intrinsics in pixels, camera height ``z`` in metres."""
        width = video.frames.shape[2]
        _dump_json(
            self.root / 'camera' / rel,
            dict(
                extrinsic=dict(
                    baseline=CITYSCAPES_BASELINE,
                    pitch=0.0,
                    roll=0.0,
                    yaw=0.0,
                    x=0.0,
                    y=0.0,
                    z=float(video.cam_height[t]),
                ),
                intrinsic=dict(
                    fx=float(video.focal[t]),
                    fy=float(video.focal[t]),
                    u0=width / 2 - 0.5,
                    v0=float(video.horizon[t]) - 0.5,
                ),
            ),
        )


class KittiWriter:
    """KITTI raw drives (``image_02``) with dense depth in the depth benchmark's layout.

    Args:
        root (Path): The ``kitti`` folder.
        split (str): ``'train'`` or ``'val'`` (the ``data_depth_annotated`` split folder).
        date (str): Recording date folder of the raw data.
    """

    def __init__(self, root: Path, split: str, *, date: str = '2000_01_01') -> None:
        if split not in ('train', 'val'):
            raise ValueError(f"KITTI split must be 'train' or 'val', got {split!r}")
        self.root, self.split, self.date = Path(root), split, date

    def add(self, index: int, video: RenderedVideo) -> dict:
        """Write one drive.

        Args:
            index (int): Drive number (unique over both splits).
            video (RenderedVideo): The rendered drive (fixed focal length).

        Returns:
            dict: Its entry in the benchmark's metadata.
        """
        drive = f'{self.date}_drive_{index:04d}_sync'
        raw = self.root / 'raw' / self.date / drive / 'image_02' / 'data'
        gt = (
            self.root
            / 'data_depth_annotated'
            / self.split
            / drive
            / 'proj_depth'
            / 'groundtruth'
            / 'image_02'
        )
        for t in range(video.frames.shape[0]):
            _save_png(raw / f'{t:010d}.png', video.frames[t])
            depth = np.clip(np.rint(video.depth[t].astype(np.float64) * 256), 0, 65535)
            _save_png(gt / f'{t:010d}.png', depth.astype(np.uint16))
        self._write_calib(video)
        return dict(
            name=drive,
            num_frames=int(video.frames.shape[0]),
            shot_changes=list(video.shot_changes),
            shots=video.shots,
            tracks={str(k): v for k, v in video.track_classes.items()},
        )

    def _write_calib(self, video: RenderedVideo) -> None:
        """``calib_cam_to_cam.txt`` with the rectified camera 2 of the drive's first frame."""
        height, width = video.frames.shape[1:3]
        f = float(video.focal[0])
        cx, cy = width / 2 - 0.5, float(video.horizon[0]) - 0.5
        k = (
            f'{f:e} 0.000000e+00 {cx:e} 0.000000e+00 {f:e} {cy:e} 0.000000e+00 0.000000e+00 '
            '1.000000e+00'
        )
        p = (
            f'{f:e} 0.000000e+00 {cx:e} 0.000000e+00 0.000000e+00 {f:e} {cy:e} 0.000000e+00 '
            '0.000000e+00 0.000000e+00 1.000000e+00 0.000000e+00'
        )
        path = self.root / 'raw' / self.date / 'calib_cam_to_cam.txt'
        text = (
            f'S_02: {width:e} {height:e}\nK_02: {k}\nS_rect_02: {width:e} {height:e}\n'
            f'P_rect_02: {p}\n'
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.read_text() != text:
            raise ValueError(
                f'{path} already describes another camera; KITTI drives of one date '
                'must share the camera (same frame size and focal length)'
            )
        path.write_text(text)
