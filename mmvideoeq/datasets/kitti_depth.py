"""KITTI depth prediction (Uhrig et al., "Sparsity Invariant CNNs", 3DV 2017), official layouts.

Two layouts of the official download, chosen with ``layout``:

* ``'selection'`` (``data_depth_selection.zip``, the benchmark's 1000-image val selection)::

      depth_selection/val_selection_cropped/
        image/{drive}_image_{frame:010d}_image_{cam}.png
        groundtruth_depth/{drive}_groundtruth_depth_{frame:010d}_image_{cam}.png
        intrinsics/{drive}_image_{frame:010d}_image_{cam}.txt      (3x3 K, row-major)

* ``'annotated'`` (``data_depth_annotated.zip`` + KITTI raw, train and val drives)::

      data_depth_annotated/{split}/{drive}/proj_depth/groundtruth/image_0{2,3}/{frame:010d}.png
      raw/{date}/{drive}/image_0{2,3}/data/{frame:010d}.png
      raw/{date}/calib_cam_to_cam.txt                             (P_rect_0x gives the focal)

Depth PNGs are 16-bit, metres * 256, 0 = no LiDAR point (the devkit's ``io_depth.h``). One info
per frame, ordered by drive, camera and frame: ``img_path``, ``depth_path``, ``depth_scale``
(256), ``video_id`` (``'{drive}_image_{cam}'``), ``frame_id``, ``frame_name``, ``focal`` (pixels,
``None`` when no calibration is found). Written here because mmseg/mmdet have no KITTI depth
dataset.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mmengine.dataset import BaseDataset

from mmvideoeq.registry import DATASETS

from .safe_loading import SkipUnreadableFramesMixin

__all__ = ['KittiDepthDataset', 'KITTI_SELECTION_NAME']

#: A file name of the val selection (image, groundtruth_depth, velodyne_raw or intrinsics).
KITTI_SELECTION_NAME = re.compile(
    r'^(?P<drive>\d{4}_\d{2}_\d{2}_drive_\d{4}_sync)_'
    r'(?P<kind>image|groundtruth_depth|velodyne_raw)_(?P<frame>\d{10})_image_(?P<cam>\d{2})'
    r'\.(?P<ext>png|txt)$'
)
_LAYOUTS = {
    'selection': dict(img_path='depth_selection/val_selection_cropped'),
    'annotated': dict(img_path='raw', depth_path='data_depth_annotated/val'),
}


def _read_focal_from_k(path: Path) -> float:
    values = path.read_text().split()
    if len(values) != 9:
        raise ValueError(f'{path}: expected the 9 numbers of a 3x3 intrinsic matrix')
    return float(values[0])


def _read_focal_from_calib(path: Path, cam: str) -> float | None:
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        if line.startswith(f'P_rect_{cam}:'):
            return float(line.split()[1])
    return None


@DATASETS.register_module()
class KittiDepthDataset(SkipUnreadableFramesMixin, BaseDataset):
    """KITTI depth prediction frames with their 16-bit ground-truth depth.

    A frame whose image or depth map cannot be read is skipped and reported in test mode, and
    replaced by another frame (with a warning naming the file) in training
    (:mod:`.safe_loading`).

    Args:
        layout (str): ``'selection'`` or ``'annotated'`` (see the module docstring).
        cameras (tuple[str, ...]): ``'02'`` and/or ``'03'`` (``'annotated'`` layout).
        data_prefix (dict, optional): Folders relative to ``data_root``: ``img_path`` (the
            selection folder, or the raw root) and, for ``'annotated'``, ``depth_path`` (the
            ``data_depth_annotated/{split}`` folder). Defaults per layout.
        **kwargs: Other :class:`~mmengine.dataset.BaseDataset` arguments.

    Raises:
        FileNotFoundError: A folder, or the image or intrinsics of a depth map, is missing.
        ValueError: Unknown layout, or no depth map found.
    """

    METAINFO = dict(depth_scale=256.0)

    def __init__(
        self,
        *,
        layout: str = 'selection',
        cameras: tuple = ('02',),
        data_prefix: dict | None = None,
        **kwargs,
    ) -> None:
        if layout not in _LAYOUTS:
            raise ValueError(f'layout must be one of {sorted(_LAYOUTS)}, got {layout!r}')
        self.layout = layout
        self.cameras = tuple(cameras)
        super().__init__(data_prefix=data_prefix or dict(_LAYOUTS[layout]), **kwargs)

    def load_data_list(self) -> list[dict]:
        """One info per ground-truth depth map."""
        infos = self._selection() if self.layout == 'selection' else self._annotated()
        if not infos:
            raise ValueError(f'no KITTI ground-truth depth map found under {self.data_prefix}')
        return sorted(infos, key=lambda i: (i['video_id'], i['frame_id']))

    @staticmethod
    def _info(img: Path, depth: Path, video_id: str, frame: int, focal) -> dict:
        if not img.is_file():
            raise FileNotFoundError(f'{img}: the image of depth map {depth} is missing')
        return dict(
            img_path=str(img),
            depth_path=str(depth),
            depth_scale=256.0,
            video_id=video_id,
            frame_id=frame,
            frame_name=img.stem,
            focal=focal,
        )

    def _selection(self) -> list[dict]:
        root = Path(self.data_prefix['img_path'])
        gt_dir = root / 'groundtruth_depth'
        if not gt_dir.is_dir():
            raise FileNotFoundError(f'{gt_dir}: no such folder (layout="selection")')
        infos = []
        for name in sorted(os.listdir(gt_dir)):
            match = KITTI_SELECTION_NAME.match(name)
            if match is None or match['kind'] != 'groundtruth_depth':
                continue
            stem = f"{match['drive']}_image_{match['frame']}_image_{match['cam']}"
            k_file = root / 'intrinsics' / f'{stem}.txt'
            if not k_file.is_file():
                raise FileNotFoundError(f'{k_file}: the intrinsics of {gt_dir / name} are missing')
            infos.append(
                self._info(
                    root / 'image' / f'{stem}.png',
                    gt_dir / name,
                    f"{match['drive']}_image_{match['cam']}",
                    int(match['frame']),
                    _read_focal_from_k(k_file),
                )
            )
        return infos

    def _annotated(self) -> list[dict]:
        raw = Path(self.data_prefix['img_path'])
        gt_root = Path(self.data_prefix['depth_path'])
        if not gt_root.is_dir():
            raise FileNotFoundError(f'{gt_root}: no such folder (layout="annotated")')
        infos = []
        for drive in sorted(os.listdir(gt_root)):
            date = drive[:10]
            for cam in self.cameras:
                gt_dir = gt_root / drive / 'proj_depth' / 'groundtruth' / f'image_{cam}'
                if not gt_dir.is_dir():
                    continue
                focal = _read_focal_from_calib(raw / date / 'calib_cam_to_cam.txt', cam)
                for name in sorted(os.listdir(gt_dir)):
                    if not re.fullmatch(r'\d{10}\.png', name):
                        continue
                    img = raw / date / drive / f'image_{cam}' / 'data' / name
                    infos.append(
                        self._info(
                            img, gt_dir / name, f'{drive}_image_{cam}', int(name[:10]), focal
                        )
                    )
        return infos
