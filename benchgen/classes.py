"""Class tables of the bundled benchmark and their mapping to ImageNet-VID and Cityscapes labels.

The renderer labels every pixel with an *internal* class id (:data:`CLASSES`): six "stuff"
classes for the background (ground bands and the backdrop photograph) and four "thing" classes
for the moving objects. The writers translate them:

* to ImageNet-VID category ids (1..30 in the order of OpenMMLab's ``imagenet2coco_vid.py``
  conversion; only things with a VID name are annotated, ``person`` is an unannotated distractor
  as people are in real VID videos);
* to Cityscapes label ids / train ids (the values of ``cityscapesscripts.helpers.labels``,
  repeated here so that this package needs nothing but numpy; the tests check them against
  cityscapesscripts). Animals are ``dynamic`` (id 5, ignored in evaluation), as in the Cityscapes
  annotation guidelines (so is the airplane, which never appears in driving scenes).
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Tuple

__all__ = [
    'CLASSES',
    'CLASS_IDS',
    'STUFF_CLASSES',
    'THING_CLASSES',
    'CityscapesLabel',
    'CITYSCAPES_LABELS',
    'TO_CITYSCAPES',
    'TO_VID',
    'CocoLabel',
    'TO_COCO',
]

#: Internal class names; the index is the value of the semantic maps the renderer returns.
#: 0 is never rendered (every pixel is background or an object).
CLASSES: Tuple[str, ...] = (
    'unlabeled',
    'road',
    'sidewalk',
    'terrain',
    'building',
    'vegetation',
    'sky',
    'person',
    'horse',
    'domestic_cat',
    'airplane',
    'zebra',
)
CLASS_IDS: Dict[str, int] = {name: i for i, name in enumerate(CLASSES)}
STUFF_CLASSES: Tuple[str, ...] = ('road', 'sidewalk', 'terrain', 'building', 'vegetation', 'sky')
THING_CLASSES: Tuple[str, ...] = ('person', 'horse', 'domestic_cat', 'airplane', 'zebra')


#: Internal thing class -> ImageNet-VID class name (None: not annotated in VID).
TO_VID: Dict[str, Optional[str]] = {
    'person': None,
    'horse': 'horse',
    'domestic_cat': 'domestic_cat',
    'airplane': 'airplane',
    'zebra': 'zebra',
}


class CityscapesLabel(NamedTuple):
    """One row of the Cityscapes label table (``cityscapesscripts.helpers.labels``)."""

    name: str
    id: int
    train_id: int
    has_instances: bool
    color: Tuple[int, int, int]


#: The Cityscapes labels this benchmark writes (values of ``cityscapesscripts.helpers.labels``).
CITYSCAPES_LABELS: Dict[str, CityscapesLabel] = {
    label.name: label
    for label in (
        CityscapesLabel('unlabeled', 0, 255, False, (0, 0, 0)),
        CityscapesLabel('dynamic', 5, 255, False, (111, 74, 0)),
        CityscapesLabel('road', 7, 0, False, (128, 64, 128)),
        CityscapesLabel('sidewalk', 8, 1, False, (244, 35, 232)),
        CityscapesLabel('building', 11, 2, False, (70, 70, 70)),
        CityscapesLabel('vegetation', 21, 8, False, (107, 142, 35)),
        CityscapesLabel('terrain', 22, 9, False, (152, 251, 152)),
        CityscapesLabel('sky', 23, 10, False, (70, 130, 180)),
        CityscapesLabel('person', 24, 11, True, (220, 20, 60)),
    )
}

#: Internal class -> Cityscapes label name.
TO_CITYSCAPES: Dict[str, str] = {
    'unlabeled': 'unlabeled',
    'road': 'road',
    'sidewalk': 'sidewalk',
    'terrain': 'terrain',
    'building': 'building',
    'vegetation': 'vegetation',
    'sky': 'sky',
    'person': 'person',
    'horse': 'dynamic',
    'domestic_cat': 'dynamic',
    'airplane': 'dynamic',
    'zebra': 'dynamic',
}


class CocoLabel(NamedTuple):
    """Where an internal class goes in COCO, COCO-stuff and COCO panoptic.

    Attributes:
        name (str): COCO thing or COCO-stuff class name.
        id (int): Its category id (COCO things 1..90, COCO-stuff stuff 92..182); the
            ``stuffthingmaps`` pixel value is ``id - 1``.
        panoptic_id (int): COCO panoptic category id (things keep their id; stuff classes are
            the merged panoptic categories, e.g. ``tree`` -> ``tree-merged`` 184).
        panoptic_name (str): COCO panoptic category name.
        isthing (bool): A thing class (instances) or a stuff class.
    """

    name: str
    id: int
    panoptic_id: int
    panoptic_name: str
    isthing: bool


#: Internal class -> COCO label (None: unlabeled, 255 in stuffthingmaps, void in panoptic). The
#: values are those of cocodataset's COCO-stuff label list and panopticapi's
#: panoptic_coco_categories.json (checked against the latter by the tests when available).
TO_COCO: Dict[str, Optional[CocoLabel]] = {
    'unlabeled': None,
    'road': CocoLabel('road', 149, 149, 'road', False),
    'sidewalk': CocoLabel('pavement', 140, 191, 'pavement-merged', False),
    'terrain': CocoLabel('grass', 124, 193, 'grass-merged', False),
    'building': CocoLabel('building-other', 96, 197, 'building-other-merged', False),
    'vegetation': CocoLabel('tree', 169, 184, 'tree-merged', False),
    'sky': CocoLabel('sky-other', 157, 187, 'sky-other-merged', False),
    'person': CocoLabel('person', 1, 1, 'person', True),
    'horse': CocoLabel('horse', 19, 19, 'horse', True),
    'domestic_cat': CocoLabel('cat', 17, 17, 'cat', True),
    'airplane': CocoLabel('airplane', 5, 5, 'airplane', True),
    'zebra': CocoLabel('zebra', 24, 24, 'zebra', True),
}
