"""No checkpoint scheme runs code: URLs, ``torchvision://``, ``open-mmlab://``, ``mmcls://``,
``pavi://`` and ``s3://`` are loaded weights-only through every entry point (mmengine's
``load_from`` / ``--resume`` / ``Pretrained`` init, MDEQ's ``load_pretrained``, ``load_weights``,
the StreamingInferencer, tools/train.py and tools/test.py).

The malicious file sits where each scheme resolves to (torch.hub's cache, ``TORCH_HOME`` pointed
at a temporary folder; mmengine's ``.json`` tables give the URLs), so the code under test never
needs the network. Its pickle creates a marker file when unpickled without ``weights_only``.
"""

import importlib.util
import json
import os
import sys
import types
from pathlib import Path

import mmengine
import pytest
import torch
from mmengine.config import Config, ConfigDict

from mmvideoeq.utils import register_all_modules
from mmvideoeq.utils.checkpoint import UnsafeCheckpointError, load_weights

ROOT = Path(__file__).resolve().parents[2]
HUB = Path(mmengine.__path__[0]) / 'hub'


class _Evil:
    """Pickles as a call that creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def _url_of(table: str, name: str) -> str:
    return json.loads((HUB / table).read_text())[name]


#: scheme path -> the URL it resolves to (mmengine's tables, read here independently)
URLS = {
    'https://example.com/models/evil-0123abcd.pth': 'https://example.com/models/evil-0123abcd.pth',
    'http://example.com/evil.pth': 'http://example.com/evil.pth',
    'torchvision://resnet18': _url_of('torchvision_0.12.json', 'resnet18'),
    'modelzoo://resnet18': _url_of('torchvision_0.12.json', 'resnet18'),
    'open-mmlab://resnet18_v1c': _url_of('openmmlab.json', 'resnet18_v1c'),
    'openmmlab://resnet18_v1c': _url_of('openmmlab.json', 'resnet18_v1c'),
    'mmcls://resnet18': _url_of('mmcls.json', 'resnet18'),
}


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A torch hub cache in ``tmp_path``; ``put(url, obj)`` saves ``obj`` where torch.hub keeps
    ``url``; ``marker`` must never appear."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')  # must not matter either
    cache = tmp_path / 'torch_home' / 'hub' / 'checkpoints'
    cache.mkdir(parents=True)
    marker = tmp_path / 'PWNED'
    register_all_modules(init_default_scope=False)

    def put(url, obj=None):
        path = cache / url.rsplit('/', 1)[-1]
        torch.save(obj if obj is not None else _evil_ckpt(marker), path)
        return path

    ns = types.SimpleNamespace(cache=cache, marker=marker, put=put, tmp=tmp_path)
    yield ns
    assert not marker.exists(), 'a pickled callable ran'


def _evil_ckpt(marker):
    return dict(state_dict=dict(w=torch.zeros(2)), meta=dict(x=_Evil(marker)))


def test_every_registered_scheme_loads_weights_only():
    from mmengine.runner.checkpoint import CheckpointLoader

    from mmvideoeq.utils.checkpoint_schemes import (
        SAFE_CHECKPOINT_SCHEMES,
        install_safe_checkpoint_loader,
    )

    register_all_modules(init_default_scope=False)
    for prefix, loader in CheckpointLoader._schemes.items():
        assert loader is SAFE_CHECKPOINT_SCHEMES.get(prefix), prefix
    # a scheme another library registers is refused, never passed to its loader
    CheckpointLoader.register_scheme('foo://', loader=lambda f, m=None: 1 / 0, force=True)
    try:
        install_safe_checkpoint_loader()
        with pytest.raises(UnsafeCheckpointError, match="scheme 'foo://' has no weights-only"):
            CheckpointLoader.load_checkpoint('foo://x.pth')
    finally:
        CheckpointLoader._schemes.pop('foo://')


@pytest.mark.parametrize('path', sorted(URLS))
def test_url_schemes_load_the_hub_cache_weights_only(hub, path):
    from mmengine.runner.checkpoint import _load_checkpoint

    hub.put(URLS[path])
    with pytest.raises(UnsafeCheckpointError, match='refused to load checkpoint'):
        _load_checkpoint(path, map_location='cpu')
    # a plain checkpoint in the same place loads (mmcls:// keeps the backbone keys, stripped)
    hub.put(URLS[path], dict(state_dict={'backbone.w': torch.arange(3.0)}))
    state = _load_checkpoint(path, map_location='cpu')['state_dict']
    key = 'w' if path.startswith('mmcls://') else 'backbone.w'
    assert torch.equal(state[key], torch.arange(3.0))


def test_pavi_and_s3_load_weights_only(hub, monkeypatch):
    from mmengine.runner.checkpoint import _load_checkpoint

    evil = hub.tmp / 'evil.pth'
    torch.save(_evil_ckpt(hub.marker), evil)

    class Model:
        name = 'evil.pth'

        @staticmethod
        def download(dst):
            Path(dst).write_bytes(evil.read_bytes())

    pavi = types.ModuleType('pavi')
    pavi.modelcloud = types.SimpleNamespace(get=lambda path: Model)
    monkeypatch.setitem(sys.modules, 'pavi', pavi)
    with pytest.raises(UnsafeCheckpointError, match="'pavi://models/evil'"):
        _load_checkpoint('pavi://models/evil', map_location='cpu')

    backend = types.SimpleNamespace(get=lambda path: evil.read_bytes())
    monkeypatch.setattr('mmengine.fileio.get_file_backend', lambda *a, **k: backend)
    monkeypatch.setattr('mmengine.runner.checkpoint.get_file_backend', lambda *a, **k: backend)
    for path in ('s3://bucket/evil.pth', 'cluster:s3://bucket/evil.pth', 'petrel://b/e.pth'):
        with pytest.raises(UnsafeCheckpointError, match='refused to load checkpoint'):
            _load_checkpoint(path, map_location='cpu')


def test_url_not_in_cache_and_unreachable_is_a_clear_error(hub):
    from mmengine.runner.checkpoint import _load_checkpoint

    from mmvideoeq.utils.checkpoint import CheckpointDownloadError

    url = 'http://127.0.0.1:9/models/absent.pth'  # nothing listens: refused at once
    with pytest.raises(CheckpointDownloadError, match='no network') as info:
        _load_checkpoint(url, map_location='cpu')
    assert str(hub.cache / 'absent.pth') in str(info.value)


def test_pretrained_init_of_mmdet_mmseg_and_mdeq_backbones(hub):
    from mmvideoeq.registry import MODELS

    hub.put(URLS['torchvision://resnet18'])
    hub.put(URLS['open-mmlab://resnet18_v1c'])
    hub.put(URLS['https://example.com/models/evil-0123abcd.pth'])
    backbones = [
        dict(type='mmdet.ResNet', depth=18, checkpoint='torchvision://resnet18'),
        dict(type='mmseg.ResNetV1c', depth=18, checkpoint='open-mmlab://resnet18_v1c'),
        dict(
            type='MDEQ',
            arch='small',
            num_channels=(4, 8, 8),
            expansion=2,
            num_groups=2,
            checkpoint='https://example.com/models/evil-0123abcd.pth',
        ),
    ]
    for cfg in backbones:
        cfg['init_cfg'] = dict(type='Pretrained', checkpoint=cfg.pop('checkpoint'))
        model = MODELS.build(cfg)
        with pytest.raises(UnsafeCheckpointError, match='refused to load checkpoint'):
            model.init_weights()


def _toy_runner(tmp_path, **kw):
    from mmengine.runner import Runner

    return Runner(
        model=torch.nn.Linear(2, 2),
        work_dir=str(tmp_path / 'work'),
        default_scope='mmengine',
        **kw,
    )


@pytest.mark.parametrize('resume', [False, True])
def test_runner_load_from_and_resume_with_a_url(hub, resume):
    """mmengine's Runner (``load_from``, ``resume``): what tools/train.py and test.py run."""
    url = 'https://example.com/models/evil-0123abcd.pth'
    hub.put(url)
    runner = _toy_runner(hub.tmp, load_from=url, resume=resume)
    with pytest.raises(UnsafeCheckpointError, match='refused to load checkpoint'):
        runner.load_or_resume()


