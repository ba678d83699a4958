"""Write the DVPQ parity fixtures of ``tests/data/dvps`` (run once; the files are committed).

    python tests/data/dvps/make_fixtures.py

Everything comes from ``numpy.random.default_rng(seed)`` and simple geometry; no real data.
Layouts are those the ViP-DeepLab reference scripts read (see README.md next to this file):

cityscapes/
  video_sequence/val/{seq}_{frame}_{city}_000000_{n}_gtFine_instanceTrainIds.png  16-bit
  video_sequence/val/{seq}_{frame}_{city}_000000_{n}_depth.png                    16-bit, m*256
  pred_pan/{...}_leftImg8bit.png       RGB: R = class, G = instance
  pred_pan_no18/{...}_leftImg8bit.png  the same with class 18 predicted as 17 (no TP for 18)
  pred_depth/{...}_leftImg8bit.png     16-bit, m*256
semkitti/
  video_sequence/val/{seq}_{frame}_gtFine_class.png      8-bit, void 255
  video_sequence/val/{seq}_{frame}_gtFine_instance.png   16-bit
  video_sequence/val/{seq}_{frame}_depth_{focal}.png     16-bit, m*256
  pred_pan/{seq}_{frame}_cat.png (8-bit), {seq}_{frame}_ins.png (16-bit)
  pred_depth/{seq}_{frame}_depth.png                     16-bit, m*256

Both predictions under-estimate depth on part of the pixels (the Pillow >= 10.3 uint16 trap) and
have segments lying mostly on void ids other than the void id itself (the false-positive rule).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent
FOCAL = 718.8560180664062


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array)).save(path)


def _depth_gt(rng, h, w, invalid):
    rows = np.arange(h, dtype=np.float64)[:, None]
    depth = 4.0 + 40.0 * (1.0 - rows / h) + rng.uniform(0, 3, (h, w))
    depth[rng.random((h, w)) < invalid] = 0
    return depth


def _depth_pred(rng, gt_depth, h, w):
    """Relative errors: most small, some 0.1-0.3 and 0.3-0.7, signed, in blocks of 2x2."""
    kind = rng.choice(3, size=((h + 1) // 2, (w + 1) // 2), p=[0.6, 0.25, 0.15])
    kind = np.kron(kind, np.ones((2, 2), int))[:h, :w]
    mag = np.select(
        [kind == 0, kind == 1],
        [rng.uniform(0, 0.08, (h, w)), rng.uniform(0.12, 0.3, (h, w))],
        rng.uniform(0.3, 0.7, (h, w)),
    )
    sign = np.where(rng.random((h, w)) < 0.5, -1.0, 1.0)
    base = np.where(gt_depth > 0, gt_depth, 20.0)
    return np.clip(base * (1 + sign * mag), 0.5, 200)


def _to_png16(depth):
    return np.clip(np.rint(depth * 256), 0, 65535).astype(np.uint16)


def _cityscapes_frame(rng, t, seq):
    """GT classes/instances of one 24x40 frame: 11 stuff strips, 8 moving things, void."""
    h, w = 24, 40
    cls = np.zeros((h, w), np.int64)
    inst = np.zeros((h, w), np.int64)
    edges = np.linspace(0, w, 7).astype(int)
    for i in range(6):
        cls[:12, edges[i] : edges[i + 1]] = i
    edges = np.linspace(0, w, 6).astype(int)
    for i in range(5):
        cls[12:, edges[i] : edges[i + 1]] = 6 + i
    for j in range(8):  # things 11..18, track id j + 1 (seq 1: j + 11), moving right
        r, c = 2 + 10 * (j // 4), 1 + 10 * (j % 4) + (t + seq) % 3
        cls[r : r + 6, c : c + 6] = 11 + j
        inst[r : r + 6, c : c + 6] = j + 1 + 10 * seq
    cls[21:, :] = 32  # void band
    cls[0:3, 30:36] = 32
    inst[0:3, 30:36] = 1  # a void "crowd" id 32001
    return cls, inst


def _cityscapes_pred(rng, cls, inst, t, seq):
    pc, pi = cls.copy(), inst.copy()
    pc[pc == 32] = 10
    pi[cls == 32] = 0
    noise = rng.random(cls.shape) < 0.06
    pc[noise] = rng.integers(0, 19, noise.sum())
    pi[noise] = np.where(pc[noise] >= 11, rng.integers(1, 4, noise.sum()), 0)
    if seq == 0 and t >= 3:  # an id switch of the person track
        pi[(pc == 11) & (pi == 1)] = 7
    pc[21:24, 10:18], pi[21:24, 10:18] = 13, 9  # false positive on the void band
    pc[20, 10:12], pi[20, 10:12] = 13, 9
    pc[0:3, 30:36], pi[0:3, 30:36] = 12, 8  # false positive on the void crowd id 32001
    if t % 2 == 1:  # a poor stuff segment every other frame
        pc[12:16, 0:8] = 7
    return pc, pi


def make_cityscapes(out: Path, rng) -> None:
    gt_dir = out / 'video_sequence' / 'val'
    for seq in range(2):
        for t in range(6):
            stem = f'{seq:06d}_{t:06d}_testcity_000000_{5 * t:06d}'
            cls, inst = _cityscapes_frame(rng, t, seq)
            _save(
                gt_dir / f'{stem}_gtFine_instanceTrainIds.png',
                (cls * 1000 + inst).astype(np.uint16),
            )
            gt_depth = _depth_gt(rng, *cls.shape, invalid=0.1)
            _save(gt_dir / f'{stem}_depth.png', _to_png16(gt_depth))
            pc, pi = _cityscapes_pred(rng, cls, inst, t, seq)
            rgb = np.stack([pc, pi, np.zeros_like(pc)], axis=-1).astype(np.uint8)
            _save(out / 'pred_pan' / f'{stem}_leftImg8bit.png', rgb)
            no18 = rgb.copy()
            no18[..., 0][no18[..., 0] == 18] = 17
            _save(out / 'pred_pan_no18' / f'{stem}_leftImg8bit.png', no18)
            pd = _depth_pred(rng, gt_depth, *cls.shape)
            _save(out / 'pred_depth' / f'{stem}_leftImg8bit.png', _to_png16(pd))


def _semkitti_frame(rng, t, seq):
    """18x30 frame; labels on every third row only (a LiDAR-like pattern), sky unlabelled."""
    h, w = 18, 30
    cls = np.zeros((h, w), np.int64)
    inst = np.zeros((h, w), np.int64)
    edges = np.linspace(0, w, 12).astype(int)
    for i in range(11):
        cls[6:, edges[i] : edges[i + 1]] = 8 + i
    cls[:6, :] = 255
    for j in range(8):
        r, c = 6 + 6 * (j // 4), 1 + 7 * (j % 4) + (t % 2)
        cls[r : r + 5, c : c + 5] = j
        inst[r : r + 5, c : c + 5] = j + 1 + 20 * seq
    cls[:4, 20:26], inst[:4, 20:26] = 255, 5  # void with an instance id (255 * 2**20 + 5)
    sparse = np.zeros((h, w), bool)
    sparse[::3] = True
    sparse[:4, 20:26] = True
    cls[~sparse], inst[~sparse] = 255, 0
    return cls, inst, sparse


def _semkitti_pred(rng, t, seq):
    h, w = 18, 30  # the scene of _semkitti_frame, predicted densely
    dense_c, dense_i = np.zeros((h, w), np.int64), np.zeros((h, w), np.int64)
    edges = np.linspace(0, w, 12).astype(int)
    for i in range(11):
        dense_c[:, edges[i] : edges[i + 1]] = 8 + i
    for j in range(8):
        r, c = 6 + 6 * (j // 4), 1 + 7 * (j % 4) + (t % 2)
        dense_c[r : r + 5, c : c + 5] = j
        dense_i[r : r + 5, c : c + 5] = j + 1 + 20 * seq + (30 if (j == 2 and t >= 5) else 0)
    noise = rng.random((h, w)) < 0.05
    dense_c[noise] = rng.integers(0, 19, noise.sum())
    dense_i[noise] = np.where(dense_c[noise] < 8, rng.integers(1, 4, noise.sum()), 0)
    dense_c[:4, 20:26], dense_i[:4, 20:26] = 3, 9  # on the void-with-instance pixels
    return dense_c, dense_i


def make_semkitti(out: Path, rng) -> None:
    gt_dir = out / 'video_sequence' / 'val'
    for seq in (1, 2):
        for t in range(11):
            stem = f'{seq:06d}_{t:06d}'
            cls, inst, sparse = _semkitti_frame(rng, t, seq)
            _save(gt_dir / f'{stem}_gtFine_class.png', cls.astype(np.uint8))
            _save(gt_dir / f'{stem}_gtFine_instance.png', inst.astype(np.uint16))
            gt_depth = _depth_gt(rng, *cls.shape, invalid=0.0) * sparse
            gt_depth[cls == 255] = 0
            _save(gt_dir / f'{stem}_depth_{FOCAL!r}.png', _to_png16(gt_depth))
            pc, pi = _semkitti_pred(rng, t, seq)
            _save(out / 'pred_pan' / f'{stem}_cat.png', pc.astype(np.uint8))
            _save(out / 'pred_pan' / f'{stem}_ins.png', pi.astype(np.uint16))
            pd = _depth_pred(rng, gt_depth, *cls.shape)
            _save(out / 'pred_depth' / f'{stem}_depth.png', _to_png16(pd))


def main() -> None:
    for name, make, seed in (('cityscapes', make_cityscapes, 0), ('semkitti', make_semkitti, 1)):
        out = ROOT / name
        if out.exists():
            shutil.rmtree(out)
        make(out, np.random.default_rng(seed))


if __name__ == '__main__':
    main()
