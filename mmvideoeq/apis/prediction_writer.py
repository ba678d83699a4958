"""Write depth-aware video panoptic predictions in the reference layouts.

The layouts are those ViP-DeepLab's evaluation scripts read, and
``tools/analysis_tools/eval_dvps.py`` with them (``docs/dvps.md``)::

    cityscapes_dvps  OUT/panoptic/{image name}   8-bit RGB: R = class, G = instance, B = 0
                     OUT/depth/{image name}      16-bit, metres * 256
    semkitti_dvps    OUT/panoptic/{seq}_{frame}_cat.png    8-bit class
                     OUT/panoptic/{seq}_{frame}_ins.png    16-bit instance
                     OUT/depth/{seq}_{frame}_depth.png     16-bit, metres * 256

``{image name}`` is the frame's ``{seq}_{frame}_{city}_{a}_{b}_leftImg8bit.png``.

**Instance ids that do not fit.** Cityscapes-DVPS stores the instance id in 8 bits, while a long
stream's sequence ids can grow past 255 with few tracks alive. Per sequence, the writer keeps
an id that fits, and gives any other the smallest instance id of its class that no track of the
sequence has shown within the last ``reuse_gap`` frames (default 20, the longest VPQ window of
the DVPS protocols): a track keeps its file id while it is shown, and no VPQ window of up to
``reuse_gap`` frames sees one file id on two tracks. Only when more ids of one class are in use
within ``reuse_gap`` frames than the format holds is it an error, naming the frame and the count.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mmvideoeq.datasets.dvps_io import parse_frame_name

__all__ = ['PREDICTION_FORMATS', 'DVPSPredictionWriter']

#: Per layout: the largest class id and instance id the files hold.
PREDICTION_FORMATS = {
    'cityscapes_dvps': dict(max_class=255, max_instance=255),
    'semkitti_dvps': dict(max_class=255, max_instance=65535),
}


@dataclass
class _SequenceIds:
    """File instance ids of one sequence: ``{model panoptic id: (file id, last frame shown)}``."""

    frame: int = -1
    frame_id: int | None = None
    ids: dict[int, tuple[int, int]] = field(default_factory=dict)


class DVPSPredictionWriter:
    """Write a stream's predictions, frame by frame, in a reference layout.

    Args:
        fmt: ``'cityscapes_dvps'`` or ``'semkitti_dvps'``.
        out_dir: Output folder; predictions go to ``out_dir/panoptic`` and ``out_dir/depth``
            (the ``--pan-dir`` and ``--depth-dir`` of ``eval_dvps.py``).
        reuse_gap: Frames a file instance id must stay unused before another track takes it.
        overwrite: Write into prediction folders that already hold files (otherwise an error:
            stale files of another run would be evaluated with the new ones).
    """

    def __init__(self, fmt: str, out_dir, *, reuse_gap: int = 20, overwrite: bool = False) -> None:
        if fmt not in PREDICTION_FORMATS:
            raise ValueError(f'format must be one of {tuple(PREDICTION_FORMATS)}, got {fmt!r}')
        if isinstance(reuse_gap, bool) or not isinstance(reuse_gap, int) or reuse_gap < 1:
            raise ValueError(f'reuse_gap must be an int >= 1, got {reuse_gap!r}')
        self.fmt = fmt
        self.reuse_gap = reuse_gap
        self.max_class = PREDICTION_FORMATS[fmt]['max_class']
        self.max_instance = PREDICTION_FORMATS[fmt]['max_instance']
        self.pan_dir = Path(out_dir) / 'panoptic'
        self.depth_dir = Path(out_dir) / 'depth'
        for folder in (self.pan_dir, self.depth_dir):
            if folder.is_dir() and any(folder.iterdir()) and not overwrite:
                raise FileExistsError(
                    f'{folder} already holds files; choose another output folder or overwrite '
                    '(stale predictions would be evaluated with the new ones)'
                )
            folder.mkdir(parents=True, exist_ok=True)
        self._sequences: dict[str, _SequenceIds] = {}

    def write(self, img_path, panoptic, depth=None, *, label_divisor: int) -> dict[str, Path]:
        """Write one frame (frames of a sequence in increasing frame order).

        Args:
            img_path: The frame's image (its name gives the sequence, frame and file names).
            panoptic: ``(H, W)`` (or ``(1, H, W)``) ints ``class * label_divisor + instance``,
                with sequence-consistent instance ids.
            depth: ``(H, W)`` metres, or None (no depth file).
            label_divisor: The encoding of ``panoptic``.

        Returns:
            dict: The written files (``'panoptic'`` / ``'class'``, ``'instance'``, ``'depth'``).
        """
        name = Path(str(img_path)).name
        match = parse_frame_name(name, self.fmt)
        if match is None or match['suffix'] != 'leftImg8bit':
            raise ValueError(
                f'{img_path}: not a frame of the {self.fmt} layout (expected '
                f'{self._expected_name()}); the file names carry the sequence and frame'
            )
        pan = _as_array(panoptic, 'panoptic', name).astype(np.int64)
        cls, inst = pan // label_divisor, pan % label_divisor
        if pan.size and (pan.min() < 0 or cls.max() > self.max_class):
            bad = pan.min() if pan.min() < 0 else cls.max()
            raise ValueError(
                f'{name}: class id {bad} does not fit the {self.fmt} format (0..{self.max_class})'
            )
        inst = self._file_instances(match, name, cls, inst, label_divisor)
        stem = name[: -len('_leftImg8bit.png')]
        if self.fmt == 'cityscapes_dvps':
            rgb = np.stack([cls, inst, np.zeros_like(cls)], -1).astype(np.uint8)
            out = {'panoptic': self._save(self.pan_dir / name, rgb)}
        else:
            out = {
                'class': self._save(self.pan_dir / f'{stem}_cat.png', cls.astype(np.uint8)),
                'instance': self._save(self.pan_dir / f'{stem}_ins.png', inst.astype(np.uint16)),
            }
        if depth is not None:
            d = _as_array(depth, 'depth', name).astype(np.float64)
            if d.shape != pan.shape:
                raise ValueError(f'{name}: depth {d.shape} and panoptic {pan.shape} differ in size')
            if not np.isfinite(d).all():
                raise ValueError(f'{name}: the depth prediction has NaN or infinite values')
            png = np.clip(np.round(d * 256.0), 1, 65535).astype(np.uint16)  # 0 would be invalid
            depth_name = name if self.fmt == 'cityscapes_dvps' else f'{stem}_depth.png'
            out['depth'] = self._save(self.depth_dir / depth_name, png)
        return out

    def write_sample(self, sample, *, label_divisor: int) -> dict[str, Path]:
        """:meth:`write` a data sample's ``pred_panoptic`` (and ``pred_depth``, if any); its
        ``img_path`` metainfo names the files."""
        if 'pred_panoptic' not in sample:
            raise ValueError(
                f'{sample.metainfo.get("img_path", "the sample")}: no pred_panoptic to write'
            )
        depth = sample.pred_depth.data if 'pred_depth' in sample else None
        return self.write(
            sample.metainfo['img_path'],
            sample.pred_panoptic.data,
            depth,
            label_divisor=label_divisor,
        )

    def _expected_name(self) -> str:
        if self.fmt == 'cityscapes_dvps':
            return '{seq}_{frame}_{city}_{a}_{b}_leftImg8bit.png'
        return '{seq}_{frame}_leftImg8bit.png'

    def _file_instances(self, match, name, cls, inst, div) -> np.ndarray:
        """The frame's instance ids as stored (see the module docstring)."""
        seq = self._sequences.setdefault(match['seq'], _SequenceIds())
        frame_id = int(match['frame'])
        if seq.frame_id is not None and frame_id <= seq.frame_id:
            raise ValueError(
                f'{name}: frame {frame_id} of sequence {match["seq"]} comes after frame '
                f'{seq.frame_id}; write the frames of a sequence in order'
            )
        t = seq.frame + 1
        ids = {p: v for p, v in seq.ids.items() if t - v[1] < self.reuse_gap}
        shown = np.unique((cls * div + inst)[inst > 0])
        busy = {(p // div, f) for p, (f, _) in ids.items()}
        for p in (int(x) for x in shown):
            c, i = divmod(p, div)
            if p in ids:
                ids[p] = (ids[p][0], t)
                continue
            f = i if i <= self.max_instance and (c, i) not in busy else None
            if f is None:
                f = next((j for j in range(1, self.max_instance + 1) if (c, j) not in busy), None)
            if f is None:
                alive = sum(b[0] == c for b in busy)
                alive += sum(int(q) // div == c and int(q) not in ids for q in shown)
                raise ValueError(
                    f'{name} (frame {frame_id} of sequence {match["seq"]}): {alive} instance ids '
                    f'of class {c} are in use within the last {self.reuse_gap} frames, the '
                    f'{self.fmt} format holds {self.max_instance} per class'
                )
            busy.add((c, f))
            ids[p] = (f, t)
        seq.frame, seq.frame_id, seq.ids = t, frame_id, ids
        if not len(shown):
            return inst
        lut_keys = shown
        lut_vals = np.array([ids[int(p)][0] for p in shown])
        pos = np.searchsorted(lut_keys, cls * div + inst)
        hit = (inst > 0) & (pos < len(lut_keys))
        out = inst.copy()
        out[hit] = lut_vals[pos[hit]]
        return out

    @staticmethod
    def _save(path: Path, array: np.ndarray) -> Path:
        tmp = path.with_name(f'.{path.name}.tmp')
        try:
            Image.fromarray(np.ascontiguousarray(array)).save(tmp, format='PNG')
            os.replace(tmp, path)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise OSError(f'{path}: could not write the prediction ({err})') from err
        return path


def _as_array(x, what: str, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 2:
        raise ValueError(f'{name}: the {what} prediction must be (H, W), got shape {x.shape}')
    return x
