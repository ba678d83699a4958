"""StreamDEQEncoderDecoder: the logits' upsampling convention is a config option."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmseg.structures import SegDataSample

from mmvideoeq.testing import shrink_model_cfg

ROOT = Path(__file__).resolve().parents[2]
CFG = ROOT / 'configs' / 'streamdeq_seg' / 'mdeq-xl-broyden27_cityscapes-clips.py'


@pytest.mark.parametrize('align', [True, False])
def test_upsampling_follows_upsample_align_corners(align):
    from mmvideoeq.registry import MODELS
    from mmvideoeq.utils import register_all_modules

    register_all_modules()
    cfg = Config.fromfile(str(CFG))
    model_cfg = shrink_model_cfg(cfg.model.to_dict())
    assert model_cfg['upsample_align_corners'] is True  # locuslab/mdeq validate()
    model_cfg['upsample_align_corners'] = align
    model = MODELS.build(model_cfg).eval()
    assert model.decode_head.align_corners is True  # the head's own resize is unchanged
    logits = torch.randn(1, 19, 5, 7, generator=torch.Generator().manual_seed(0))
    sample = SegDataSample(
        metainfo=dict(img_shape=(5, 7), ori_shape=(17, 23), padding_size=[0] * 4)
    )
    out = model.postprocess_result(logits, [sample])[0]
    want = F.interpolate(logits, size=(17, 23), mode='bilinear', align_corners=align)
    torch.testing.assert_close(out.seg_logits.data, want[0])
    other = F.interpolate(logits, size=(17, 23), mode='bilinear', align_corners=not align)
    assert (other[0] - out.seg_logits.data).abs().max() > 1e-3