def test_load_weights_and_streaming_inferencer(hub):
    from mmvideoeq.apis import StreamingInferencer
    from mmvideoeq.testing import shrink_model_cfg

    url = 'https://example.com/models/evil-0123abcd.pth'
    hub.put(url)
    with pytest.raises(UnsafeCheckpointError, match='refused to load checkpoint'):
        load_weights(torch.nn.Linear(2, 2), url)
    cfg = Config.fromfile(
        str(ROOT / 'configs' / 'streamdeq_vid' / 'faster-rcnn_mdeq-tiny-sur8_16e_bundled-vid.py')
    )
    cfg.model = ConfigDict(shrink_model_cfg(cfg.model.to_dict()))
    with pytest.raises(UnsafeCheckpointError, match='refused to load checkpoint'):
        StreamingInferencer(cfg, url)


def _load_tool(tool):
    spec = importlib.util.spec_from_file_location(f'tool_{tool[:-3]}', ROOT / 'tools' / tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tools_refuse_a_url_checkpoint_that_holds_code(hub, monkeypatch, capsys):
    """``tools/test.py CONFIG URL`` and ``tools/train.py --resume URL``: one line, no code run."""
    url = 'https://example.com/models/evil-0123abcd.pth'
    hub.put(url)
    cfg = ROOT / 'configs' / 'streamdeq_vid.py'
    monkeypatch.chdir(ROOT)
    for tool, args in (
        ('test.py', [cfg, url]),
        ('train.py', [cfg, '--resume', url]),
    ):
        monkeypatch.setattr(sys, 'argv', [tool, *map(str, args), '--work-dir', str(hub.tmp)])
        with pytest.raises(SystemExit) as info:
            _load_tool(tool).main()
        err = capsys.readouterr().err.strip().splitlines()
        assert info.value.code == 2 and err[-1].startswith('error: refused to load checkpoint')
