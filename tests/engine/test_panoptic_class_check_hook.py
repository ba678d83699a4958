"""PanopticClassCheckHook: a model whose class set differs from the dataset's is refused."""

from types import SimpleNamespace

import pytest
from mmengine.runner import BaseLoop

from mmvideoeq.class_names import (
    CITYSCAPES_DVPS_CLASSES,
    CITYSCAPES_DVPS_THING_IDS,
    SEMKITTI_DVPS_THING_IDS,
)
from mmvideoeq.engine.hooks import PanopticClassCheckHook


class _Loop(BaseLoop):
    def run(self):  # pragma: no cover - never run
        pass


def _runner(head, meta):
    runner = SimpleNamespace(model=SimpleNamespace(decode_head=head))
    loader = SimpleNamespace(dataset=SimpleNamespace(metainfo=meta))
    runner._test_loop = _Loop(runner, loader)
    return runner


CITY = dict(
    classes=CITYSCAPES_DVPS_CLASSES,
    thing_ids=CITYSCAPES_DVPS_THING_IDS,
    label_divisor=1000,
    ignore_label=32,
)


def _head(**kw):
    base = dict(
        num_classes=19, thing_ids=CITYSCAPES_DVPS_THING_IDS, label_divisor=1000, ignore_label=32
    )
    return SimpleNamespace(**{**base, **kw})


def test_matching_class_set_passes():
    PanopticClassCheckHook().before_test(_runner(_head(), CITY))


@pytest.mark.parametrize(
    'change, what',
    [
        (dict(thing_ids=SEMKITTI_DVPS_THING_IDS), 'thing_ids'),
        (dict(num_classes=20), 'classes: model 20 vs dataset 19'),
        (dict(label_divisor=65536), 'label_divisor'),
        (dict(ignore_label=255), 'ignore_label'),
    ],
)
def test_mismatch_is_an_error(change, what):
    with pytest.raises(ValueError, match=what):
        PanopticClassCheckHook().before_test(_runner(_head(**change), CITY))


def test_dataset_without_class_keys_is_not_checked():
    PanopticClassCheckHook().before_test(_runner(_head(num_classes=3), {}))
