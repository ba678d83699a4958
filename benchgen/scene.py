"""Sampling and rendering of labelled videos made of real photographs (plain numpy + OpenCV).

A video is a list of *shots*. In a shot a pinhole camera at height ``h`` above a ground plane looks
at a vertical backdrop plane ``wall`` metres away; the backdrop is a real photograph
(:data:`~.sources.BACKDROPS`), the ground is made of bands of real ground textures (gravel = road,
brick = sidewalk, grass = terrain) seen in perspective, and objects stand on the ground (or fly
above it): real-photo textures in a real (horse) or smooth random silhouette.

Geometry. Positions are in metres: ``x`` to the right, ``z`` forward, the camera at
``(cam_x(t), cam_z(t))``. A point at depth ``Z`` (along the optical axis) and height ``y`` above
the ground projects to the *canvas* ``X = f0 * x / Z``, ``Y = f0 * (h - y) / Z`` (``Y`` down from
the horizon). The image of frame ``t`` is a similarity of the canvas, ``u = W/2 + z(t) (X - p(t))``,
``v = v_h + z(t) (Y - q(t))``: ``p`` pans, ``q`` tilts (small-angle rotations) and ``z`` zooms.
Hence the ground at canvas row ``Y > 0`` has depth ``f0 h / Y``, growing towards the horizon row,
and the backdrop's base is at ``Y_w = f0 h / wall``. Objects are drawn far to near with their
depth as the z-order (so they occlude each other and are always nearer than the background
behind them). Depth maps hold ``Z`` in metres, 0 where there is none (sky).

Temporal behaviour, as in real video: the camera pans, tilts, zooms and (driving scenes) moves
forward smoothly; objects move, change scale, occlude each other and enter and leave the frame;
the exposure flickers slowly; every frame gets sensor noise; and at a *shot change* the backdrop,
ground, camera and part of the objects change at once (some objects carry over with their track
id, as the same animal seen by another camera).

Everything is drawn from one ``numpy.random.Generator``: the same generator state gives the same
video bit for bit (on the same platform and library versions).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .classes import CLASS_IDS
from .sources import (
    GROUND_TEXTURES,
    SPRITE_SOURCES,
    backdrop_labels,
    horse_silhouette,
    load_photo,
)

__all__ = [
    'ClassSpec',
    'CLASS_SPECS',
    'SceneStyle',
    'HANDHELD',
    'DRIVING',
    'STYLES',
    'Shot',
    'ObjectIdentity',
    'Placement',
    'VideoSpec',
    'RenderedVideo',
    'sample_video',
    'render_video',
]

Range = Tuple[float, float]


@dataclass(frozen=True)
class ClassSpec:
    """Physical behaviour of an object class.

    Attributes:
        height (tuple[float, float]): Height range in metres (the width follows the texture).
        depth (tuple[float, float]): Depth range in metres in handheld scenes.
        speed (tuple[float, float]): Lateral speed range in metres per frame.
        elevation (tuple[float, float]): Height of the object's base above the ground (m).
        silhouette (str): ``'blob'`` (smooth random shape) or ``'horse'`` (the real silhouette).
        bob (float): Amplitude (m) of a vertical gait bounce.
    """

    height: Range
    depth: Range
    speed: Range
    elevation: Range = (0.0, 0.0)
    silhouette: str = 'blob'
    bob: float = 0.0


#: The domestic cat is drawn twice life size (0.7-0.9 m) so that it is visible at these
#: resolutions.
CLASS_SPECS: Dict[str, ClassSpec] = {
    'person': ClassSpec(height=(1.6, 1.85), depth=(2.5, 9.0), speed=(0.03, 0.12), bob=0.03),
    'horse': ClassSpec(
        height=(1.7, 2.0), depth=(3.5, 11.0), speed=(0.06, 0.25), silhouette='horse', bob=0.04
    ),
    'domestic_cat': ClassSpec(height=(0.7, 0.9), depth=(1.8, 5.0), speed=(0.02, 0.08)),
    'airplane': ClassSpec(
        height=(2.5, 3.5), depth=(4.5, 12.0), speed=(0.06, 0.22), elevation=(0.3, 2.0), bob=0.05
    ),
    'zebra': ClassSpec(
        height=(1.5, 1.8), depth=(3.5, 11.0), speed=(0.06, 0.25), silhouette='horse', bob=0.04
    ),
}


@dataclass(frozen=True)
class SceneStyle:
    """Sampling ranges of a kind of scene (handheld clips as in ImageNet-VID, or driving).

    Attributes:
        name (str): Name of the style.
        classes (tuple[str, ...]): Thing classes that may appear.
        class_weights (tuple[float, ...]): Relative frequency of each class.
        objects (tuple[int, int]): Inclusive range of the number of objects in a shot.
        backdrops (tuple[str, ...]): Backdrop photographs (keys of ``BACKDROPS``).
        street (bool): Ground bands road / sidewalk / terrain across the view (driving), or one
            ground class per shot.
        cam_height (tuple[float, float]): Camera height range (m).
        horizon (tuple[float, float]): Horizon row range, as a fraction of the frame height.
        focal (float): Focal length at zoom 1, as a fraction of the frame width.
        zoom (tuple[float, float]): Initial zoom range.
        zoom_rate (float): Largest zoom change per frame, ``|d ln z / dt|``.
        pan_rate (float): Largest steady pan per frame, as a fraction of the frame width.
        pan_wobble (float): Amplitude of the pan's oscillation, fraction of the frame width.
        tilt_wobble (float): Amplitude of the tilt's oscillation, fraction of the frame height.
        forward (tuple[float, float]): Forward camera speed range (m per frame).
        wall (tuple[float, float]): Backdrop distance range (m).
        noise (float): Standard deviation of the sensor noise (grey levels).
        flicker (float): Relative amplitude of the slow exposure change.
        grounds (tuple[str, ...]): Ground classes a shot may have when not ``street``.
    """

    name: str
    classes: Tuple[str, ...]
    class_weights: Tuple[float, ...]
    objects: Tuple[int, int]
    backdrops: Tuple[str, ...]
    street: bool
    cam_height: Range
    horizon: Range
    focal: float
    zoom: Range
    zoom_rate: float
    pan_rate: float
    pan_wobble: float
    tilt_wobble: float
    forward: Range
    wall: Range
    noise: float = 1.5
    flicker: float = 0.04
    grounds: Tuple[str, ...] = ('road', 'sidewalk', 'terrain')


HANDHELD = SceneStyle(
    name='handheld',
    classes=('airplane', 'domestic_cat', 'horse', 'zebra', 'person'),
    class_weights=(0.22, 0.22, 0.2, 0.2, 0.16),
    objects=(1, 3),
    backdrops=('china', 'rocket', 'flower', 'coffee'),
    street=False,
    cam_height=(0.7, 1.4),
    horizon=(0.25, 0.5),
    focal=1.0,
    zoom=(0.9, 1.2),
    zoom_rate=0.012,
    pan_rate=0.012,
    pan_wobble=0.04,
    tilt_wobble=0.015,
    forward=(0.0, 0.08),
    wall=(25.0, 50.0),
    grounds=('road', 'terrain'),
)  # no brick sidewalk under brick-striped zebras

DRIVING = SceneStyle(
    name='driving',
    classes=('person', 'horse', 'domestic_cat'),
    class_weights=(0.7, 0.15, 0.15),
    objects=(3, 6),
    backdrops=('china', 'rocket', 'flower'),
    street=True,
    cam_height=(1.2, 1.5),
    horizon=(0.42, 0.5),
    focal=1.1,
    zoom=(1.0, 1.0),
    zoom_rate=0.0,
    pan_rate=0.002,
    pan_wobble=0.01,
    tilt_wobble=0.004,
    forward=(0.3, 0.6),
    wall=(70.0, 120.0),
    flicker=0.02,
)

STYLES: Dict[str, SceneStyle] = {s.name: s for s in (HANDHELD, DRIVING)}


@dataclass
class ObjectIdentity:
    """What stays the same when an object is seen again after a cut.

    Attributes:
        track_id (int): Track id in the video, from 1.
        cls (str): Thing class.
        height (float): Height in metres.
        width (float): Width in metres.
        sprite (list[np.ndarray]): Pyramid of premultiplied RGBA float32 textures ``(h, w, 4)``,
            finest first; alpha in ``[0, 1]``.
    """

    track_id: int
    cls: str
    height: float
    width: float
    sprite: List[np.ndarray] = field(repr=False)


@dataclass
class Placement:
    """Motion of an object in a shot (``tau`` = frame index in the shot).

    ``x(tau) = x + vx (tau - t_ref)``, ``z(tau) = z + vz (tau - t_ref)`` and the base at
    ``elevation + bob |sin(bob_freq tau + bob_phase)|`` metres above the ground.
    """

    identity: ObjectIdentity
    x: float
    z: float
    t_ref: float
    vx: float
    vz: float
    elevation: float
    bob: float
    bob_freq: float
    bob_phase: float

    def at(self, tau: float) -> Tuple[float, float, float]:
        """World ``(x, z, elevation)`` at time ``tau`` of the shot."""
        dt = tau - self.t_ref
        elev = self.elevation + self.bob * abs(math.sin(self.bob_freq * tau + self.bob_phase))
        return self.x + self.vx * dt, self.z + self.vz * dt, elev


@dataclass
class Shot:
    """A continuous camera take: frames ``[start, end)`` of the video.

    Camera signals (``tau = t - start``): pan ``p = p0 + vp tau + ap sin(wp tau + php)`` (canvas
    px), tilt ``q = aq sin(wq tau + phq)``, zoom ``z = z0 exp(vz tau + az sin(wz tau + phz))``,
    position ``cam_x = cx0 + vcx tau``, ``cam_z = vf tau``, exposure gain
    ``1 + ag sin(wg tau + phg)``.
    """

    start: int
    end: int
    backdrop: str
    backdrop_col: float
    backdrop_width: float
    backdrop_row: float
    ground: List[Tuple[float, float, str]]
    ground_offset: Tuple[float, float]
    cam_height: float
    horizon: float
    wall: float
    cam: Dict[str, float]
    objects: List[Placement]

    def camera(self, tau: float) -> Dict[str, float]:
        """Camera state at time ``tau`` of the shot: ``p, q, z, cam_x, cam_z, gain``."""
        c = self.cam
        return dict(
            p=c['p0'] + c['vp'] * tau + c['ap'] * math.sin(c['wp'] * tau + c['php']),
            q=c['aq'] * math.sin(c['wq'] * tau + c['phq']),
            z=c['z0'] * math.exp(c['vz'] * tau + c['az'] * math.sin(c['wz'] * tau + c['phz'])),
            cam_x=c['cx0'] + c['vcx'] * tau,
            cam_z=c['vf'] * tau,
            gain=1.0 + c['ag'] * math.sin(c['wg'] * tau + c['phg']),
        )


@dataclass
class VideoSpec:
    """Everything needed to render a video.

    Attributes:
        size (tuple[int, int]): ``(H, W)``.
        num_frames (int): Number of frames.
        style (SceneStyle): Scene style.
        shots (list[Shot]): Shots, in order, covering all frames.
        identities (list[ObjectIdentity]): All objects of the video (track ids 1..N).
        noise_seed (int): Seed of the sensor noise.
    """

    size: Tuple[int, int]
    num_frames: int
    style: SceneStyle
    shots: List[Shot]
    identities: List[ObjectIdentity]
    noise_seed: int

    @property
    def shot_changes(self) -> List[int]:
        """Frame ids where a new shot starts (the first frame after each cut)."""
        return [s.start for s in self.shots[1:]]

    @property
    def focal(self) -> float:
        """Focal length at zoom 1, in pixels."""
        return self.style.focal * self.size[1]


@dataclass
class RenderedVideo:
    """A rendered video and its dense ground truth.

    Attributes:
        frames (np.ndarray): ``(T, H, W, 3)`` uint8 RGB.
        semantic (np.ndarray): ``(T, H, W)`` uint8 internal class ids (``classes.CLASSES``).
        instance (np.ndarray): ``(T, H, W)`` int32 track id of the visible object, 0 for
            background.
        depth (np.ndarray): ``(T, H, W)`` float32 depth along the optical axis in metres, 0 where
            undefined (sky).
        track_classes (dict[int, str]): Class of each track id.
        unoccluded_area (list[dict[int, int]]): Per frame, the in-frame pixel area of each object
            drawn alone (before nearer objects cover it); compare with the visible area to tell
            occlusion.
        focal (np.ndarray): ``(T,)`` focal length in pixels (``f0 * z``).
        horizon (np.ndarray): ``(T,)`` principal-point row ``v_h`` of each frame's shot
            (continuous coordinates: pixel row ``i`` spans ``[i, i + 1)``).
        cam_height (np.ndarray): ``(T,)`` camera height above the ground (m).
        shot_changes (list[int]): Frame ids where a new shot starts.
        shots (list[dict]): Per shot: ``start``, ``end``, ``backdrop``, ``ground`` classes.
    """

    frames: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    depth: np.ndarray
    track_classes: Dict[int, str]
    unoccluded_area: List[Dict[int, int]]
    focal: np.ndarray
    horizon: np.ndarray
    cam_height: np.ndarray
    shot_changes: List[int]
    shots: List[dict]


# ---------------------------------------------------------------------------------------------
# textures
# ---------------------------------------------------------------------------------------------
def _pyramid(img: np.ndarray, min_size: int = 2) -> List[np.ndarray]:
    """Box-filtered pyramid (each level half the previous one), finest first."""
    levels = [img]
    while min(levels[-1].shape[:2]) >= 2 * min_size:
        h, w = levels[-1].shape[:2]
        levels.append(cv2.resize(levels[-1], (w // 2, h // 2), interpolation=cv2.INTER_AREA))
    return levels


@functools.lru_cache(maxsize=None)
def _ground_pyramid(cls: str) -> Tuple[np.ndarray, ...]:
    """Periodic (mirrored 2x2) tinted ground texture of a ground class, as a float32 pyramid."""
    photo, _, tint = GROUND_TEXTURES[cls]
    grey = load_photo(photo)[..., 0].astype(np.float32)
    tile = np.concatenate([grey, grey[:, ::-1]], axis=1)
    tile = np.concatenate([tile, tile[::-1]], axis=0)
    rgb = np.clip(tile[..., None] * np.asarray(tint, np.float32), 0, 255)
    # 7 levels: beyond a 64-texel footprint the texture is uniform enough to be sampled coarsely
    return tuple(_pyramid(np.ascontiguousarray(rgb), min_size=1)[:7])


def _blob_alpha(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth random star-shaped silhouette filling an ``(h, w)`` box, soft-edged alpha."""
    ks = np.arange(2, 6)
    amp = rng.uniform(0.0, 0.06, size=ks.size)
    phase = rng.uniform(0, 2 * np.pi, size=ks.size)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    nx = (x + 0.5) / w * 2 - 1
    ny = (y + 0.5) / h * 2 - 1
    rho = np.sqrt(nx**2 + ny**2)
    theta = np.arctan2(ny, nx)
    radius = 1 + sum(a * np.cos(k * theta + ph) for a, k, ph in zip(amp, ks, phase))
    radius = 0.97 * radius / (1 + amp.sum())
    soft = 2.0 / min(h, w)
    return np.clip((radius - rho) / soft + 0.5, 0, 1).astype(np.float32)


