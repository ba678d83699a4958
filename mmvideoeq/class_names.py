"""Class lists of the datasets mmvideoeq reads.

One module that the dataset classes, the bundled-benchmark generator (``benchgen``) and the tests
share. It imports nothing (not even numpy), so the generator can use it without the OpenMMLab
stack.
"""

from __future__ import annotations

from typing import Dict, Tuple

__all__ = [
    'VID_CLASSES',
    'VID_WNIDS',
    'VID_CATEGORY_IDS',
    'vid_categories',
    'COCO_CLASSES',
    'COCO_CATEGORY_IDS',
    'coco_categories',
]

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


#: The 80 COCO thing classes in the order of mmdet's ``CocoDataset`` (labels 0..79) and their
#: (non-contiguous) COCO category ids, which are also the thing ids of COCO-stuff and COCO panoptic.
COCO_CLASSES: Tuple[str, ...] = (
    'person',
    'bicycle',
    'car',
    'motorcycle',
    'airplane',
    'bus',
    'train',
    'truck',
    'boat',
    'traffic light',
    'fire hydrant',
    'stop sign',
    'parking meter',
    'bench',
    'bird',
    'cat',
    'dog',
    'horse',
    'sheep',
    'cow',
    'elephant',
    'bear',
    'zebra',
    'giraffe',
    'backpack',
    'umbrella',
    'handbag',
    'tie',
    'suitcase',
    'frisbee',
    'skis',
    'snowboard',
    'sports ball',
    'kite',
    'baseball bat',
    'baseball glove',
    'skateboard',
    'surfboard',
    'tennis racket',
    'bottle',
    'wine glass',
    'cup',
    'fork',
    'knife',
    'spoon',
    'bowl',
    'banana',
    'apple',
    'sandwich',
    'orange',
    'broccoli',
    'carrot',
    'hot dog',
    'pizza',
    'donut',
    'cake',
    'chair',
    'couch',
    'potted plant',
    'bed',
    'dining table',
    'toilet',
    'tv',
    'laptop',
    'mouse',
    'remote',
    'keyboard',
    'cell phone',
    'microwave',
    'oven',
    'toaster',
    'sink',
    'refrigerator',
    'book',
    'clock',
    'vase',
    'scissors',
    'teddy bear',
    'hair drier',
    'toothbrush',
)
_COCO_IDS = (
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    13,
    14,
    15,
    16,
    17,
    18,
    19,
    20,
    21,
    22,
    23,
    24,
    25,
    27,
    28,
    31,
    32,
    33,
    34,
    35,
    36,
    37,
    38,
    39,
    40,
    41,
    42,
    43,
    44,
    46,
    47,
    48,
    49,
    50,
    51,
    52,
    53,
    54,
    55,
    56,
    57,
    58,
    59,
    60,
    61,
    62,
    63,
    64,
    65,
    67,
    70,
    72,
    73,
    74,
    75,
    76,
    77,
    78,
    79,
    80,
    81,
    82,
    84,
    85,
    86,
    87,
    88,
    89,
    90,
)
COCO_CATEGORY_IDS: Dict[str, int] = dict(zip(COCO_CLASSES, _COCO_IDS))


def coco_categories() -> list:
    """The ``categories`` list of a COCO instances file (all 80 thing classes).

    Returns:
        list[dict]: ``[{'id': 1, 'name': 'person'}, ...]``.
    """
    return [dict(id=COCO_CATEGORY_IDS[name], name=name) for name in COCO_CLASSES]


# ---------------------------------------------------------------------------------------------
# Depth-aware video panoptic segmentation (ViP-DeepLab, thesis chapter 7)
# ---------------------------------------------------------------------------------------------
#: Cityscapes-DVPS classes, index = train id (cityscapesscripts' 19 evaluation classes in trainId
#: order). deeplab2 ``data/dataset.py`` (``CITYSCAPES_DVPS_INFORMATION``): 19 classes, things
#: 11..18, panoptic label divisor 1000, ignore label 32 (void pixels are ``32 * 1000``).
CITYSCAPES_DVPS_CLASSES: Tuple[str, ...] = (
    'road',
    'sidewalk',
    'building',
    'wall',
    'fence',
    'pole',
    'traffic light',
    'traffic sign',
    'vegetation',
    'terrain',
    'sky',
    'person',
    'rider',
    'car',
    'truck',
    'bus',
    'train',
    'motorcycle',
    'bicycle',
)
CITYSCAPES_DVPS_THING_IDS: Tuple[int, ...] = tuple(range(11, 19))
CITYSCAPES_DVPS_LABEL_DIVISOR = 1000
CITYSCAPES_DVPS_IGNORE_LABEL = 32

#: SemKITTI-DVPS classes: SemanticKITTI's 19 evaluation classes in the order of semantic-kitti-api
#: ``config/semantic-kitti.yaml`` ``learning_map_inv`` (1..19, here 0..18; unlabeled -> 255).
#: deeplab2 ``data/dataset.py`` (``SEMKITTI_DVPS_INFORMATION``): things 0..7, ignore label 255,
#: panoptic label divisor 65536.
SEMKITTI_DVPS_CLASSES: Tuple[str, ...] = (
    'car',
    'bicycle',
    'motorcycle',
    'truck',
    'other-vehicle',
    'person',
    'bicyclist',
    'motorcyclist',
    'road',
    'parking',
    'sidewalk',
    'other-ground',
    'building',
    'fence',
    'vegetation',
    'trunk',
    'terrain',
    'pole',
    'traffic-sign',
)
SEMKITTI_DVPS_THING_IDS: Tuple[int, ...] = tuple(range(8))
SEMKITTI_DVPS_LABEL_DIVISOR = 65536
SEMKITTI_DVPS_IGNORE_LABEL = 255

__all__ += [
    'CITYSCAPES_DVPS_CLASSES',
    'CITYSCAPES_DVPS_THING_IDS',
    'CITYSCAPES_DVPS_LABEL_DIVISOR',
    'CITYSCAPES_DVPS_IGNORE_LABEL',
    'SEMKITTI_DVPS_CLASSES',
    'SEMKITTI_DVPS_THING_IDS',
    'SEMKITTI_DVPS_LABEL_DIVISOR',
    'SEMKITTI_DVPS_IGNORE_LABEL',
]
