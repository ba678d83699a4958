"""ImageNet VID (ILSVRC2015 VID, plus DET for training) read from OpenMMLab's CocoVID conversion.

The annotation files are those written by mmtracking's converters
``tools/convert_datasets/ilsvrc/imagenet2coco_{vid,det}.py`` (see ``docs/imagenet_vid.md``):

* ``annotations/imagenet_vid_{train,val}.json`` -- CocoVID: a COCO file with an extra top-level
  ``videos`` list; each image has ``video_id``, ``frame_id`` (0-based) and ``is_vid_train_frame``
  (the 15 frames per video of FGFA's ``VID_train_15frames.txt``), each annotation an
  ``instance_id`` (the track), frames under ``Data/VID/``;
* ``annotations/imagenet_det_30plus1cls.json`` -- plain COCO (no ``videos``, no ``frame_id``):
  the DET training images, the 30 VID classes plus ``other_categeries`` (ignored here), with
  ``is_vid_train_frame`` marking the images of FGFA's ``DET_train_30classes.txt``; read it with
  ``ann_format='coco'``: every image becomes a video of one frame.

Two layouts of the same data (``mode``):

* ``'frame'`` (the default): a flat list of frames, videos in file order and frames ordered by
  ``frame_id`` inside each video. Every item is an ordinary mmdet detection sample (``img_path``,
  ``img_id``, ``height``, ``width``, ``instances`` with ``bbox`` (xyxy), ``bbox_label``,
  ``instance_id``, ``ignore_flag``) that also carries ``video_id``, ``frame_id``,
  ``video_length`` (frames of this video in the dataset) and ``ori_video_length`` (frames of this
  video in the file). This is what image-level training (any batch size, mmdet's
  ``DefaultSampler``) and the streaming test loop (frames in order, ``shuffle=False``) consume.
* ``'video'``: mmdet's :class:`~mmdet.datasets.BaseVideoDataset` layout, one item per video
  (``{'video_id', 'video_length', 'images': [frame infos]}``), for mmdet's video pipelines
  (``UniformRefFrameSample``, ``TransformBroadcaster``, ``PackTrackInputs`` ->
  ``TrackDataSample``) and ``TrackImgSampler``. The frame infos are the same dicts as in
  ``'frame'`` mode.

What is reused: loading and the video layout from mmdet 3.3's ``BaseVideoDataset``, the COCO index
from pycocotools, file access from ``mmengine.fileio``. Written here because mmdet 3.3 lacks it:
checking that the file really is CocoVID and that its categories match ``metainfo['classes']`` by
name (``BaseVideoDataset`` maps category ids in file order, which silently mislabels a class subset
given in another order), ordering frames by ``frame_id`` (mmdet keeps file order), the per-video
training frame selection, the flat per-frame layout, and the missing-image check.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Dict, List, Tuple, Union

import mmengine
import mmengine.fileio as fileio
from mmdet.datasets import BaseVideoDataset
from mmengine.logging import print_log
from pycocotools.coco import COCO

from mmvideoeq.class_names import VID_CLASSES
from mmvideoeq.registry import DATASETS

from .safe_loading import SkipUnreadableFramesMixin

__all__ = ['ImagenetVIDDataset', 'IMAGENET_VID_CLASSES', 'uniform_frame_positions']

#: The 30 ImageNet VID classes in the standard order (category ids 1..30 of OpenMMLab's
#: conversion; WordNet ids n02691156 ... n02391049). One list, kept in the bundled benchmark
#: generator (whose package imports no mm* library) and shared here.
IMAGENET_VID_CLASSES = VID_CLASSES

_MODES = ('frame', 'video')
_ANN_FORMATS = ('cocovid', 'coco')
_SAMPLINGS = ('flag', 'uniform', 'all')
_TRAIN_FLAG = 'is_vid_train_frame'
_MAX_LISTED = 10


def uniform_frame_positions(num_frames: int, num_samples: int) -> List[int]:
    """Positions of ``num_samples`` evenly spaced frames of a video of ``num_frames`` frames.

    The video is cut into ``num_samples`` equal segments and the frame at the centre of each is
    taken (the construction of FGFA's ``VID_train_15frames.txt``); a video with at most
    ``num_samples`` frames keeps all of them.

    Args:
        num_frames (int): Number of frames of the video.
        num_samples (int): Number of frames wanted, >= 1.

    Returns:
        list[int]: Sorted, distinct positions in ``[0, num_frames)``.
    """
    if num_samples < 1:
        raise ValueError(f'num_frames_per_video must be >= 1, got {num_samples}')
    if num_frames <= num_samples:
        return list(range(num_frames))
    return [int((i + 0.5) * num_frames / num_samples) for i in range(num_samples)]


@DATASETS.register_module()
class ImagenetVIDDataset(SkipUnreadableFramesMixin, BaseVideoDataset):
    """ImageNet VID / DET (and the bundled synthetic benchmark) in OpenMMLab's CocoVID format.

    Args:
        ann_file (str): Annotation file, relative to ``data_root`` unless absolute.
        mode (str): ``'frame'`` (default): one item per frame; ``'video'``: one item per video
            (mmdet's ``BaseVideoDataset`` layout). See the module docstring.
        ann_format (str): ``'cocovid'`` (default): the file must have ``videos`` and every image a
            ``video_id`` and ``frame_id``; ``'coco'``: a plain COCO file (ImageNet DET) whose
            images each become a one-frame video (``video_id`` = image id, ``frame_id`` = 0).
        train_frame_sampling (str): Which frames of each video to keep when ``test_mode=False``
            (in test mode every frame is kept): ``'flag'`` (default) the frames whose
            ``is_vid_train_frame`` is true (the standard 15 per VID video, and the DET images of
            ``DET_train_30classes.txt``, as mmtracking's SELSA/FGFA configs train);
            ``'uniform'`` ``num_frames_per_video`` evenly spaced frames
            (:func:`uniform_frame_positions`); ``'all'`` every frame.
        num_frames_per_video (int): Frames per video for ``'uniform'``. Defaults to 15.
        check_files (bool): Check on load that every kept frame's image file exists. Defaults to
            False (the check costs one ``stat`` per frame).
        skip_missing_files (bool): With ``check_files``, drop frames whose image is missing (they
            are logged and kept in :attr:`missing_files`) instead of raising
            ``FileNotFoundError``. Defaults to False.
        load_as_video (bool, optional): mmtracking's key, accepted for configs written for it:
            ``True`` is ``ann_format='cocovid'``, ``False`` (its ImageNet DET datasets) is
            ``ann_format='coco'``.
        ref_img_sampler (dict, optional): mmtracking's reference-frame sampling (SELSA, FGFA).
            Refused with a pointer: mmdet 3.x samples reference frames in the pipeline
            (``mmdet.UniformRefFrameSample`` with ``mode='video'``); StreamDEQ uses none.
        **kwargs: ``data_root``, ``data_prefix`` (``dict(img_path='Data/VID')``), ``metainfo``
            (``dict(classes=...)``: any subset of the file's category names, in any order; the
            label is the index in this tuple), ``filter_cfg`` (``filter_empty_gt``, ``min_size``;
            training only), ``pipeline``, ``test_mode``, ``indices``, ``serialize_data``,
            ``lazy_init``, ``backend_args``: as in mmengine's ``BaseDataset`` / mmdet's
            ``BaseVideoDataset``.

    Attributes:
        cat_ids (list[int]): Category id of the file for each label.
        missing_files (list[str]): Image paths found missing (with ``skip_missing_files``).
    """

    METAINFO = dict(classes=IMAGENET_VID_CLASSES)

    def __init__(
        self,
        *args,
        mode: str = 'frame',
        ann_format: str = 'cocovid',
        train_frame_sampling: str = 'flag',
        num_frames_per_video: int = 15,
        check_files: bool = False,
        skip_missing_files: bool = False,
        load_as_video: bool | None = None,
        ref_img_sampler: dict | None = None,
        **kwargs,
    ) -> None:
        if ref_img_sampler is not None:
            raise ValueError(
                f'ref_img_sampler={ref_img_sampler} is an mmtracking 0.x dataset key: mmdet 3.x '
                "samples reference frames in the pipeline instead (mode='video' and "
                "dict(type='mmdet.UniformRefFrameSample', num_ref_imgs=..., frame_range=...)); "
                'StreamDEQ models need no reference frames, so remove the key'
            )
        if load_as_video is not None:  # mmtracking's name for the two annotation formats
            ann_format = 'cocovid' if load_as_video else 'coco'
        for name, value, allowed in (
            ('mode', mode, _MODES),
            ('ann_format', ann_format, _ANN_FORMATS),
            ('train_frame_sampling', train_frame_sampling, _SAMPLINGS),
        ):
            if value not in allowed:
                raise ValueError(f'{name} must be one of {allowed}, got {value!r}')
        if train_frame_sampling == 'uniform' and num_frames_per_video < 1:
            raise ValueError(f'num_frames_per_video must be >= 1, got {num_frames_per_video}')
        self.mode = mode
        self.ann_format = ann_format
        self.train_frame_sampling = train_frame_sampling
        self.num_frames_per_video = num_frames_per_video
        self.check_files = check_files
        self.skip_missing_files = skip_missing_files
        self.missing_files: List[str] = []
        super().__init__(*args, **kwargs)

    # ------------------------------------------------------------------------------------------
    # loading
    # ------------------------------------------------------------------------------------------
    def load_data_list(self) -> List[dict]:
        """Read the annotation file.

        Returns:
            list[dict]: Videos (``{'video_id', 'video_length', 'images'}``) in file order, frames
            sorted by ``frame_id``; :meth:`filter_data` flattens them in ``'frame'`` mode.
        """
        coco = self._load_coco()
        self.cat_ids, self.cat2label = self._match_classes(coco.dataset['categories'])
        videos = self._group_frames(coco)

        data_list = []
        for video_id, frames in videos:
            ori_length = len(frames)
            if not self.test_mode:
                frames = self._sample_train_frames(video_id, frames)
            infos = []
            for img in frames:
                info = self.parse_data_info(
                    dict(raw_img_info=img, raw_ann_info=coco.imgToAnns.get(img['id'], []))
                )
                info['ori_video_length'] = ori_length
                infos.append(info)
            data_list.append(dict(video_id=video_id, video_length=len(infos), images=infos))

        if self.check_files:
            data_list = self._check_image_files(data_list)
        return data_list

    def _load_coco(self) -> COCO:
        """Load and validate the annotation file, then index it with pycocotools."""
        if not self.ann_file:
            raise ValueError(
                'ann_file is empty: set ann_file (e.g. '
                "'annotations/imagenet_vid_val.json') and data_root"
            )
        if not fileio.exists(self.ann_file, backend_args=self.backend_args):
            raise FileNotFoundError(
                f'annotation file {self.ann_file} does not exist; check data_root and ann_file '
                '(docs/imagenet_vid.md says how to build it)'
            )
        with fileio.get_local_path(self.ann_file, backend_args=self.backend_args) as path:
            dataset = mmengine.load(path, file_format='json')
        if not isinstance(dataset, dict):
            raise ValueError(
                f'{self.ann_file} is not a COCO/CocoVID annotation file: its top level '
                f'is a {type(dataset).__name__}, not an object'
            )
        for key in ('images', 'categories'):
            if key not in dataset:
                raise ValueError(
                    f"{self.ann_file} has no '{key}' key: not a COCO/CocoVID " 'annotation file'
                )
        dataset.setdefault('annotations', [])
        for img in dataset['images']:
            absent = [k for k in ('id', 'file_name', 'width', 'height') if k not in img]
            if absent:
                raise ValueError(
                    f"{self.ann_file}: image {img.get('id', '?')} ({img.get('file_name', '?')}) "
                    f'has no {absent} key(s); every image of a COCO/CocoVID file needs id, '
                    'file_name, width and height'
                )
        if not dataset['annotations']:
            print_log(
                f'{self.ann_file} holds no annotations: the metrics will have no ground truth '
                '(every mAP is -1)',
                logger='current',
                level=logging.WARNING,
            )
        if self.ann_format == 'cocovid':
            self._check_cocovid(dataset)
        cat_ids = {cat['id'] for cat in dataset['categories']}
        img_ids = set()
        for img in dataset['images']:
            if img['id'] in img_ids:
                raise ValueError(f'{self.ann_file}: image id {img["id"]} appears twice')
            img_ids.add(img['id'])
        for ann in dataset['annotations']:
            if ann['category_id'] not in cat_ids:
                raise ValueError(
                    f'{self.ann_file}: annotation {ann.get("id")} has category_id '
                    f'{ann["category_id"]}, which is not in its categories '
                    f'{sorted(cat_ids)}'
                )
            if ann['image_id'] not in img_ids:
                raise ValueError(
                    f'{self.ann_file}: annotation {ann.get("id")} refers to image '
                    f'{ann["image_id"]}, which is not in its images'
                )
        coco = COCO()
        coco.dataset = dataset
        coco.createIndex()
        return coco

    def _check_cocovid(self, dataset: dict) -> None:
        """Raise if ``dataset`` is not CocoVID (``videos``; ``video_id``/``frame_id`` per image)."""
        hint = (
            '; for an image-level COCO file such as imagenet_det_30plus1cls.json pass '
            "ann_format='coco'"
        )
        if 'videos' not in dataset:
            raise ValueError(
                f"{self.ann_file} has no 'videos' key, so it is not a CocoVID file "
                f'(OpenMMLab conversion of ImageNet VID){hint}'
            )
        video_ids = {video['id'] for video in dataset['videos']}
        seen = set()
        for img in dataset['images']:
            for key in ('video_id', 'frame_id'):
                if key not in img:
                    raise ValueError(
                        f"{self.ann_file}: image {img.get('id')} "
                        f"({img.get('file_name')}) has no '{key}' key, so the file is "
                        f'not CocoVID{hint}'
                    )
            if img['video_id'] not in video_ids:
                raise ValueError(
                    f"{self.ann_file}: image {img['id']} has video_id "
                    f"{img['video_id']}, which is not in 'videos'"
                )
            key = (img['video_id'], img['frame_id'])
            if key in seen:
                raise ValueError(f'{self.ann_file}: video {key[0]} has frame_id {key[1]} twice')
            seen.add(key)

    def _match_classes(self, categories: List[dict]) -> Tuple[List[int], Dict[int, int]]:
        """Map ``metainfo['classes']`` to the file's category ids by name.

        Args:
            categories (list[dict]): The file's ``categories`` (``id``, ``name``).

        Returns:
            tuple[list[int], dict[int, int]]: Category id of each label, and id -> label.
        """
        classes = self.metainfo.get('classes')
        if not classes:
            raise ValueError('metainfo has no classes; pass metainfo=dict(classes=(...))')
        names = [cat['name'] for cat in categories]
        duplicated = sorted(name for name, n in Counter(names).items() if n > 1)
        if duplicated:
            raise ValueError(f'{self.ann_file} has several categories named {duplicated}')
        name2id = {cat['name']: cat['id'] for cat in categories}
        missing = [name for name in classes if name not in name2id]
        if missing:
            raise ValueError(
                f'class list does not match: metainfo classes {missing} are not categories of '
                f'{self.ann_file}, whose categories are {names}; set '
                'metainfo=dict(classes=(...)) to these names (or a subset of them)'
            )
        extra = [name for name in names if name not in classes]
        if extra:
            print_log(
                f'{self.ann_file}: annotations of categories {extra} are ignored (not in '
                'metainfo classes)',
                logger='current',
            )
        cat_ids = [name2id[name] for name in classes]
        return cat_ids, {cat_id: label for label, cat_id in enumerate(cat_ids)}

    def _group_frames(self, coco: COCO) -> List[Tuple[Any, List[dict]]]:
        """Group images into videos (file order) with frames sorted by ``frame_id``."""
        images = coco.dataset['images']
        if self.ann_format == 'coco':
            return [(img['id'], [dict(img, video_id=img['id'], frame_id=0)]) for img in images]
        groups: Dict[Any, List[dict]] = {video['id']: [] for video in coco.dataset['videos']}
        for img in images:
            groups[img['video_id']].append(img)
        return [
            (video_id, sorted(frames, key=lambda img: img['frame_id']))
            for video_id, frames in groups.items()
            if frames
        ]

    def _sample_train_frames(self, video_id: Any, frames: List[dict]) -> List[dict]:
        """Keep the training frames of one video (see ``train_frame_sampling``)."""
        if self.train_frame_sampling == 'all':
            return frames
        if self.train_frame_sampling == 'uniform':
            return [
                frames[i] for i in uniform_frame_positions(len(frames), self.num_frames_per_video)
            ]
        for img in frames:
            if _TRAIN_FLAG not in img:
                raise ValueError(
                    f"{self.ann_file}: image {img['id']} of video {video_id} has no "
                    f"'{_TRAIN_FLAG}' key; use train_frame_sampling='uniform' (with "
                    "num_frames_per_video) or 'all' for a file without training-frame flags"
                )
        return [img for img in frames if img[_TRAIN_FLAG]]

    def parse_data_info(self, raw_data_info: dict) -> dict:
        """Turn one image and its annotations into a frame's data info.

        Boxes are kept under the same rules as mmdet's ``BaseVideoDataset.parse_data_info``
        (``ignore`` annotations, boxes outside the image, ``w`` or ``h`` < 1 or ``area`` <= 0 are
        dropped; ``iscrowd`` sets ``ignore_flag``); unlike it, an ``instance_id`` of 0 is kept,
        and a missing one falls back to the annotation id, which is unique in the file.

        Args:
            raw_data_info (dict): ``raw_img_info`` (the image record, with ``video_id`` and
                ``frame_id``) and ``raw_ann_info`` (its annotations).

        Returns:
            dict: ``img_id``, ``img_path``, ``height``, ``width``, ``video_id``, ``frame_id``,
            ``instances`` (``bbox`` xyxy, ``bbox_label``, ``instance_id``, ``ignore_flag``).
        """
        img = raw_data_info['raw_img_info']
        img_prefix = self.data_prefix.get('img_path', '')
        img_path = (
            fileio.join_path(img_prefix, img['file_name']) if img_prefix else img['file_name']
        )
        instances = []
        for ann in raw_data_info['raw_ann_info']:
            if ann.get('ignore', False) or ann['category_id'] not in self.cat2label:
                continue
            x1, y1, w, h = ann['bbox']
            inter_w = max(0, min(x1 + w, img['width']) - max(x1, 0))
            inter_h = max(0, min(y1 + h, img['height']) - max(y1, 0))
            if inter_w * inter_h == 0 or ann.get('area', w * h) <= 0 or w < 1 or h < 1:
                continue
            instance_id = ann.get('instance_id')
            instances.append(
                dict(
                    bbox=[float(x1), float(y1), float(x1 + w), float(y1 + h)],
                    bbox_label=self.cat2label[ann['category_id']],
                    instance_id=ann['id'] if instance_id is None else instance_id,
                    ignore_flag=1 if ann.get('iscrowd', False) else 0,
                )
            )
        return dict(
            img_id=img['id'],
            img_path=img_path,
            height=img['height'],
            width=img['width'],
            video_id=img['video_id'],
            frame_id=img['frame_id'],
            instances=instances,
        )

    def _check_image_files(self, data_list: List[dict]) -> List[dict]:
        """Raise on (or, with ``skip_missing_files``, drop) frames whose image file is missing."""
        missing = [
            info['img_path']
            for video in data_list
            for info in video['images']
            if not fileio.exists(info['img_path'], backend_args=self.backend_args)
        ]
        if not missing:
            return data_list
        total = sum(len(video['images']) for video in data_list)
        listed = '\n  '.join(missing[:_MAX_LISTED])
        more = (
            f'\n  ... and {len(missing) - _MAX_LISTED} more' if len(missing) > _MAX_LISTED else ''
        )
        msg = (
            f'{len(missing)} of {total} image files of {self.ann_file} are missing under '
            f"'{self.data_prefix.get('img_path', '')}':\n  {listed}{more}"
        )
        if not self.skip_missing_files:
            raise FileNotFoundError(
                f'{msg}\nCheck data_root/data_prefix (docs/imagenet_vid.md shows the layout), or '
                'pass skip_missing_files=True to drop these frames'
            )
        print_log(
            f'{msg}\nThese frames are dropped (skip_missing_files=True).',
            logger='current',
            level=logging.WARNING,
        )
        self.missing_files = missing
        gone = set(missing)
        for video in data_list:
            video['images'] = [info for info in video['images'] if info['img_path'] not in gone]
        return [video for video in data_list if video['images']]

    # ------------------------------------------------------------------------------------------
    # filtering and layout
    # ------------------------------------------------------------------------------------------
    def filter_data(self) -> List[dict]:
        """Filter frames (training only), set the video lengths and lay out the data list.

        ``filter_cfg`` keys, as in mmdet's ``CocoDataset``: ``filter_empty_gt`` (drop frames
        without a kept instance; default False) and ``min_size`` (drop frames whose shorter side
        is smaller; default 0). Nothing is filtered in test mode or without ``filter_cfg``.

        Returns:
            list[dict]: Frames (``mode='frame'``) or videos (``mode='video'``).
        """
        videos = self.data_list
        if not self.test_mode and self.filter_cfg is not None:
            empty_gt = self.filter_cfg.get('filter_empty_gt', False)
            min_size = self.filter_cfg.get('min_size', 0)
            before = sum(len(video['images']) for video in videos)
            for video in videos:
                video['images'] = [
                    info
                    for info in video['images']
                    if (not empty_gt or info['instances'])
                    and min(info['width'], info['height']) >= min_size
                ]
            videos = [video for video in videos if video['images']]
            after = sum(len(video['images']) for video in videos)
            print_log(
                f'The number of frames before and after filtering: {before} / {after}',
                logger='current',
            )
        if not videos:
            raise ValueError(
                f'no frame of {self.ann_file} is left after filtering (filter_cfg='
                f'{self.filter_cfg}): relax filter_cfg (filter_empty_gt, min_size) or check that '
                'the annotations match the metainfo classes'
            )
        for video in videos:
            video['video_length'] = len(video['images'])
            for info in video['images']:
                info['video_length'] = video['video_length']
        if self.mode == 'video':
            return videos
        return [info for video in videos for info in video['images']]

    def prepare_data(self, idx: Union[int, Tuple[int, int]]) -> Any:
        """Run the pipeline on a frame (``'frame'`` mode) or a video (``'video'`` mode).

        Args:
            idx (int | tuple[int, int]): Frame index, or (in ``'video'`` mode) a video index or a
                ``(video index, frame index)`` pair as mmdet's ``TrackImgSampler`` yields.

        Returns:
            Any: The pipeline output.
        """
        if self.mode == 'video':
            return super().prepare_data(idx)
        if isinstance(idx, tuple):
            raise ValueError(
                f'got index {idx}: (video, frame) indices (TrackImgSampler) need ' "mode='video'"
            )
        return self.run_test_pipeline(self.pipeline, self.get_data_info(idx))

    def get_cat_ids(self, index: Union[int, Tuple[int, int]]) -> List[int]:
        """Labels of the instances of a frame (or, in ``'video'`` mode, a video or frame).

        Args:
            index (int | tuple[int, int]): As for :meth:`prepare_data`.

        Returns:
            list[int]: ``bbox_label`` of every instance.
        """
        if self.mode == 'video':
            return super().get_cat_ids(index)
        return [instance['bbox_label'] for instance in self.get_data_info(index)['instances']]

    def get_len_per_video(self, idx: int) -> int:
        """Number of frames of the ``idx``-th video (``'video'`` mode only).

        Args:
            idx (int): Video index.

        Returns:
            int: Its number of frames in the dataset.
        """
        if self.mode != 'video':
            raise ValueError("get_len_per_video (used by TrackImgSampler) needs mode='video'")
        return super().get_len_per_video(idx)

    @property
    def num_all_imgs(self) -> int:
        """int: Number of frames in the dataset (either mode)."""
        if self.mode == 'frame':
            return len(self)
        return super().num_all_imgs