def _make_identity(
    rng: np.random.Generator, track_id: int, cls: str, sprite_height: int
) -> ObjectIdentity:
    """Sample an object: texture crop (jittered), silhouette, colour, facing and size."""
    spec = CLASS_SPECS[cls]
    sources = SPRITE_SOURCES[cls]
    src = sources[int(rng.integers(len(sources)))]
    photo = load_photo(src.photo)
    y0, y1, x0, x1 = src.box
    jy, jx = 0.04 * (y1 - y0), 0.04 * (x1 - x0)
    y0 = int(np.clip(y0 + rng.uniform(-jy, jy), 0, photo.shape[0] - 8))
    y1 = int(np.clip(y1 + rng.uniform(-jy, jy), y0 + 8, photo.shape[0]))
    x0 = int(np.clip(x0 + rng.uniform(-jx, jx), 0, photo.shape[1] - 8))
    x1 = int(np.clip(x1 + rng.uniform(-jx, jx), x0 + 8, photo.shape[1]))
    tex = np.rot90(photo[y0:y1, x0:x1], src.rotate).astype(np.float32)
    hs = int(sprite_height)
    if spec.silhouette == 'horse':
        mask = horse_silhouette().astype(np.float32)
        ws = max(4, int(round(hs * mask.shape[1] / mask.shape[0])))
        alpha = cv2.resize(mask, (ws, hs), interpolation=cv2.INTER_AREA)
    else:
        ws = max(4, int(round(hs * tex.shape[1] / tex.shape[0])))
        alpha = _blob_alpha(hs, ws, rng)
    rgb = cv2.resize(np.ascontiguousarray(tex), (ws, hs), interpolation=cv2.INTER_AREA)
    rgb = np.clip(rgb * rng.uniform(0.8, 1.15) * rng.uniform(0.93, 1.07, size=3), 0, 255)
    if rng.random() < 0.5:
        rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
    rgba = np.concatenate([rgb * alpha[..., None], alpha[..., None]], axis=2)
    height = float(rng.uniform(*spec.height))
    return ObjectIdentity(
        track_id=track_id,
        cls=cls,
        height=height,
        width=height * ws / hs,
        sprite=_pyramid(np.ascontiguousarray(rgba, dtype=np.float32)),
    )


