"""Cityscapes-DVPS and SemKITTI-DVPS (depth-aware video panoptic segmentation, thesis ch. 7).

Both datasets keep every file of a split in one folder, ``video_sequence/{split}`` (layouts in
:mod:`.dvps_io`; ViP-DeepLab's ``cityscapes-dvps/README.md`` and ``semkitti-dvps/README.md``),
and list one data info per frame, ordered by sequence then frame, so that a streaming loop walks
each sequence in order. With ``with_next_frame=True`` each info also names the next frame of its
sequence (frame id + 1) for ViP-DeepLab's next-frame instance branch, and frames without one are
left out, as deeplab2's ``data/build_dvps_data.py`` does.

Written here because mmseg/mmdet have neither dataset; mmengine's :class:`BaseDataset` provides
the rest (``data_root``/``data_prefix`` joining, ``pipeline``, ``indices``, serialisation).
"""

from __future__ import annotations

from pathlib import Path

from mmengine.dataset import BaseDataset

from mmvideoeq.class_names import (
    CITYSCAPES_DVPS_CLASSES,
    CITYSCAPES_DVPS_IGNORE_LABEL,
    CITYSCAPES_DVPS_LABEL_DIVISOR,
    CITYSCAPES_DVPS_THING_IDS,
    SEMKITTI_DVPS_CLASSES,
    SEMKITTI_DVPS_IGNORE_LABEL,
    SEMKITTI_DVPS_LABEL_DIVISOR,
    SEMKITTI_DVPS_THING_IDS,
)
from mmvideoeq.registry import DATASETS

from .dvps_io import list_frames
from .safe_loading import SkipUnreadableFramesMixin

__all__ = ['CityscapesDVPSDataset', 'SemKITTIDVPSDataset']

_DEPTH_SCALE = 256.0


class _DVPSDataset(SkipUnreadableFramesMixin, BaseDataset):
    """Frames of one ``video_sequence/{split}`` folder (see the subclasses).

    A frame whose image or label file cannot be read is skipped and reported in test mode, and
    replaced by another frame (with a warning naming the file) in training
    (:mod:`.safe_loading`).

    Args:
        with_next_frame (bool): Add ``next_*`` paths and ``next_frame_id`` of frame
            ``frame_id + 1`` and drop the frames that have none.
        require_labels (bool): A frame whose label or depth file is missing raises
            ``FileNotFoundError``; ``False`` (test splits) sets those paths to ``None``.
        data_prefix (dict): ``img_path``: the split folder, relative to ``data_root``.
        **kwargs: Other :class:`~mmengine.dataset.BaseDataset` arguments (``data_root``,
            ``pipeline``, ``test_mode``, ``indices``, ...).
    """

    FORMAT = ''
    IMAGE_SUFFIX = 'leftImg8bit'

    def __init__(
        self,
        *,
        with_next_frame: bool = False,
        require_labels: bool = True,
        data_prefix: dict | None = None,
        **kwargs,
    ) -> None:
        self.with_next_frame = with_next_frame
        self.require_labels = require_labels
        super().__init__(data_prefix=data_prefix or dict(img_path='video_sequence/val'), **kwargs)

    def _label_files(self, folder: Path) -> dict:
        """``{kind: {(seq, frame): file name}}`` of the label and depth files."""
        raise NotImplementedError

    def _frame_info(self, folder: Path, image, files: dict) -> dict:
        """Format-specific info keys of the frame whose image name matched ``image``."""
        raise NotImplementedError

    def load_data_list(self) -> list[dict]:
        """One info per frame image, ordered by ``(sequence, frame)``.

        Raises:
            FileNotFoundError: The folder, or (``require_labels``) a label/depth file, is
                missing.
            ValueError: The folder holds no frame image.
        """
        folder = Path(self.data_prefix['img_path'])
        images = list_frames(folder, self.FORMAT, self.IMAGE_SUFFIX)
        if not images:
            raise ValueError(
                f'{folder} holds no *_{self.IMAGE_SUFFIX}.png frame in the {self.FORMAT} layout '
                '({seq}_{frame}_..._leftImg8bit.png)'
            )
        labels = self._label_files(folder)
        infos = {}
        for key, match in images.items():
            files = {kind: found.get(key) for kind, found in labels.items()}
            missing = [kind for kind, name in files.items() if name is None]
            if missing and self.require_labels:
                raise FileNotFoundError(
                    f'{folder}: frame {match.string} has no {" / ".join(missing)} file; pass '
                    'require_labels=False for a split without labels'
                )
            info = dict(
                img_path=str(folder / match.string),
                video_id=key[0],
                frame_id=key[1],
                frame_name=match.string[: -len(f'_{self.IMAGE_SUFFIX}.png')],
                panoptic_format=self.FORMAT,
                label_divisor=self.metainfo['label_divisor'],
                ignore_label=self.metainfo['ignore_label'],
                depth_scale=_DEPTH_SCALE,
            )
            info.update(self._frame_info(folder, match, files))
            infos[key] = info
        if not self.with_next_frame:
            return list(infos.values())
        out = []
        for (seq, frame), info in infos.items():
            nxt = infos.get((seq, frame + 1))
            if nxt is None:
                continue
            info = dict(info, next_frame_id=frame + 1)
            for k, v in nxt.items():
                if k.endswith('_path'):
                    info[f'next_{k}'] = v
            out.append(info)
        return out


