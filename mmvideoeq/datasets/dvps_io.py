"""File names and PNG decoding of Cityscapes-DVPS, SemKITTI-DVPS and KITTI depth (numpy + Pillow).

Shared by the datasets, the loading transforms and ``tools/analysis_tools/eval_dvps.py``.

Layouts (ViP-DeepLab's ``cityscapes-dvps/README.md`` and ``semkitti-dvps/README.md``; deeplab2
``data/build_dvps_data.py``)::

    Cityscapes-DVPS  video_sequence/{split}/{seq}_{frame}_{city}_{a}_{b}_leftImg8bit.png
                     ..._gtFine_instanceTrainIds.png   16-bit, trainId * 1000 + instance, void 32
                     ..._depth.png                     16-bit, metres * 256, 0 = invalid
    SemKITTI-DVPS    video_sequence/{split}/{seq}_{frame}_leftImg8bit.png
                     ..._gtFine_class.png (8-bit, void 255), ..._gtFine_instance.png (16-bit),
                     ..._depth_{focal}.png (16-bit, metres * 256)

``seq`` and ``frame`` are 6-digit numbers; the next frame of ``frame`` is ``frame + 1`` (deeplab2
``_get_next_frame_path``). 16-bit PNGs are decoded to signed int32 whatever Pillow's version
(Pillow >= 10.3 gives uint16, older ones int32), so differences never wrap around.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    'CITYSCAPES_DVPS_NAME',
    'SEMKITTI_DVPS_NAME',
    'parse_frame_name',
    'read_png',
    'read_depth_png',
    'read_cityscapes_dvps_panoptic',
    'read_semkitti_dvps_panoptic',
    'read_two_channel_panoptic',
    'list_frames',
]

#: ``{seq}_{frame}_{city}_{a}_{b}_{suffix}.png`` (the city has no ``_``).
CITYSCAPES_DVPS_NAME = re.compile(
    r'^(?P<seq>\d+)_(?P<frame>\d+)_(?P<city>[^_]+)_(?P<a>\d+)_(?P<b>\d+)_(?P<suffix>.+)\.png$'
)
#: ``{seq}_{frame}_{suffix}.png``.
SEMKITTI_DVPS_NAME = re.compile(r'^(?P<seq>\d+)_(?P<frame>\d+)_(?P<suffix>.+)\.png$')
_NAMES = {'cityscapes_dvps': CITYSCAPES_DVPS_NAME, 'semkitti_dvps': SEMKITTI_DVPS_NAME}
_SIXTEEN_BIT = ('I;16', 'I;16B', 'I;16L', 'I')
_EIGHT_BIT = ('1', 'L', 'P', 'LA', 'RGB', 'RGBA')


def parse_frame_name(name: str, fmt: str) -> re.Match | None:
    """Match a file name of a DVPS layout.

    Args:
        name (str): File name (no folder).
        fmt (str): ``'cityscapes_dvps'`` or ``'semkitti_dvps'``.

    Returns:
        re.Match | None: Groups ``seq``, ``frame``, ``suffix`` (and ``city``, ``a``, ``b``).
    """
    if fmt not in _NAMES:
        raise ValueError(f"fmt must be 'cityscapes_dvps' or 'semkitti_dvps', got {fmt!r}")
    return _NAMES[fmt].match(name)


def read_png(path, *, bit_depth: int | None = None, channels: int | None = None) -> np.ndarray:
    """Read a PNG without conversion, checking its bit depth and channel count.

    Args:
        path (str | Path): The file.
        bit_depth (int, optional): Required bits per sample: 8 or 16.
        channels (int, optional): Required channels (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA).

    Returns:
        np.ndarray: ``(H, W)`` or ``(H, W, C)``; int32 for 16-bit files, uint8 for 8-bit ones.

    Raises:
        FileNotFoundError: No such file.
        ValueError: A corrupt or truncated file, or another bit depth or channel count than
            required.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'{path}: no such file')
    try:
        with Image.open(path) as image:
            mode = image.mode  # a palette ('P') image is read as its 8-bit indices
            depth = 16 if mode in _SIXTEEN_BIT else 8 if mode in _EIGHT_BIT else 0
            if depth == 0:
                raise ValueError(f'{path}: unsupported PNG mode {mode!r}')
            array = np.asarray(image)
    except (OSError, SyntaxError, EOFError) as err:  # Pillow's errors on broken files
        raise ValueError(
            f'{path}: cannot decode the PNG ({type(err).__name__}: {err}); the file is corrupt '
            'or truncated'
        ) from None
    if mode == '1':
        array = array.astype(np.uint8)
    n_channels = 1 if array.ndim == 2 else array.shape[2]
    if bit_depth is not None and depth != bit_depth:
        raise ValueError(
            f'{path}: expected a {bit_depth}-bit PNG, got {depth}-bit (mode {mode!r}); depth '
            'maps are 16-bit PNGs of metres * 256, class maps 8-bit, instance maps 16-bit'
        )
    if channels is not None and n_channels != channels:
        raise ValueError(f'{path}: expected {channels} channel(s), got {n_channels}')
    return array.astype(np.int32) if depth == 16 else array