# ---------------------------------------------------------------------------------------------
# sampling
# ---------------------------------------------------------------------------------------------
def _sample_camera(rng: np.random.Generator, style: SceneStyle, width: int) -> Dict[str, float]:
    """Random smooth camera signals of a shot (see :class:`Shot`)."""
    w = float(width)
    return dict(
        p0=rng.uniform(-0.1, 0.1) * w,
        vp=rng.uniform(-1, 1) * style.pan_rate * w,
        ap=rng.uniform(0.3, 1.0) * style.pan_wobble * w,
        wp=rng.uniform(0.08, 0.25),
        php=rng.uniform(0, 2 * np.pi),
        aq=rng.uniform(0.3, 1.0) * style.tilt_wobble,  # times H, set by the caller
        wq=rng.uniform(0.1, 0.35),
        phq=rng.uniform(0, 2 * np.pi),
        z0=rng.uniform(*style.zoom),
        vz=rng.uniform(-1, 1) * 0.6 * style.zoom_rate,
        az=rng.uniform(0.0, 1.0) * 2.0 * style.zoom_rate,
        wz=rng.uniform(0.1, 0.3),
        phz=rng.uniform(0, 2 * np.pi),
        cx0=0.0,
        vcx=0.0,
        vf=rng.uniform(*style.forward),
        ag=rng.uniform(0.3, 1.0) * style.flicker,
        wg=rng.uniform(0.05, 0.2),
        phg=rng.uniform(0, 2 * np.pi),
    )