@DATASETS.register_module()
class CityscapesDVPSDataset(_DVPSDataset):
    """Cityscapes-DVPS (ViP-DeepLab): Cityscapes-VPS video panoptic labels plus depth.

    Each sequence has 6 annotated frames (every 5th frame of a Cityscapes snippet), renumbered
    ``000000 .. 000005``. Layout (``data_root`` / ``data_prefix['img_path']``)::

        video_sequence/val/{seq}_{frame}_{city}_{a}_{b}_leftImg8bit.png
                           {seq}_{frame}_{city}_{a}_{b}_gtFine_instanceTrainIds.png
                           {seq}_{frame}_{city}_{a}_{b}_depth.png

    Info keys: ``img_path``, ``panoptic_path``, ``depth_path``, ``video_id`` (``seq``),
    ``frame_id``, ``frame_name``, ``city``, ``panoptic_format='cityscapes_dvps'``,
    ``label_divisor`` (1000), ``ignore_label`` (32), ``depth_scale`` (256) and, with
    ``with_next_frame``, ``next_img_path``, ``next_panoptic_path``, ``next_depth_path``,
    ``next_frame_id``. See :class:`_DVPSDataset` for the arguments.
    """

    FORMAT = 'cityscapes_dvps'
    METAINFO = dict(
        classes=CITYSCAPES_DVPS_CLASSES,
        thing_ids=CITYSCAPES_DVPS_THING_IDS,
        label_divisor=CITYSCAPES_DVPS_LABEL_DIVISOR,
        ignore_label=CITYSCAPES_DVPS_IGNORE_LABEL,
    )

    def _label_files(self, folder: Path) -> dict:
        return dict(
            panoptic=list_frames(folder, self.FORMAT, 'gtFine_instanceTrainIds'),
            depth=list_frames(folder, self.FORMAT, 'depth'),
        )

    def _frame_info(self, folder: Path, image, files: dict) -> dict:
        pan, depth = files['panoptic'], files['depth']
        return dict(
            panoptic_path=None if pan is None else str(folder / pan.string),
            depth_path=None if depth is None else str(folder / depth.string),
            city=image['city'],
        )


@DATASETS.register_module()
class SemKITTIDVPSDataset(_DVPSDataset):
    """SemKITTI-DVPS (ViP-DeepLab): SemanticKITTI's labelled LiDAR points projected to camera 2.

    Labels exist only where LiDAR points project (void 255 elsewhere). Layout::

        video_sequence/val/{seq}_{frame}_leftImg8bit.png
                           {seq}_{frame}_gtFine_class.png      8-bit, void 255
                           {seq}_{frame}_gtFine_instance.png   16-bit
                           {seq}_{frame}_depth_{focal}.png     16-bit, metres * 256

    Info keys: ``img_path``, ``class_path``, ``instance_path``, ``depth_path``, ``focal`` (float,
    from the depth file name), ``video_id``, ``frame_id``, ``frame_name``,
    ``panoptic_format='semkitti_dvps'``, ``label_divisor`` (65536), ``ignore_label`` (255),
    ``depth_scale`` and the ``next_*`` keys. See :class:`_DVPSDataset` for the arguments.
    """

    FORMAT = 'semkitti_dvps'
    METAINFO = dict(
        classes=SEMKITTI_DVPS_CLASSES,
        thing_ids=SEMKITTI_DVPS_THING_IDS,
        label_divisor=SEMKITTI_DVPS_LABEL_DIVISOR,
        ignore_label=SEMKITTI_DVPS_IGNORE_LABEL,
    )

    def _label_files(self, folder: Path) -> dict:
        return {
            'class': list_frames(folder, self.FORMAT, 'gtFine_class'),
            'instance': list_frames(folder, self.FORMAT, 'gtFine_instance'),
            'depth': list_frames(folder, self.FORMAT, r'depth_.+'),
        }

    def _frame_info(self, folder: Path, image, files: dict) -> dict:
        depth = files['depth']
        info = {
            f'{kind}_path': None if files[kind] is None else str(folder / files[kind].string)
            for kind in ('class', 'instance', 'depth')
        }
        info['focal'] = None if depth is None else _focal(folder / depth.string, depth['suffix'])
        return info


def _focal(path: Path, suffix: str) -> float:
    """The focal length (pixels) in a SemKITTI-DVPS depth file name, ``..._depth_{focal}.png``."""
    text = suffix[len('depth_') :]
    try:
        focal = float(text)
    except ValueError:
        focal = float('nan')
    if not (focal > 0 and focal < float('inf')):
        raise ValueError(
            f'{path}: the focal length in the name ({text!r}) is not a positive number; '
            'SemKITTI-DVPS depth files are named {seq}_{frame}_depth_{focal}.png, e.g. '
            '000000_000000_depth_718.8560.png'
        )
    return focal
