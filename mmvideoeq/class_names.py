"""Class lists of the datasets mmvideoeq reads.

One module that the dataset classes, the bundled-benchmark generator (``benchgen``) and the tests
share. It imports nothing (not even numpy), so the generator can use it without the OpenMMLab
stack.
"""

from __future__ import annotations

from typing import Dict, Tuple

__all__ = ['VID_CLASSES', 'VID_WNIDS', 'VID_CATEGORY_IDS', 'vid_categories']

#: The 30 ImageNet VID classes in the order of mmtracking's ``imagenet2coco_vid.py`` (category id
#: = index + 1) and their WordNet ids (``encode_name``).
VID_CLASSES: Tuple[str, ...] = (
    'airplane',
    'antelope',
    'bear',
    'bicycle',
    'bird',
    'bus',
    'car',
    'cattle',
    'dog',
    'domestic_cat',
    'elephant',
    'fox',
    'giant_panda',
    'hamster',
    'horse',
    'lion',
    'lizard',
    'monkey',
    'motorcycle',
    'rabbit',
    'red_panda',
    'sheep',
    'snake',
    'squirrel',
    'tiger',
    'train',
    'turtle',
    'watercraft',
    'whale',
    'zebra',
)
VID_WNIDS: Tuple[str, ...] = (
    'n02691156',
    'n02419796',
    'n02131653',
    'n02834778',
    'n01503061',
    'n02924116',
    'n02958343',
    'n02402425',
    'n02084071',
    'n02121808',
    'n02503517',
    'n02118333',
    'n02510455',
    'n02342885',
    'n02374451',
    'n02129165',
    'n01674464',
    'n02484322',
    'n03790512',
    'n02324045',
    'n02509815',
    'n02411705',
    'n01726692',
    'n02355227',
    'n02129604',
    'n04468005',
    'n01662784',
    'n04530566',
    'n02062744',
    'n02391049',
)
VID_CATEGORY_IDS: Dict[str, int] = {name: i + 1 for i, name in enumerate(VID_CLASSES)}


def vid_categories() -> list:
    """The ``categories`` list of an OpenMMLab ImageNet-VID annotation file (all 30 classes).

    Returns:
        list[dict]: ``[{'id': 1, 'name': 'airplane', 'encode_name': 'n02691156'}, ...]``.
    """
    return [
        dict(id=i + 1, name=name, encode_name=wnid)
        for i, (name, wnid) in enumerate(zip(VID_CLASSES, VID_WNIDS))
    ]