def _weighted_class(rng: np.random.Generator, style: SceneStyle) -> str:
    weights = np.asarray(style.class_weights, np.float64)
    return style.classes[int(rng.choice(len(style.classes), p=weights / weights.sum()))]


def _place(
    rng: np.random.Generator,
    identity: ObjectIdentity,
    shot: Shot,
    style: SceneStyle,
    size: Tuple[int, int],
    f0: float,
) -> Placement:
    """Choose where and how an object moves during a shot.

    Handheld: the object is inside the central 80 % of the view at a random time ``t_ref`` of the
    shot, or (half of the objects) just outside its left or right edge early in the shot, moving
    in, or late in the shot, having moved out; it moves sideways and slowly towards or away from
    the camera, and is placed deep enough to be in view vertically. Driving: people walk along
    the sidewalks (some cross the road), animals stand or walk on the verge, ahead of the camera.
    """
    spec = CLASS_SPECS[identity.cls]
    n = shot.end - shot.start
    h, w = size
    speed = float(rng.uniform(*spec.speed)) * (1 if rng.random() < 0.5 else -1)
    elevation = float(rng.uniform(*spec.elevation))
    bob_freq = float(rng.uniform(0.4, 0.9))
    bob_phase = float(rng.uniform(0, 2 * np.pi))
    if not style.street:  # handheld
        z_rel = float(rng.uniform(*spec.depth))
        mode = rng.choice(3, p=[0.5, 0.25, 0.25])
        if mode == 0:  # inside the view at a random time, crossing it slowly
            t_ref = float(rng.uniform(0, max(n - 1, 0)))
        else:  # just outside the frame early in the shot (entering) or late (leaving)
            t_ref = float(rng.uniform(0.0, 0.3) if mode == 1 else rng.uniform(0.7, 1.0)) * (n - 1)
        cam = shot.camera(t_ref)
        # near enough the horizon that the object's middle is above the bottom of the frame
        rows_below = 0.9 * ((h - shot.horizon) / cam['z'] + cam['q'])
        mid_drop = shot.cam_height - elevation - 0.5 * identity.height
        if mid_drop > 0 and rows_below > 0:
            z_rel = max(z_rel, f0 * mid_drop / rows_below)
        half_view = 0.5 * w / cam['z']
        if mode == 0:
            canvas_x = cam['p'] + rng.uniform(-0.8, 0.8) * half_view
        else:
            half_obj = 0.5 * f0 * identity.width / z_rel
            side = 1 if rng.random() < 0.5 else -1
            canvas_x = cam['p'] + side * (half_view + half_obj)
            # move inwards (entering) or outwards (leaving), fast enough to cross its own width
            frames_left = max(n - 1 - t_ref, 1.0) if mode == 1 else max(t_ref, 1.0)
            needed = 2 * half_obj / frames_left * z_rel / f0
            speed = min(max(abs(speed), needed), 2.5 * spec.speed[1])
            speed = -side * speed if mode == 1 else side * speed
        x = cam['cam_x'] + canvas_x * z_rel / f0
        vz = float(rng.uniform(-0.06, 0.06)) * z_rel / 4
        # keep the depth inside the class range over the shot
        z_lo, z_hi = spec.depth
        for t_end in (0.0, float(n - 1)):
            z_end = z_rel + vz * (t_end - t_ref)
            if not z_lo * 0.8 <= z_end <= z_hi * 1.2:
                vz = 0.0
        return Placement(
            identity,
            x=x,
            z=z_rel + cam['cam_z'],
            t_ref=t_ref,
            vx=speed,
            vz=vz,
            elevation=elevation,
            bob=spec.bob,
            bob_freq=bob_freq,
            bob_phase=bob_phase,
        )
    road_half = shot.ground[2][1]
    sidewalk = shot.ground[3][1] - shot.ground[3][0]
    # driving: ground bands terrain | sidewalk | road | sidewalk | terrain
    travel = shot.cam['vf'] * n
    side = 1 if rng.random() < 0.5 else -1
    z = float(rng.uniform(7.0, 22.0 + travel))
    if identity.cls == 'person':
        if rng.random() < 0.25:  # crossing the road ahead
            x = side * (road_half + 0.3)
            vx = -side * abs(speed) * 1.2
            z = float(rng.uniform(10.0 + 0.5 * travel, 22.0 + travel))
            vz = 0.0
        else:
            x = side * (road_half + rng.uniform(0.4, max(sidewalk - 0.4, 0.5)))
            vx = float(rng.uniform(-0.01, 0.01))
            vz = speed
    else:
        x = side * (road_half + sidewalk + rng.uniform(0.0, 1.5))
        z = float(rng.uniform(12.0, 28.0 + travel))
        vx, vz = float(rng.uniform(-0.3, 0.3)) * speed, speed
    return Placement(
        identity,
        x=x,
        z=z,
        t_ref=0.0,
        vx=vx,
        vz=vz,
        elevation=elevation,
        bob=spec.bob,
        bob_freq=bob_freq,
        bob_phase=bob_phase,
    )


