"""Cityscapes video clips ending at the finely annotated frame, for streaming evaluation.

Every finely annotated Cityscapes image is the 20th frame of a 30-frame snippet whose frames ship in
``leftImg8bit_sequence`` (Cordts et al., "The Cityscapes Dataset for Semantic Urban Scene
Understanding", CVPR 2016). StreamDEQ (thesis section 4.1) streams the snippet up to the annotated
frame and evaluates that frame only; this module turns each annotated frame ``f`` into the clip of
frames ``[f - L + 1, ..., f]`` and lists the clips' frames, in streaming order, as one flat list.

What is reused and what is not:

* classes, palette, ``ignore_index=255``, ``reduce_zero_label=False``, ``label_map`` handling and
  path joining come from mmseg's :class:`~mmseg.datasets.CityscapesDataset` (subclassed);
* the labelIds -> trainIds table is read from ``cityscapesscripts.helpers.labels`` and applied by
  mmseg's ``LoadAnnotations`` through the standard ``label_map`` of each data info;
* written here, because neither library has it: grouping frames of ``leftImg8bit_sequence`` into
  clips that end at an annotated frame (mmseg lists single images only; cityscapesscripts has no
  sequence reader), the per-frame streaming fields, and the shot-change "init frame" of thesis
  Figures 4.4/4.5.
"""

import os.path as osp
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

import mmengine
import mmengine.fileio as fileio
import numpy as np
from cityscapesscripts.helpers.labels import labels as CITYSCAPES_LABELS
from mmcv.transforms import LoadAnnotations as MMCVLoadAnnotations
from mmengine.dataset import Compose
from mmseg.datasets import CityscapesDataset

from mmvideoeq.registry import DATASETS

from .safe_loading import SkipUnreadableFramesMixin

__all__ = ['CityscapesClipDataset', 'cityscapes_labelid_to_trainid', 'labelids_to_trainids']

# '{city}_{seq}_{frame}', e.g. 'frankfurt_000000_000294'. The city is matched greedily so that a
# city name containing '_' still parses.
_FRAME_NAME = re.compile(r'^(?P<city>.+)_(?P<seq>\d+)_(?P<frame>\d+)$')

_LABEL_SUFFIXES = {
    'trainIds': '_gtFine_labelTrainIds.png',
    'labelIds': '_gtFine_labelIds.png',
}

_INIT_MODES = (None, 'other_clip', 'image_list')


def cityscapes_labelid_to_trainid(ignore_index: int = 255) -> Dict[int, int]:
    """The Cityscapes labelIds -> trainIds table of ``cityscapesscripts``.

    Labels with a negative id (``license plate``) are never written to label images by
    cityscapesscripts and are left out; labels ignored in evaluation (trainId 255 or -1) map to
    ``ignore_index``.

    Args:
        ignore_index (int): The value given to labels that are not one of the 19 train classes.

    Returns:
        dict[int, int]: ``{label id: train id}`` for the 34 label ids 0..33.
    """
    table = {}
    for label in CITYSCAPES_LABELS:
        if label.id < 0:
            continue
        table[label.id] = ignore_index if label.trainId in (-1, 255) else label.trainId
    return table


