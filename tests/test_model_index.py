"""model-index.yml and configs/*/metafile.yml (OpenMMLab's format, paths from the repository root
as in mmdet): every shipped checkpoint is listed once, with its config, weights, results and the
command it was trained with."""

import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _models():
    index = yaml.safe_load((ROOT / 'model-index.yml').read_text())
    models, collections = [], {}
    for rel in index['Import']:
        meta = yaml.safe_load((ROOT / rel).read_text())
        for c in meta.get('Collections', []):
            collections[c['Name']] = c
        models += [(rel, m) for m in meta['Models']]
    return models, collections


def test_every_shipped_checkpoint_is_listed_once():
    models, _ = _models()
    weights = [m['Weights'] for _, m in models]
    shipped = sorted(f'checkpoints/{p.name}' for p in (ROOT / 'checkpoints').glob('*.pth'))
    assert sorted(weights) == shipped


def test_entries_point_at_existing_files_and_say_how_they_were_trained():
    models, collections = _models()
    zoo = (ROOT / 'docs' / 'model_zoo.md').read_text()
    for rel, m in models:
        assert m['In Collection'] in collections, (rel, m['Name'])
        readme = collections[m['In Collection']]['README']
        assert (ROOT / readme).is_file(), readme
        config = ROOT / m['Config']
        assert (
            config.is_file() and config.stem == m['Name'] and config.parent == (ROOT / rel).parent
        )
        assert (ROOT / m['Weights']).is_file() and Path(m['Weights']).stem == m['Name']
        assert m['Name'] in zoo  # the model zoo page lists it
        meta = m['Metadata']
        assert 'not shipped' in meta['Training Log']
        for key in ('Training Command', 'Test Command'):
            words = shlex.split(meta[key].replace('&&', ' '))
            assert 'tools/train.py' in words or key == 'Test Command'
            assert m['Config'] in words, (m['Name'], key)
            for w in words:  # every script and config the command names exists
                if w.endswith('.py'):
                    assert (ROOT / w).is_file(), (m['Name'], w)
        assert m['Weights'] in meta['Training Command']  # published to the shipped file
        for result in m['Results']:
            assert result['Metrics'] and all(
                isinstance(v, (int, float)) for v in result['Metrics'].values()
            )


def test_commands_publish_the_checkpoint_the_file_records():
    """Each shipped file records the training checkpoint it was published from (``meta.source``,
    written by publish_checkpoint.py); the metafile's command publishes that file."""
    import torch

    models, _ = _models()
    for _, m in models:
        meta = torch.load(ROOT / m['Weights'], map_location='cpu', weights_only=True)['meta']
        command = m['Metadata']['Training Command']
        assert f"/{meta['source']} {m['Weights']}" in command, (m['Name'], meta['source'])