def _sample_shot(
    rng: np.random.Generator,
    style: SceneStyle,
    size: Tuple[int, int],
    start: int,
    end: int,
    previous: Optional[Shot],
) -> Shot:
    """Background, ground and camera of a new shot (objects are added by the caller)."""
    h, w = size
    choices = [b for b in style.backdrops if previous is None or b != previous.backdrop]
    backdrop = choices[int(rng.integers(len(choices)))]
    if style.street:
        road_half = float(rng.uniform(3.0, 5.0))
        walk = float(rng.uniform(2.0, 3.5))
        ground = [
            (-math.inf, -road_half - walk, 'terrain'),
            (-road_half - walk, -road_half, 'sidewalk'),
            (-road_half, road_half, 'road'),
            (road_half, road_half + walk, 'sidewalk'),
            (road_half + walk, math.inf, 'terrain'),
        ]
    else:
        ground_cls = style.grounds[int(rng.integers(len(style.grounds)))]
        ground = [(-math.inf, math.inf, ground_cls)]
    cam = _sample_camera(rng, style, w)
    cam['aq'] *= h
    if style.street:
        cam['cx0'] = float(rng.uniform(0.3, 0.6)) * ground[2][1]  # drive on the right
        cam['vcx'] = float(rng.uniform(-0.01, 0.01))
    return Shot(
        start=start,
        end=end,
        backdrop=backdrop,
        backdrop_col=float(rng.uniform(0.3, 0.7)),
        backdrop_width=float(rng.uniform(1.3, 2.0)),
        backdrop_row=float(rng.uniform(0, 1)),
        ground=ground,
        ground_offset=(float(rng.uniform(0, 100)), float(rng.uniform(0, 100))),
        cam_height=float(rng.uniform(*style.cam_height)),
        horizon=float(rng.uniform(*style.horizon)) * h,
        wall=float(rng.uniform(*style.wall)),
        cam=cam,
        objects=[],
    )


