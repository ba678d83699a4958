"""Checkpoint safety under torch's weights-only unpickler."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from mmvideoeq.utils.checkpoint import (
    UnsafeCheckpointError,
    mmengine_checkpoint_safe_globals,
    safe_load_checkpoint,
)


class _Payload:
    """Pickles as a call to ``os.system``: what a malicious checkpoint would carry."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def _mmengine_like_checkpoint():
    from mmengine.logging import MessageHub

    hub = MessageHub.get_instance('test_checkpoint_hub')
    hub.update_scalar('train/loss', np.float64(0.5))
    hub.update_scalar('train/loss', 0.25)
    hub.update_info('iter', 3)
    return dict(
        meta=dict(
            epoch=1,
            iter=3,
            seed=np.int64(7),
            lr=np.float32(0.01),
            dataset_meta=dict(classes=('a', 'b'), palette=[(0, 0, 0)]),
        ),
        state_dict=dict(w=torch.arange(4.0)),
        message_hub=hub.state_dict(),
        arr=np.arange(6, dtype=np.int64).reshape(2, 3),
    )


def test_mmengine_checkpoint_loads_weights_only(tmp_path):
    path = tmp_path / 'ok.pth'
    torch.save(_mmengine_like_checkpoint(), path)
    ckpt = safe_load_checkpoint(str(path))
    assert torch.equal(ckpt['state_dict']['w'], torch.arange(4.0))
    assert ckpt['meta']['seed'] == 7
    np.testing.assert_array_equal(ckpt['arr'], np.arange(6).reshape(2, 3))
    buf = ckpt['message_hub']['log_scalars']['train/loss']
    assert buf.current() == 0.25
    assert buf.mean(2) == pytest.approx(0.375)


def test_plain_weights_only_load_needs_the_allow_list(tmp_path):
    """In a fresh process (no allow-list) torch refuses the same file: the list is needed."""
    path = tmp_path / 'ok.pth'
    torch.save(_mmengine_like_checkpoint(), path)
    code = textwrap.dedent(f"""
        import pickle, torch
        try:
            torch.load({str(path)!r}, weights_only=True)
        except pickle.UnpicklingError:
            print('REFUSED')
        """)
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert 'REFUSED' in out.stdout, out.stderr


def test_arbitrary_callable_is_refused(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save(dict(state_dict=dict(w=torch.zeros(1)), x=_Payload(marker)), path)
    with pytest.raises(UnsafeCheckpointError, match=r'refused to load checkpoint .*system'):
        safe_load_checkpoint(str(path))
    assert not marker.exists(), 'the pickled callable must never run'


def test_allow_list_is_specific():
    names = {
        t[1] if isinstance(t, tuple) else f'{t.__module__}.{t.__qualname__}'
        for t in mmengine_checkpoint_safe_globals()
    }
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in names
    assert not any(n.startswith(('os.', 'posix.', 'subprocess.')) for n in names)
    # the only builtin is getattr, bound to a function restricted to HistoryBuffer methods
    assert [n for n in names if n.startswith('builtins.')] == ['builtins.getattr']


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='checkpoint file not found'):
        safe_load_checkpoint(str(tmp_path / 'nope.pth'))


def test_getattr_is_restricted_to_history_buffer_statistics():
    from mmengine.logging.history_buffer import HistoryBuffer

    from mmvideoeq.utils.checkpoint import _history_buffer_method

    assert _history_buffer_method(HistoryBuffer, 'mean') is HistoryBuffer.mean
    import pickle

    with pytest.raises(pickle.UnpicklingError, match='not a HistoryBuffer statistics'):
        _history_buffer_method(os, 'system')
    with pytest.raises(pickle.UnpicklingError, match='not a HistoryBuffer statistics'):
        _history_buffer_method(HistoryBuffer, '__init__')