def labelids_to_trainids(label_ids: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """Convert a Cityscapes ``*_gtFine_labelIds.png`` array to train ids.

    Args:
        label_ids (np.ndarray): Integer label-id map, any shape (typically ``(H, W)``), values in
            ``0..255``; ids that are not Cityscapes label ids map to ``ignore_index``.
        ignore_index (int): Value for pixels outside the 19 train classes.

    Returns:
        np.ndarray: ``uint8`` train-id map of the same shape.

    Raises:
        ValueError: If ``label_ids`` is not an integer array with values in ``0..255``.
    """
    label_ids = np.asarray(label_ids)
    if not np.issubdtype(label_ids.dtype, np.integer):
        raise ValueError(
            f'labelids_to_trainids expects an integer label map, got dtype '
            f'{label_ids.dtype}; read the PNG without conversion (flag="unchanged").'
        )
    if label_ids.size and (label_ids.min() < 0 or label_ids.max() > 255):
        raise ValueError(
            f'labelids_to_trainids expects values in 0..255, got '
            f'{label_ids.min()}..{label_ids.max()}; is this a Cityscapes labelIds '
            'map?'
        )
    lut = np.full(256, ignore_index, dtype=np.uint8)
    for label_id, train_id in cityscapes_labelid_to_trainid(ignore_index).items():
        lut[label_id] = train_id
    return lut[label_ids]


def _normalize_clip_lengths(clip_length: Union[int, Sequence[int]]) -> Tuple[int, ...]:
    """Validate ``clip_length`` and return it as a tuple of positive ints."""
    lengths = (clip_length,) if isinstance(clip_length, (int, np.integer)) else clip_length
    if not isinstance(lengths, (list, tuple)) or len(lengths) == 0:
        raise ValueError(
            f'clip_length must be a positive int or a non-empty list of them, got '
            f'{clip_length!r}.'
        )
    for length in lengths:
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
            raise ValueError(
                f'clip_length must contain positive ints (e.g. 1, 2, 5, 10, 20), got '
                f'{clip_length!r}.'
            )
    if len(set(lengths)) != len(lengths):
        raise ValueError(f'clip_length lists a length twice: {clip_length!r}.')
    return tuple(int(length) for length in lengths)


@DATASETS.register_module()
class CityscapesClipDataset(SkipUnreadableFramesMixin, CityscapesDataset):
    """Cityscapes clips ``[f - L + 1, ..., f]`` ending at each finely annotated frame ``f``.

    The dataset is a flat, ordered list of *frames*: clip after clip, each clip's frames in
    streaming order, the annotated frame last. A streaming test loop walks it in order (batch size
    1, no shuffling) and a streaming metric (``StreamingIoUMetric``) evaluates the annotated frames
    only. Every data info carries, on top of mmseg's keys (``img_path``, ``seg_map_path``,
    ``label_map``, ``reduce_zero_label``, ``seg_fields``):

    * ``video_id`` (str): the clip, ``'{city}_{seq}_{frame}'`` of its annotated frame (with
      ``'_len{L}'`` appended when several clip lengths are listed);
    * ``frame_id`` (int): ``0 .. L - 1`` in the clip; ``-1`` for a shot-change init frame;
    * ``video_length`` (int): ``L``, the number of clip frames (the init frame not counted);
    * ``is_annotated`` (bool): True for the annotated (last) frame only; every other frame has
      ``seg_map_path=None`` and is not evaluated;
    * ``is_init_frame`` (bool): True for the frame prepended by ``init_from``;
    * ``init_source`` (str, init frames only): the clip id or file the init frame was taken from.

    Layout (the official one; the bundled synthetic benchmark uses the same names)::

        data_root/
          gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelTrainIds.png  (or _labelIds.png)
          leftImg8bit_sequence/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png

    Frames without a label skip the annotation loader of the pipeline (any
    ``mmcv.transforms.LoadAnnotations`` subclass, e.g. ``mmseg.LoadAnnotations``), so one test
    pipeline serves every frame. ``PackSegInputs`` needs the streaming keys in its ``meta_keys``.

    Training does not need clips: train with mmseg's ``CityscapesDataset`` (``type=
    'mmseg.CityscapesDataset'``).

    Args:
        clip_length (int | Sequence[int]): Frames per clip, ``L`` (1, 2, 5, 10, 20 in the thesis).
            A list builds one clip per length for every annotated frame, in the order given,
            so one pass gives the mIoU at several frame offsets.
        label_type (str): ``'trainIds'`` reads ``*_gtFine_labelTrainIds.png``; ``'labelIds'`` reads
            ``*_gtFine_labelIds.png`` and maps them to train ids with cityscapesscripts' table.
        seg_map_suffix (str, optional): Overrides the suffix chosen by ``label_type``.
        init_from (str, optional): Shot-change experiment (thesis Figs. 4.4/4.5): prepend to each
            clip one frame from elsewhere, with ``frame_id=-1`` and ``is_init_frame=True``, from
            whose fixed point the loop starts the clip. ``'other_clip'``: a random frame of a random
            clip of another sequence (another ``{city}_{seq}``, or another clip when there is a
            single sequence); ``'image_list'``: a random image of ``init_images`` (e.g. ImageNet-VID
            frames). ``None`` (default): no init frame.
        init_images (str | Sequence[str], optional): For ``init_from='image_list'``: image paths, or
            a text file listing one path per line; relative paths are joined to ``data_root``.
        seed (int): Seed of the init-frame draw; the same seed gives the same init frames. The
            init frame of an annotated frame is the same for all its clip lengths.
        img_suffix (str): Suffix of frame images.
        data_prefix (dict, optional): ``img_path`` (frames) and ``seg_map_path`` (gtFine) folders,
            relative to ``data_root``. Defaults to ``leftImg8bit_sequence/val`` and ``gtFine/val``.
        **kwargs: Other arguments of :class:`~mmseg.datasets.BaseSegDataset` (``data_root``,
            ``ann_file`` listing ``{city}/{city}_{seq}_{frame}`` names, ``pipeline``,
            ``test_mode``, ``metainfo``, ``backend_args``, ...).

    Raises:
        FileNotFoundError: A folder, an ``ann_file`` entry, a frame of a clip or an init image is
            missing (the message names it and its clip).
        ValueError: Invalid options, an annotation name that is not ``{city}_{seq}_{frame}``, a clip
            that would start before frame 0, or no annotated frame found.
    """

    def __init__(
        self,
        clip_length: Union[int, Sequence[int]] = 20,
        label_type: str = 'trainIds',
        seg_map_suffix: Optional[str] = None,
        init_from: Optional[str] = None,
        init_images: Optional[Union[str, Sequence[str]]] = None,
        seed: int = 0,
        img_suffix: str = '_leftImg8bit.png',
        data_prefix: Optional[dict] = None,
        **kwargs,
    ) -> None:
        self.clip_lengths = _normalize_clip_lengths(clip_length)
        if label_type not in _LABEL_SUFFIXES:
            raise ValueError(
                f'label_type must be one of {sorted(_LABEL_SUFFIXES)}, got {label_type!r}.'
            )
        if init_from not in _INIT_MODES:
            raise ValueError(f'init_from must be one of {_INIT_MODES}, got {init_from!r}.')
        if init_from == 'image_list' and not init_images:
            raise ValueError(
                "init_from='image_list' needs init_images: a list of image paths or a "
                'text file listing them.'
            )
        if init_from != 'image_list' and init_images is not None:
            raise ValueError(
                "init_images is only used with init_from='image_list'; got "
                f'init_from={init_from!r}.'
            )
        if kwargs.get('reduce_zero_label', False):
            raise ValueError(
                'reduce_zero_label must be False for Cityscapes: train id 0 is '
                '"road" and ignored pixels are already 255.'
            )
        self.label_type = label_type
        self.init_from = init_from
        self.init_images = init_images
        self.seed = seed
        if seg_map_suffix is None:
            seg_map_suffix = _LABEL_SUFFIXES[label_type]
        if data_prefix is None:
            data_prefix = dict(img_path='leftImg8bit_sequence/val', seg_map_path='gtFine/val')
        super().__init__(
            img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, data_prefix=data_prefix, **kwargs
        )
        # The same pipeline without the annotation loader, for frames that carry no label.
        self.unlabelled_pipeline = Compose(
            [t for t in self.pipeline.transforms if not isinstance(t, MMCVLoadAnnotations)]
        )

    # ----------------------------------------------------------------------------------------
    # data list
    # ----------------------------------------------------------------------------------------
    def _frame_label_map(self) -> Optional[dict]:
        """The ``label_map`` put in each data info (applied by mmseg's ``LoadAnnotations``)."""
        if self.label_type == 'trainIds':
            return self.label_map
        to_train = cityscapes_labelid_to_trainid(self.ignore_index)
        if self.label_map is None:
            return to_train
        # A class subset given in ``metainfo``: compose labelId -> trainId -> subset index.
        return {
            label_id: self.label_map.get(train_id, self.ignore_index)
            for label_id, train_id in to_train.items()
        }

    def _annotated_names(self, ann_dir: str) -> List[str]:
        """Names ``{sub}/{city}_{seq}_{frame}`` (no suffix) of the annotated frames, sorted."""
        if self.ann_file and not osp.isdir(self.ann_file):
            if not fileio.exists(self.ann_file, backend_args=self.backend_args):
                raise FileNotFoundError(
                    f'ann_file {self.ann_file} does not exist; give a text file listing '
                    f'{{city}}/{{city}}_{{seq}}_{{frame}} names, or ann_file="" to list '
                    f'{ann_dir}.'
                )
            lines = mmengine.list_from_file(self.ann_file, backend_args=self.backend_args)
            return [line.strip() for line in lines if line.strip()]
        if not ann_dir or not fileio.isdir(ann_dir, backend_args=self.backend_args):
            raise FileNotFoundError(
                f'Annotation folder {ann_dir!r} does not exist; set data_root and '
                "data_prefix=dict(seg_map_path='gtFine/{split}', ...) to the Cityscapes gtFine "
                'folder of the split.'
            )
        suffix_len = len(self.seg_map_suffix)
        names = [
            name[:-suffix_len]
            for name in fileio.list_dir_or_file(
                ann_dir,
                list_dir=False,
                suffix=self.seg_map_suffix,
                recursive=True,
                backend_args=self.backend_args,
            )
        ]
        return sorted(names)

    def load_data_list(self) -> List[dict]:
        """Build the clips and return their frames as one flat, ordered list.

        Returns:
            list[dict]: One data info per frame (see the class docstring for the keys).
        """
        img_dir = self.data_prefix.get('img_path', None) or ''
        ann_dir = self.data_prefix.get('seg_map_path', None) or ''
        names = self._annotated_names(ann_dir)
        if not names:
            raise ValueError(
                f'No annotated frame (*{self.seg_map_suffix}) found in {ann_dir!r}'
                + (f' / {self.ann_file!r}' if self.ann_file else '')
                + "; check data_root, data_prefix['seg_map_path'] and label_type (labelTrainIds "
                'files are made by cityscapesscripts/preparation/createTrainIdLabelImgs.py; '
                "or use label_type='labelIds')."
            )
        label_map = self._frame_label_map()

        # clips[i] = (annotated name, sequence key, {L: [frame image paths]})
        clips = []
        for name in names:
            sub, base = osp.split(name)
            match = _FRAME_NAME.match(base)
            if match is None:
                raise ValueError(
                    f'Annotation {name}{self.seg_map_suffix} is not named '
                    '{city}_{seq}_{frame} (e.g. frankfurt_000000_000294); rename it or list '
                    'only Cityscapes names in ann_file.'
                )
            city, seq, frame_str = match.group('city', 'seq', 'frame')
            frame, width = int(frame_str), len(frame_str)
            frames_by_length = {}
            for length in self.clip_lengths:
                video_id = self._video_id(base, length)
                if frame - length + 1 < 0:
                    raise ValueError(
                        f'Clip {video_id} with clip_length={length} would start at frame '
                        f'{frame - length + 1} < 0; use a clip_length <= {frame + 1}.'
                    )
                paths = []
                for number in range(frame - length + 1, frame + 1):
                    file_name = f'{city}_{seq}_{number:0{width}d}{self.img_suffix}'
                    path = osp.join(img_dir, sub, file_name)
                    if not fileio.exists(path, backend_args=self.backend_args):
                        raise FileNotFoundError(
                            f'Frame {path} of clip {video_id} (clip_length={length}) does not '
                            'exist; the clips need the leftImg8bit_sequence package '
                            "(data_prefix['img_path'] must point at leftImg8bit_sequence/{split}), "
                            'or use a smaller clip_length.'
                        )
                    paths.append(path)
                frames_by_length[length] = paths
            clips.append((name, f'{sub}/{city}_{seq}', frames_by_length))

        init_frames = self._draw_init_frames(clips)

        data_list = []
        for index, (name, _, frames_by_length) in enumerate(clips):
            sub, base = osp.split(name)
            seg_map_path = osp.join(ann_dir, name + self.seg_map_suffix)
            for length in self.clip_lengths:
                video_id = self._video_id(base, length)
                common = dict(
                    video_id=video_id,
                    video_length=length,
                    label_map=label_map,
                    reduce_zero_label=self.reduce_zero_label,
                )
                if init_frames is not None:
                    init_path, init_source = init_frames[index]
                    data_list.append(
                        dict(
                            img_path=init_path,
                            seg_map_path=None,
                            frame_id=-1,
                            is_annotated=False,
                            is_init_frame=True,
                            init_source=init_source,
                            seg_fields=[],
                            **common,
                        )
                    )
                for frame_id, path in enumerate(frames_by_length[length]):
                    annotated = frame_id == length - 1
                    data_list.append(
                        dict(
                            img_path=path,
                            seg_map_path=seg_map_path if annotated else None,
                            frame_id=frame_id,
                            is_annotated=annotated,
                            is_init_frame=False,
                            seg_fields=[],
                            **common,
                        )
                    )
        return data_list

    def _video_id(self, base: str, length: int) -> str:
        """Clip id: the annotated frame's name, plus the length when several are built."""
        return base if len(self.clip_lengths) == 1 else f'{base}_len{length}'

    def _draw_init_frames(self, clips: list) -> Optional[List[Tuple[str, str]]]:
        """Draw the shot-change init frame of every annotated frame, deterministically by seed.

        Args:
            clips (list): ``(name, sequence key, {L: frame paths})`` per annotated frame.

        Returns:
            list[tuple[str, str]] | None: ``(image path, source)`` per annotated frame, or None
            when ``init_from`` is None.
        """
        if self.init_from is None:
            return None
        rng = np.random.default_rng(self.seed)
        draws = []
        if self.init_from == 'other_clip':
            if len(clips) < 2:
                raise ValueError(
                    "init_from='other_clip' needs at least two annotated frames to "
                    f'draw from, found {len(clips)}.'
                )
            longest = max(self.clip_lengths)
            for index, (_, seq_key, _) in enumerate(clips):
                others = [j for j, clip in enumerate(clips) if clip[1] != seq_key]
                if not others:  # a single sequence: any other clip of it
                    others = [j for j in range(len(clips)) if j != index]
                source = others[int(rng.integers(len(others)))]
                source_frames = clips[source][2][longest]
                path = source_frames[int(rng.integers(len(source_frames)))]
                source_id = self._video_id(osp.basename(clips[source][0]), longest)
                draws.append((path, source_id))
            return draws
        images = self._init_image_list()
        for _ in clips:
            path = images[int(rng.integers(len(images)))]
            draws.append((path, path))
        return draws

    def _init_image_list(self) -> List[str]:
        """Resolve and check ``init_images`` for ``init_from='image_list'``."""
        entries = self.init_images
        if isinstance(entries, str):
            list_file = entries
            if self.data_root is not None and not osp.isabs(list_file):
                list_file = osp.join(self.data_root, list_file)
            if not fileio.exists(list_file, backend_args=self.backend_args):
                raise FileNotFoundError(
                    f'init_images list {list_file} does not exist; give a text file with one image '
                    'path per line, or a list of paths.'
                )
            entries = [
                line.strip()
                for line in mmengine.list_from_file(list_file, backend_args=self.backend_args)
                if line.strip()
            ]
            if not entries:
                raise ValueError(f'init_images list {list_file} is empty; add image paths.')
        paths = []
        for entry in entries:
            path = entry
            if self.data_root is not None and not osp.isabs(path):
                path = osp.join(self.data_root, path)
            if not fileio.exists(path, backend_args=self.backend_args):
                raise FileNotFoundError(
                    f'Init image {path} (from init_images) does not exist; fix '
                    'the path or remove it from init_images.'
                )
            paths.append(path)
        return paths

    # ----------------------------------------------------------------------------------------
    # loading
    # ----------------------------------------------------------------------------------------
    def prepare_data(self, idx: int):
        """Run the pipeline on frame ``idx``; unlabelled frames skip the annotation loader.

        Args:
            idx (int): Index of the frame in the flat list.

        Returns:
            Any: The output of the pipeline.
        """
        data_info = self.get_data_info(idx)
        pipeline = self.pipeline if data_info.get('seg_map_path') else self.unlabelled_pipeline
        return self.run_test_pipeline(pipeline, data_info)