def sample_video(
    rng: np.random.Generator,
    style: SceneStyle,
    size: Tuple[int, int],
    num_frames: int,
    shot_changes: Sequence[int] = (),
) -> VideoSpec:
    """Sample the content of a video.

    Args:
        rng (np.random.Generator): Source of randomness (consumed).
        style (SceneStyle): Kind of scene.
        size (tuple[int, int]): Frame size ``(H, W)``, each >= 16.
        num_frames (int): Number of frames, >= 1.
        shot_changes (Sequence[int]): Frame ids where a new shot starts, increasing, in
            ``[1, num_frames)``.

    Returns:
        VideoSpec: The video, ready for :func:`render_video`.

    Raises:
        ValueError: Invalid size, frame count or shot changes.
    """
    h, w = (int(s) for s in size)
    if h < 16 or w < 16:
        raise ValueError(f'frame size must be at least 16x16, got {size}')
    if num_frames < 1:
        raise ValueError(f'num_frames must be >= 1, got {num_frames}')
    cuts = [int(c) for c in shot_changes]
    if any(not 0 < c < num_frames for c in cuts) or any(a >= b for a, b in zip(cuts, cuts[1:])):
        raise ValueError(
            f'shot_changes must increase strictly within [1, {num_frames}), '
            f'got {list(shot_changes)}'
        )
    f0 = style.focal * w
    sprite_height = int(np.clip(2 * h, 64, 384))
    bounds = [0] + cuts + [num_frames]
    shots: List[Shot] = []
    identities: List[ObjectIdentity] = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        previous = shots[-1] if shots else None
        shot = _sample_shot(rng, style, (h, w), start, end, previous)
        carried = []
        if previous is not None:
            carried = [p.identity for p in previous.objects if rng.random() < 0.5]
        count = int(rng.integers(style.objects[0], style.objects[1] + 1))
        new = max(count - len(carried), 0 if carried else 1)
        for _ in range(new):
            identity = _make_identity(
                rng, len(identities) + 1, _weighted_class(rng, style), sprite_height
            )
            identities.append(identity)
            carried.append(identity)
        shot.objects = [_place(rng, ident, shot, style, (h, w), f0) for ident in carried]
        shots.append(shot)
    return VideoSpec(
        size=(h, w),
        num_frames=num_frames,
        style=style,
        shots=shots,
        identities=identities,
        noise_seed=int(rng.integers(2**31)),
    )


# ---------------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------------
def _wrap(x: np.ndarray, period: int) -> np.ndarray:
    """``x`` modulo ``period`` as float32 (faster than ``np.mod`` on floats)."""
    return (x - np.floor(x / period) * period).astype(np.float32)


def _sample_ground(
    pyramid: Sequence[np.ndarray], cu: np.ndarray, cv: np.ndarray, level: np.ndarray
) -> np.ndarray:
    """Trilinear lookup of a periodic texture pyramid, with one pyramid level per image row.

    Args:
        pyramid (Sequence[np.ndarray]): Periodic textures ``(h_l, w_l, 3)``, finest first.
        cu (np.ndarray): ``(R, W)`` horizontal coordinates in level-0 texels (texel ``i`` spans
            ``[i, i + 1)``).
        cv (np.ndarray): ``(R, 1)`` or ``(R, W)`` vertical coordinates.
        level (np.ndarray): ``(R,)`` continuous pyramid level of each row (log2 of the
            footprint of a pixel in texels).

    Returns:
        np.ndarray: ``(R, W, 3)`` float32 samples.
    """
    cv = np.broadcast_to(cv, cu.shape)
    out = np.zeros(cu.shape + (3,), np.float32)
    top = len(pyramid) - 1
    level = np.clip(level, 0, top)
    base = np.minimum(np.floor(level).astype(np.int64), max(top - 1, 0))
    frac = (level - base).astype(np.float32)
    for lb in np.unique(base):
        rows = np.flatnonzero(base == lb)
        u, v, f = cu[rows], cv[rows], frac[rows][:, None, None]
        for li, weight in ((lb, 1 - f), (min(lb + 1, top), f)):
            tex = pyramid[li]
            scale = 2.0**-li
            mu = _wrap(u * scale - 0.5, tex.shape[1])
            mv = _wrap(v * scale - 0.5, tex.shape[0])
            out[rows] += weight * cv2.remap(
                tex, mu, mv, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP
            )
    return out


