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
from mmvideoeq.structures import SKIP_KEY, STREAM_SETTING_KEY


@HOOKS.register_module()
class VideoVisualizationHook(Hook):
    """Draws each tested frame with its prediction, for detection and segmentation alike.

    Written because mmdet's ``DetVisualizationHook`` and mmseg's ``SegVisualizationHook`` name
    the output after the image's file name only: the frames of different videos (all called
    ``000000.JPEG`` in ImageNet-VID) overwrite each other, and a streaming sweep runs every frame
    once per setting. Here the file is ``<test_out_dir>/<setting>/<video_id>/<file name>``
    (``<setting>``, e.g. ``stream@2``, ``cold@2``, ``full``, is read from each prediction's
    metainfo key :data:`~mmvideoeq.structures.STREAM_SETTING_KEY`, which the
    ``StreamingTestLoop`` writes; absent under the plain test loop). Frames that were not evaluated
    (failed to load, diverged) are not drawn. The drawing is the configured visualizer's
    (``DetStuffLocalVisualizer``, ``mmseg.SegLocalVisualizer`` or ``DVPSLocalVisualizer``).

    Class names: when the visualizer has no ``dataset_meta['classes']`` at ``before_test`` (the
    streaming loop, unlike mmengine's ``TestLoop``, does not set it), the test dataset's
    ``metainfo`` is given to it, so labels are drawn by name, never as ``class 14``.

    Args:
        draw: Draw at all (``--show``/``--show-dir`` switch it on).
        interval: Draw every ``interval``-th frame.
        score_thr: Score threshold of drawn boxes (detection).
        draw_gt: Also draw the ground truth (mmdet: ground truth | prediction side by side; DVPS:
            a ground-truth row under the prediction's).
        show: Show in a window.
        wait_time: Seconds a shown frame stays.
        test_out_dir: Output folder (relative to the work dir unless absolute).
    """

    def __init__(
        self,
        draw: bool = False,
        interval: int = 1,
        score_thr: float = 0.3,
        draw_gt: bool = False,
        show: bool = False,
        wait_time: float = 0.0,
        test_out_dir: str | None = None,
    ) -> None:
        self.draw, self.interval, self.score_thr = draw, int(interval), score_thr
        self.draw_gt = bool(draw_gt)
        self.show, self.wait_time, self.test_out_dir = show, wait_time, test_out_dir
        self._count = 0

    def before_test(self, runner) -> None:
        if not self.draw:
            return
        visualizer = Visualizer.get_current_instance()
        if (getattr(visualizer, 'dataset_meta', None) or {}).get('classes'):
            return
        loop = getattr(runner, '_test_loop', None)
        dataset = getattr(getattr(loop, 'dataloader', None), 'dataset', None)
        meta = getattr(dataset, 'metainfo', None)
        if meta:
            visualizer.dataset_meta = dict(meta)

    def _out_dir(self, runner, sample) -> str | None:
        if self.test_out_dir is None:
            return None
        root = self.test_out_dir
        if not osp.isabs(root):
            root = osp.join(runner.work_dir, root)
        setting = sample.metainfo.get(STREAM_SETTING_KEY)
        return osp.join(root, str(setting)) if setting else root

    def after_test_iter(self, runner, batch_idx: int, data_batch: dict, outputs: Sequence) -> None:
        if not self.draw:
            return
        visualizer = Visualizer.get_current_instance()
        takes_thr = 'pred_score_thr' in inspect.signature(visualizer.add_datasample).parameters
        for sample in outputs:
            self._count += 1
            if self._count % self.interval or sample.metainfo.get(SKIP_KEY):
                continue
            img_path = sample.img_path
            img = mmcv.imfrombytes(get(img_path), channel_order='rgb')
            video = str(sample.metainfo.get('video_id', ''))
            out_file, out_dir = None, self._out_dir(runner, sample)
            if out_dir is not None:
                mkdir_or_exist(osp.join(out_dir, video))
                out_file = osp.join(out_dir, video, osp.basename(img_path))
            kw = dict(pred_score_thr=self.score_thr) if takes_thr else {}
            visualizer.add_datasample(
                f'{video}/{osp.basename(img_path)}',
                img,
                data_sample=sample,
                draw_gt=self.draw_gt,
                show=self.show,
                wait_time=self.wait_time,
                out_file=out_file,
                step=self._count,
                **kw,
            )
