"""The loss of an mmdet two-stage detector on features it did not extract itself."""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import Tensor

__all__ = ['two_stage_loss']


def two_stage_loss(detector, x: Sequence[Tensor], data_samples: list) -> dict:
    """RPN and RoI-head losses of ``detector`` on pyramid features ``x``.

    mmdet's ``TwoStageDetector.loss`` after its ``extract_feat`` call (mmdet 3.3,
    ``mmdet/models/detectors/two_stage.py``, Apache-2.0), written out because mmdet offers no entry
    point that takes the features: training on carried states computes them from a streamed state.

    Args:
        detector: A built mmdet two-stage detector (``rpn_head``, ``roi_head``, ``train_cfg``).
        x: Pyramid features, ``num_outs`` maps ``(B, C, H_l, W_l)``.
        data_samples: The ``B`` data samples with ``gt_instances``.

    Returns:
        dict: mmdet's loss dict (``loss_rpn_cls``, ``loss_rpn_bbox``, ``loss_cls``, ...).
    """
    x = tuple(x)
    losses = dict()
    if detector.with_rpn:
        proposal_cfg = detector.train_cfg.get('rpn_proposal', detector.test_cfg.rpn)
        rpn_samples = copy.deepcopy(data_samples)
        for sample in rpn_samples:  # the RPN is class-agnostic
            sample.gt_instances.labels = torch.zeros_like(sample.gt_instances.labels)
        rpn_losses, rpn_results = detector.rpn_head.loss_and_predict(
            x, rpn_samples, proposal_cfg=proposal_cfg
        )
        for key in list(rpn_losses):
            if 'loss' in key and 'rpn' not in key:
                rpn_losses[f'rpn_{key}'] = rpn_losses.pop(key)
        losses.update(rpn_losses)
    else:
        if data_samples[0].get('proposals', None) is None:
            raise ValueError('a detector without RPN needs proposals in its data samples')
        rpn_results = [sample.proposals for sample in data_samples]
    losses.update(detector.roi_head.loss(x, rpn_results, data_samples))
    return losses