class _BackdropTile:
    """A backdrop photograph resized for a shot, mirrored to be horizontally periodic."""

    def __init__(self, shot: Shot, spec: VideoSpec) -> None:
        h, w = spec.size
        f0 = spec.focal
        # metres of wall to cover: from the ground up to the top of the frame, at every frame
        need = 0.0
        for t in range(shot.start, shot.end):
            cam = shot.camera(t - shot.start)
            z_rel = shot.wall - cam['cam_z']
            y_top = (0.0 - shot.horizon) / cam['z'] + cam['q']
            y_base = f0 * shot.cam_height / z_rel
            need = max(need, (y_base - y_top) * z_rel / f0)
        self.metres_per_px = shot.wall / f0  # one photo pixel = one canvas pixel at tau = 0
        photo = load_photo(shot.backdrop)
        labels = backdrop_labels(shot.backdrop)
        need_rows = 1.05 * need / self.metres_per_px
        rows = max(
            8,
            int(math.ceil(need_rows)),
            int(round(shot.backdrop_width * w * photo.shape[0] / photo.shape[1])),
        )
        cols = max(8, int(round(rows * photo.shape[1] / photo.shape[0])))
        # photo row at the base of the wall: the visible window lies inside the photo
        self.base_row = need_rows + shot.backdrop_row * (rows - need_rows)
        interp = cv2.INTER_AREA if rows < photo.shape[0] else cv2.INTER_LINEAR
        img = cv2.resize(photo, (cols, rows), interpolation=interp).astype(np.float32)
        lab = cv2.resize(labels, (cols, rows), interpolation=cv2.INTER_NEAREST)
        self.image = np.ascontiguousarray(np.concatenate([img, img[:, ::-1]], axis=1))
        self.labels = np.ascontiguousarray(np.concatenate([lab, lab[:, ::-1]], axis=1))
        self.rows, self.cols = rows, cols
        self.col0 = shot.backdrop_col * cols


