"""Draw the predictions of video frames during testing (``tools/test.py --show/--show-dir``)."""

from __future__ import annotations

import inspect
import os.path as osp
from typing import Sequence

import mmcv
from mmengine.fileio import get
from mmengine.hooks import Hook
from mmengine.utils import mkdir_or_exist
from mmengine.visualization import Visualizer

from mmvideoeq.registry import HOOKS
from mmvideoeq.structures import SKIP_KEY


@HOOKS.register_module()
class VideoVisualizationHook(Hook):
    """Draws each tested frame with its prediction, for detection and segmentation alike.

    Written because mmdet's ``DetVisualizationHook`` and mmseg's ``SegVisualizationHook`` name
    the output after the image's file name only: the frames of different videos (all called
    ``000000.JPEG`` in ImageNet-VID) overwrite each other, and a streaming sweep runs every frame
    once per setting. Here the file is ``<test_out_dir>/<setting>/<video_id>/<file name>``
    (``<setting>`` only under the ``StreamingTestLoop``: ``stream@2``, ``cold@2``, ``full``).
    Frames that were not evaluated (failed to load, diverged) are not drawn. The drawing is the
    configured visualizer's (``mmdet.DetLocalVisualizer`` or ``mmseg.SegLocalVisualizer``).

    Args:
        draw: Draw at all (``--show``/``--show-dir`` switch it on).
        interval: Draw every ``interval``-th frame.
        score_thr: Score threshold of drawn boxes (detection).
        show: Show in a window.
        wait_time: Seconds a shown frame stays.
        test_out_dir: Output folder (relative to the work dir unless absolute).
    """

    def __init__(
        self,
        draw: bool = False,
        interval: int = 1,
        score_thr: float = 0.3,
        show: bool = False,
        wait_time: float = 0.0,
        test_out_dir: str | None = None,
    ) -> None:
        self.draw, self.interval, self.score_thr = draw, int(interval), score_thr
        self.show, self.wait_time, self.test_out_dir = show, wait_time, test_out_dir
        self._count = 0

    def _out_dir(self, runner) -> str | None:
        if self.test_out_dir is None:
            return None
        root = self.test_out_dir
        if not osp.isabs(root):
            root = osp.join(runner.work_dir, root)
        setting = getattr(getattr(runner, '_test_loop', None), 'current_setting', None)
        return osp.join(root, setting) if setting else root

    def after_test_iter(self, runner, batch_idx: int, data_batch: dict, outputs: Sequence) -> None:
        if not self.draw:
            return
        visualizer = Visualizer.get_current_instance()
        takes_thr = 'pred_score_thr' in inspect.signature(visualizer.add_datasample).parameters
        out_dir = self._out_dir(runner)
        for sample in outputs:
            self._count += 1
            if self._count % self.interval or sample.metainfo.get(SKIP_KEY):
                continue
            img_path = sample.img_path
            img = mmcv.imfrombytes(get(img_path), channel_order='rgb')
            video = str(sample.metainfo.get('video_id', ''))
            out_file = None
            if out_dir is not None:
                mkdir_or_exist(osp.join(out_dir, video))
                out_file = osp.join(out_dir, video, osp.basename(img_path))
            kw = dict(pred_score_thr=self.score_thr) if takes_thr else {}
            visualizer.add_datasample(
                f'{video}/{osp.basename(img_path)}',
                img,
                data_sample=sample,
                draw_gt=False,
                show=self.show,
                wait_time=self.wait_time,
                out_file=out_file,
                step=self._count,
                **kw,
            )