def read_depth_png(path, scale: float = 256.0) -> np.ndarray:
    """A 16-bit depth PNG in metres.

    Args:
        path (str | Path): The file (``metres * scale``, 0 = invalid).
        scale (float): The PNG's scale.

    Returns:
        np.ndarray: ``(H, W)`` float32 metres (values ``k / 256`` are exact in float32), 0 where
        invalid.
    """
    return (read_png(path, bit_depth=16, channels=1) / scale).astype(np.float32)


def read_cityscapes_dvps_panoptic(path) -> np.ndarray:
    """``*_gtFine_instanceTrainIds.png``: ``(H, W)`` int32 ``trainId * 1000 + instance``."""
    return read_png(path, bit_depth=16, channels=1)


def read_semkitti_dvps_panoptic(class_path, instance_path, label_divisor: int) -> np.ndarray:
    """``*_gtFine_class.png`` and ``*_gtFine_instance.png`` as ``class * divisor + instance``.

    Args:
        class_path (str | Path): 8-bit class map (void 255).
        instance_path (str | Path): 16-bit instance map.
        label_divisor (int): Must exceed every instance id.

    Returns:
        np.ndarray: ``(H, W)`` int32 panoptic ids.
    """
    cls = read_png(class_path, bit_depth=8, channels=1).astype(np.int64)
    inst = read_png(instance_path, bit_depth=16, channels=1).astype(np.int64)
    if cls.shape != inst.shape:
        raise ValueError(
            f'{class_path} {cls.shape} and {instance_path} {inst.shape} differ in size'
        )
    if inst.size and inst.max() >= label_divisor:
        raise ValueError(
            f'{instance_path}: instance id {inst.max()} >= label divisor {label_divisor}'
        )
    return (cls * label_divisor + inst).astype(np.int32)


def read_two_channel_panoptic(path, label_divisor: int) -> np.ndarray:
    """A ViP-DeepLab Cityscapes-DVPS prediction: ``[..., 0]`` class, ``[..., 1]`` instance.

    Args:
        path (str | Path): 8-bit PNG with 2 (grey + alpha), 3 or 4 channels.
        label_divisor (int): Output encoding.

    Returns:
        np.ndarray: ``(H, W)`` int32 ``class * label_divisor + instance``.
    """
    array = read_png(path, bit_depth=8)
    if array.ndim != 3:
        raise ValueError(
            f'{path}: a panoptic prediction needs 2+ channels ([..., 0] class, [..., 1] '
            'instance), got a single-channel PNG'
        )
    return (array[..., 0].astype(np.int64) * label_divisor + array[..., 1]).astype(np.int32)


def list_frames(folder, fmt: str, suffix: str) -> dict:
    """Files of one kind in a DVPS folder, keyed by ``(seq, frame)``.

    Args:
        folder (str | Path): The folder (not searched recursively).
        fmt (str): ``'cityscapes_dvps'`` or ``'semkitti_dvps'``.
        suffix (str): Regex the name's suffix must match in full (e.g. ``'leftImg8bit'``,
            ``r'depth_[0-9.]+'``, ``'.*cat'``).

    Returns:
        dict: ``{(seq, frame): match}`` sorted by key; ``match.string`` is the file name.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        ValueError: Two files of the kind have the same ``(seq, frame)``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f'{folder}: no such folder')
    pattern = re.compile(suffix)
    found: dict = {}
    for name in sorted(os.listdir(folder)):
        match = parse_frame_name(name, fmt)
        if match is None or not pattern.fullmatch(match['suffix']):
            continue
        key = (match['seq'], int(match['frame']))
        if key in found:
            raise ValueError(
                f'{folder}: {found[key].string} and {name} are both frame {key[1]} of sequence '
                f'{key[0]}'
            )
        found[key] = match
    return dict(sorted(found.items()))