def _warp_sprite(
    sprite: Sequence[np.ndarray], scale: float, ub: float, vb: float, size: Tuple[int, int]
) -> Optional[Tuple[int, int, np.ndarray]]:
    """Draw a sprite pyramid with its bottom centre at ``(ub, vb)``, ``scale`` px per texel.

    The two pyramid levels around the minification are blended (trilinear filtering), so the
    texture neither aliases nor pops when the object changes scale.

    Args:
        sprite (Sequence[np.ndarray]): Premultiplied RGBA pyramid, finest first.
        scale (float): Image pixels per level-0 texel.
        ub (float): Column of the sprite's bottom centre (continuous image coordinates).
        vb (float): Row of the sprite's bottom edge.
        size (tuple[int, int]): Frame size ``(H, W)``.

    Returns:
        tuple | None: ``(x0, y0, rgba)`` -- the drawn ``(h, w, 4)`` patch and its top-left
        pixel -- or None when the sprite misses the frame.
    """
    h, w = size
    hs, ws = sprite[0].shape[:2]
    x0 = max(int(math.floor(ub - 0.5 * scale * ws)) - 1, 0)
    x1 = min(int(math.ceil(ub + 0.5 * scale * ws)) + 1, w)
    y0 = max(int(math.floor(vb - scale * hs)) - 1, 0)
    y1 = min(int(math.ceil(vb)) + 1, h)
    if x1 <= x0 or y1 <= y0:
        return None
    level = float(np.clip(math.log2(1.0 / scale), 0, len(sprite) - 1)) if scale < 1 else 0.0
    l0 = int(math.floor(level))
    frac = level - l0
    out = np.zeros((y1 - y0, x1 - x0, 4), np.float32)
    for li, weight in ((l0, 1 - frac), (min(l0 + 1, len(sprite) - 1), frac)):
        if weight <= 0:
            continue
        tex = sprite[li]
        kx, ky = tex.shape[1] / ws, tex.shape[0] / hs
        m = np.array(
            [
                [kx / scale, 0, kx * ((x0 + 0.5 - ub) / scale + ws / 2) - 0.5],
                [0, ky / scale, ky * ((y0 + 0.5 - vb) / scale + hs) - 0.5],
            ],
            np.float64,
        )
        out += weight * cv2.warpAffine(
            tex,
            m,
            (x1 - x0, y1 - y0),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
    # nothing below the base line (magnified texels would bleed past it)
    below = np.arange(y0, y1) + 0.5 > vb
    out[below] = 0
    return x0, y0, out


def render_video(spec: VideoSpec) -> RenderedVideo:
    """Render a sampled video and its per-pixel class, instance and depth.

    Args:
        spec (VideoSpec): From :func:`sample_video`.

    Returns:
        RenderedVideo: Frames and ground truth.
    """
    h, w = spec.size
    t_total = spec.num_frames
    f0 = spec.focal
    frames = np.zeros((t_total, h, w, 3), np.uint8)
    semantic = np.zeros((t_total, h, w), np.uint8)
    instance = np.zeros((t_total, h, w), np.int32)
    depth = np.zeros((t_total, h, w), np.float32)
    focal = np.zeros(t_total, np.float64)
    horizon = np.zeros(t_total, np.float64)
    cam_height = np.zeros(t_total, np.float64)
    unoccluded: List[Dict[int, int]] = []
    noise_rng = np.random.default_rng(spec.noise_seed)
    xs = np.arange(w, dtype=np.float64) + 0.5 - w / 2  # pixel centres, from the image centre
    ys = np.arange(h, dtype=np.float64) + 0.5
    sky_id = CLASS_IDS['sky']

    for shot in spec.shots:
        tile = _BackdropTile(shot, spec)
        for t in range(shot.start, shot.end):
            tau = t - shot.start
            cam = shot.camera(tau)
            zoom = cam['z']
            focal[t], horizon[t], cam_height[t] = f0 * zoom, shot.horizon, shot.cam_height
            cx = xs / zoom + cam['p']
            cy = (ys - shot.horizon) / zoom + cam['q']
            z_rel_wall = shot.wall - cam['cam_z']
            y_wall = f0 * shot.cam_height / z_rel_wall
            img = np.zeros((h, w, 3), np.float32)
            sem = np.zeros((h, w), np.uint8)
            dep = np.zeros((h, w), np.float32)
            split = int(np.searchsorted(cy, y_wall, side='right'))  # first ground row

            # ground (rows split..h): bands of ground textures in perspective
            if split < h:
                d = f0 * shot.cam_height / cy[split:]
                gx = cx[None, :] * (d[:, None] / f0) + cam['cam_x']
                gz = d + cam['cam_z']
                g_img, g_sem = img[split:], sem[split:]
                for lo, hi, cls in shot.ground:
                    band = (gx >= lo) & (gx < hi)
                    if not band.any():
                        continue
                    _, mpt, _ = GROUND_TEXTURES[cls]
                    foot_x = d / (f0 * zoom) / mpt
                    foot_y = d * d / (f0 * shot.cam_height * zoom) / mpt
                    level = np.log2(np.maximum(np.maximum(foot_x, foot_y), 1.0)) - 0.5
                    # sample the band's bounding box only
                    rows = np.flatnonzero(band.any(axis=1))
                    cols = np.flatnonzero(band.any(axis=0))
                    rs, cs = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
                    cu = (gx[rs, cs] + shot.ground_offset[0]) / mpt
                    cv = -(gz[rs, None] + shot.ground_offset[1]) / mpt
                    color = _sample_ground(_ground_pyramid(cls), cu, cv, level[rs])
                    sub = band[rs, cs]
                    g_img[rs, cs][sub] = color[sub]
                    g_sem[rs, cs][sub] = CLASS_IDS[cls]
                dep[split:] = d[:, None]

            # backdrop (rows 0..split): the photograph on a vertical plane
            if split > 0:
                bx = cx[None, :] * (z_rel_wall / f0) + cam['cam_x']
                bh = (y_wall - cy[:split]) * (z_rel_wall / f0)
                col = _wrap(tile.col0 + bx / tile.metres_per_px - 0.5, 2 * tile.cols)
                row = np.clip(tile.base_row - bh / tile.metres_per_px - 0.5, 0, tile.rows - 1)
                col = np.ascontiguousarray(np.broadcast_to(col, (split, w)))
                row = np.ascontiguousarray(
                    np.broadcast_to(row[:, None], (split, w)), dtype=np.float32
                )
                img[:split] = cv2.remap(
                    tile.image, col, row, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP
                )
                blab = cv2.remap(
                    tile.labels, col, row, cv2.INTER_NEAREST, borderMode=cv2.BORDER_WRAP
                )
                sem[:split] = blab
                dep[:split] = np.where(blab == sky_id, 0.0, z_rel_wall)

            # objects, far to near
            inst = np.zeros((h, w), np.int32)
            drawn = []
            for placement in shot.objects:
                x, z, elev = placement.at(tau)
                z_rel = z - cam['cam_z']
                if z_rel < 0.5:
                    continue
                ident = placement.identity
                scale = zoom * f0 * ident.height / z_rel / ident.sprite[0].shape[0]
                if scale * ident.sprite[0].shape[0] > 8 * h:
                    continue
                ub = w / 2 + zoom * (f0 * (x - cam['cam_x']) / z_rel - cam['p'])
                vb = shot.horizon + zoom * (f0 * (shot.cam_height - elev) / z_rel - cam['q'])
                drawn.append((z_rel, ident.track_id, ident, scale, ub, vb))
            areas: Dict[int, int] = {}
            for z_rel, track_id, ident, scale, ub, vb in sorted(drawn, key=lambda d: (-d[0], d[1])):
                drawn_patch = _warp_sprite(ident.sprite, scale, ub, vb, (h, w))
                if drawn_patch is None:
                    continue
                x0, y0, rgba = drawn_patch
                win = (slice(y0, y0 + rgba.shape[0]), slice(x0, x0 + rgba.shape[1]))
                alpha = rgba[..., 3]
                img[win] = rgba[..., :3] + (1 - alpha[..., None]) * img[win]
                mask = alpha >= 0.5
                if not mask.any():
                    continue
                areas[track_id] = int(mask.sum())
                inst[win][mask] = track_id
                sem[win][mask] = CLASS_IDS[ident.cls]
                dep[win][mask] = z_rel

            noise = noise_rng.standard_normal(img.shape, dtype=np.float32) * spec.style.noise
            noisy = img * np.float32(cam['gain']) + noise
            frames[t] = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
            semantic[t], instance[t], depth[t] = sem, inst, dep
            unoccluded.append({k: v for k, v in areas.items() if v > 0})

    return RenderedVideo(
        frames=frames,
        semantic=semantic,
        instance=instance,
        depth=depth,
        track_classes={i.track_id: i.cls for i in spec.identities},
        unoccluded_area=unoccluded,
        focal=focal,
        horizon=horizon,
        cam_height=cam_height,
        shot_changes=spec.shot_changes,
        shots=[
            dict(
                start=s.start,
                end=s.end,
                backdrop=s.backdrop,
                ground=sorted({g[2] for g in s.ground}),
            )
            for s in spec.shots
        ],
    )
