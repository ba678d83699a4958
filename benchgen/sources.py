"""The real photographs the bundled benchmark is made of, their licences, and how each is used.

Every photograph ships inside a wheel of a package the project already depends on, so a fresh
clone can build the benchmark offline:

* scikit-image's ``skimage/data/`` folder (only files bundled in the wheel; nothing that
  ``skimage.data`` would download with pooch);
* scikit-learn's ``sklearn/datasets/images/`` (``china.jpg``, ``flower.jpg``);
* matplotlib's ``mpl-data/sample_data/grace_hopper.jpg``.

The files are located with :func:`importlib.util.find_spec` (the packages are not imported) and
decoded with Pillow. The licence of each photograph is in :data:`SOURCES`, quoted from the
docstrings of ``skimage.data`` and the README files shipped next to the images.

Backdrop photographs are labelled (sky / vegetation / building) by a per-photo colour and texture
recipe (:func:`backdrop_labels`): the labels are what this benchmark *declares*, a deterministic
function of the photograph, not a human annotation.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Tuple

import cv2
import numpy as np
from PIL import Image

from .classes import CLASS_IDS

__all__ = [
    'PhotoSource',
    'SOURCES',
    'SpriteSource',
    'SPRITE_SOURCES',
    'GROUND_TEXTURES',
    'BACKDROPS',
    'load_photo',
    'horse_silhouette',
    'backdrop_labels',
    'source_path',
]


@dataclass(frozen=True)
class PhotoSource:
    """A photograph bundled in an installed package.

    Attributes:
        key (str): Name used in this package.
        package (str): Import name of the package that ships it.
        relpath (str): Path of the file inside the package folder.
        title (str): What the photograph shows.
        licence (str): Licence, as stated by the package.
        attribution (str): Author / origin, as stated by the package.
    """

    key: str
    package: str
    relpath: str
    title: str
    licence: str
    attribution: str


_SK = 'scikit-image ``skimage.data``'
SOURCES: Dict[str, PhotoSource] = {
    s.key: s
    for s in (
        PhotoSource(
            'astronaut',
            'skimage',
            'data/astronaut.png',
            'Eileen Collins, NASA astronaut, with a space-shuttle model',
            'public domain ("No known copyright restrictions, released into the public ' 'domain")',
            f'NASA Great Images database, via {_SK}',
        ),
        PhotoSource(
            'coffee',
            'skimage',
            'data/coffee.png',
            'coffee cup on a wooden table',
            'CC0 ("No copyright restrictions. CC0 by the photographer")',
            f'Rachel Michetti, courtesy of Pikolo Espresso Bar, via {_SK}',
        ),
        PhotoSource(
            'chelsea',
            'skimage',
            'data/chelsea.png',
            'Chelsea the cat',
            'CC0 ("No copyright restrictions. CC0 by the photographer")',
            f'Stefan van der Walt, via {_SK}',
        ),
        PhotoSource(
            'rocket',
            'skimage',
            'data/rocket.jpg',
            'DSCOVR on Falcon 9 at Cape Canaveral launch complex 40, at dusk',
            'public domain (released by SpaceX)',
            f'SpaceX, via {_SK}',
        ),
        PhotoSource(
            'camera',
            'skimage',
            'data/camera.png',
            'man with a film camera on a tripod ' '(grey)',
            'CC0 ("No copyright restrictions. CC0 by the photographer")',
            f'Lav Varshney, via {_SK}',
        ),
        PhotoSource(
            'horse',
            'skimage',
            'data/horse.png',
            'black silhouette of a horse',
            'CC0 ("No copyright restrictions. CC0 given by owner")',
            f'Andreas Preuss (marauder), openclipart.org, via {_SK}',
        ),
        PhotoSource(
            'grass',
            'skimage',
            'data/grass.png',
            'grass (grey)',
            'CC0 (Creative Commons CC0 License)',
            f'linolafett, DeviantArt "Grass-01", via {_SK}',
        ),
        PhotoSource(
            'gravel',
            'skimage',
            'data/gravel.png',
            'gravel (grey)',
            'CC0 (Creative Commons CC0 License)',
            f'CC0Textures "Gravel04", via {_SK}',
        ),
        PhotoSource(
            'brick',
            'skimage',
            'data/brick.png',
            'brick wall (grey)',
            'CC0 (Creative Commons CC0 License)',
            f'CC0Textures "Bricks25", via {_SK}',
        ),
        PhotoSource(
            'china',
            'sklearn',
            'datasets/images/china.jpg',
            'Tower of Buddhist Incense, Summer Palace, Beijing',
            'CC BY 2.0 (https://creativecommons.org/licenses/by/2.0/)',
            '"Some rights reserved by danielbuechele" '
            '(https://www.flickr.com/photos/danielbuechele/6061409035/), retrieved by '
            'Robert Layton, via scikit-learn ``load_sample_image``',
        ),
        PhotoSource(
            'flower',
            'sklearn',
            'datasets/images/flower.jpg',
            'orange dahlia',
            'CC BY 2.0 (https://creativecommons.org/licenses/by/2.0/)',
            'flickr user vultilion (https://www.flickr.com/photos/vultilion/6056698931/; '
            'scikit-learn\'s README names "danielbuechele"), retrieved by Robert Layton, '
            'via scikit-learn ``load_sample_image``',
        ),
        PhotoSource(
            'grace_hopper',
            'matplotlib',
            'mpl-data/sample_data/grace_hopper.jpg',
            'Rear Admiral Grace M. Hopper',
            'public domain (official U.S. Navy ' 'photograph)',
            'U.S. Navy, via matplotlib ``cbook.get_sample_data``',
        ),
    )
}


@dataclass(frozen=True)
class SpriteSource:
    """A crop of a photograph used as the texture of an object class.

    Attributes:
        photo (str): Key in :data:`SOURCES`.
        box (tuple[int, int, int, int]): Crop ``(y0, y1, x0, x1)`` in pixels of the photograph.
        rotate (int): Quarter turns (``np.rot90``) applied after cropping.
    """

    photo: str
    box: Tuple[int, int, int, int]
    rotate: int = 0


#: Textures of the thing classes. The horse is the horse silhouette filled with the wood grain of
#: the coffee table, the zebra the same silhouette filled with the striped brick wall; the other
#: classes use a smooth random silhouette around a crop.
SPRITE_SOURCES: Dict[str, Tuple[SpriteSource, ...]] = {
    'person': (
        SpriteSource('astronaut', (0, 512, 60, 330)),
        SpriteSource('grace_hopper', (20, 600, 120, 420)),
        SpriteSource('camera', (50, 512, 0, 215)),
    ),
    'domestic_cat': (
        SpriteSource('chelsea', (0, 300, 60, 420)),
        SpriteSource('chelsea', (15, 290, 110, 400)),
    ),
    'horse': (SpriteSource('coffee', (0, 400, 465, 600), rotate=1),),
    'airplane': (SpriteSource('astronaut', (0, 292, 348, 472)),),
    'zebra': (SpriteSource('brick', (0, 512, 0, 512)), SpriteSource('brick', (100, 400, 50, 500))),
}

#: Ground classes -> (photo key, metres per texel, RGB tint applied to the grey photograph).
GROUND_TEXTURES: Dict[str, Tuple[str, float, Tuple[float, float, float]]] = {
    'road': ('gravel', 0.010, (0.72, 0.74, 0.78)),
    'sidewalk': ('brick', 0.008, (1.08, 0.88, 0.80)),
    'terrain': ('grass', 0.008, (0.72, 1.00, 0.48)),
}

#: Backdrop photographs and the recipe that labels them (see :func:`backdrop_labels`).
BACKDROPS: Dict[str, Dict[str, object]] = {
    # the tower, outlined by hand (x, y pixels of china.jpg)
    # the lake (smooth, blue, below the far shore at row 212) has no Cityscapes class: unlabeled
    'china': dict(
        sky=True,
        green=True,
        texture_vegetation=True,
        sky_max_row=212,
        buildings=(
            (
                (200, 28),
                (216, 28),
                (220, 62),
                (260, 85),
                (322, 118),
                (318, 135),
                (296, 142),
                (298, 160),
                (332, 172),
                (330, 190),
                (322, 196),
                (324, 236),
                (354, 250),
                (350, 268),
                (340, 290),
                (340, 305),
                (350, 315),
                (374, 332),
                (352, 362),
                (312, 392),
                (300, 427),
                (290, 427),
                (292, 396),
                (205, 392),
                (200, 360),
                (150, 345),
                (76, 345),
                (74, 330),
                (80, 292),
                (62, 280),
                (62, 260),
                (100, 238),
                (100, 196),
                (84, 190),
                (82, 172),
                (120, 158),
                (120, 140),
                (95, 135),
                (95, 107),
                (150, 90),
                (190, 62),
            ),
        ),
    ),
    'rocket': dict(sky=True),
    'flower': dict(constant='vegetation'),
    'coffee': dict(constant='building'),
}


def source_path(key: str) -> Path:
    """Path of a bundled photograph inside its installed package.

    Args:
        key (str): Key in :data:`SOURCES`.

    Returns:
        Path: The file.

    Raises:
        ValueError: Unknown key.
        FileNotFoundError: The package is not installed or does not ship the file.
    """
    if key not in SOURCES:
        raise ValueError(f'unknown photo {key!r}; known photos: {sorted(SOURCES)}')
    src = SOURCES[key]
    spec = importlib.util.find_spec(src.package)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f'photo {key!r} ships with the package {src.package!r}, which is '
            'not installed; install the requirements (requirements.txt)'
        )
    path = Path(spec.origin).parent / src.relpath
    if not path.is_file():
        raise FileNotFoundError(
            f'photo {key!r} not found at {path}: the installed {src.package} '
            'does not bundle it (reinstall the package from its wheel)'
        )
    return path


@functools.lru_cache(maxsize=None)
def load_photo(key: str) -> np.ndarray:
    """Decode a bundled photograph to RGB.

    Args:
        key (str): Key in :data:`SOURCES`.

    Returns:
        np.ndarray: ``(H, W, 3)`` uint8 RGB (grey photographs are repeated over the channels;
        transparency is composited over white). Read-only: copy before modifying.
    """
    with Image.open(source_path(key)) as im:
        if im.mode in ('RGBA', 'LA', 'P'):
            im = im.convert('RGBA')
            white = Image.new('RGBA', im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(white, im)
        arr = np.array(im.convert('RGB'))
    arr.setflags(write=False)
    return arr


@functools.lru_cache(maxsize=None)
def horse_silhouette() -> np.ndarray:
    """The horse silhouette, cropped to its bounding box.

    Returns:
        np.ndarray: ``(h, w)`` bool mask, True on the horse. Read-only.
    """
    grey = load_photo('horse').mean(axis=2)
    mask = grey < 128  # black horse on white
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    mask = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].copy()
    mask.setflags(write=False)
    return mask


@functools.lru_cache(maxsize=None)
def backdrop_labels(key: str) -> np.ndarray:
    """Internal class of every pixel of a backdrop photograph (sky / vegetation / building / void).

    The recipe of :data:`BACKDROPS` decides: ``constant`` labels the whole photograph; otherwise
    *sky* is the smooth (low-gradient), blue-dominant region connected to the top row, *vegetation*
    the regions where green-dominant pixels are dense (``green``) or dark and strongly textured
    (``texture_vegetation``: foliage), and the rest is *building*; a median filter removes speckle.
    Polygons outlined by hand (``buildings``) are building whatever their colour (the green
    glazed roofs of the tower in ``china``); the smooth blue region below ``sky_max_row`` is water
    (no Cityscapes class): ``unlabeled``.

    Args:
        key (str): Key in :data:`BACKDROPS`.

    Returns:
        np.ndarray: ``(H, W)`` uint8 internal class ids (:data:`~.classes.CLASS_IDS`), same size as
        the photograph. Read-only.
    """
    if key not in BACKDROPS:
        raise ValueError(f'unknown backdrop {key!r}; known backdrops: {sorted(BACKDROPS)}')
    recipe = BACKDROPS[key]
    img = load_photo(key)
    h, w = img.shape[:2]
    if 'constant' in recipe:
        out = np.full((h, w), CLASS_IDS[str(recipe['constant'])], np.uint8)
        out.setflags(write=False)
        return out
    f = img.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    k = max(3, int(round(h / 40)) | 1)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    grad = np.abs(cv2.Sobel(grey, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    texture = cv2.blur(grad, (k, k))
    out = np.full((h, w), CLASS_IDS['building'], np.uint8)
    building = np.zeros((h, w), np.uint8)
    for polygon in recipe.get('buildings', ()):
        cv2.fillPoly(building, [np.array(polygon, np.int32)], 1)
    not_building = building == 0
    if recipe.get('green'):
        maxc = np.maximum(np.maximum(r, g), b)
        sat = (maxc - np.minimum(np.minimum(r, g), b)) / np.maximum(maxc, 1.0)
        green = ((g > r * 1.02) & (g > b * 0.95) & (sat > 0.12)).astype(np.float32)
        out[(cv2.blur(green, (k, k)) > 0.25) & not_building] = CLASS_IDS['vegetation']
    if recipe.get('texture_vegetation'):
        out[(texture > 60) & (grey < 150) & not_building] = CLASS_IDS['vegetation']
    if recipe.get('sky'):
        cand = ((b >= r) & (texture < 40)).astype(np.uint8)
        cand = cv2.morphologyEx(cand, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        n, comp = cv2.connectedComponents(cand, connectivity=4)
        top = np.unique(comp[0][comp[0] > 0])
        sky = np.isin(comp, top) & not_building
        out[sky] = CLASS_IDS['sky']
        max_row = int(recipe.get('sky_max_row', h))
        out[max_row:][sky[max_row:]] = CLASS_IDS['unlabeled']
    out = cv2.medianBlur(out, k)
    out[building > 0] = CLASS_IDS['building']
    out.setflags(write=False)
    return out
