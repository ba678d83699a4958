"""The one data command: ``tools/data/make_benchmark.py --all`` (``make data``) builds every bundled
part, adds to an existing folder, keeps what is up to date and rebuilds what is stale or partial.

The mechanism is tested with the ``tiny`` preset in place of ``small`` / ``large`` (seconds);
the real command's parts and folders are checked against the configs."""

import dataclasses
import importlib.util
import json
import re
from pathlib import Path

import pytest

import benchgen

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    'make_benchmark_cli_parts', REPO / 'tools/data/make_benchmark.py'
)
cli = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cli)

TINY_PARTS = tuple((folder, 'tiny', formats) for folder, _, formats in cli.ALL_PARTS)


def _mtimes(root: Path) -> dict:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob('*'))}


def _run(capsys, *args) -> str:
    assert cli.main(list(args)) == 0
    return capsys.readouterr().out


@pytest.fixture
def tiny_all(monkeypatch):
    monkeypatch.setattr(cli, 'ALL_PARTS', TINY_PARTS)


def test_all_builds_every_part_then_changes_nothing(tiny_all, tmp_path, capsys):
    out = _run(capsys, '--all', '--data-root', str(tmp_path))
    expected = [(folder, fmt) for folder, _, formats in TINY_PARTS for fmt in formats]
    assert len(expected) == 8
    for folder, fmt in expected:
        path = tmp_path / folder / benchgen.FORMAT_DIRS[fmt]
        assert f'{path} ({fmt}): writing: absent' in out
        meta = json.loads((tmp_path / folder / benchgen.META_FILE).read_text())
        part = meta[fmt]
        assert (part['state'], part['preset'], part['seed']) == ('done', 'tiny', 0)
        assert part['num_files'] == sum(1 for p in path.rglob('*') if p.is_file()) > 0
    assert '8 of 8 part(s) written, 0 kept' in out

    before = _mtimes(tmp_path)
    out = _run(capsys, '--all', '--data-root', str(tmp_path))
    assert _mtimes(tmp_path) == before
    assert out.count(': kept: up to date') == 8
    assert 'nothing to do: all 8 part(s) up to date' in out


def test_all_adds_to_a_folder_holding_one_part(tiny_all, tmp_path, capsys):
    bundled = tmp_path / 'bundled'
    _run(capsys, '--out', str(bundled), '--preset', 'tiny', '--formats', 'vid')
    vid = _mtimes(bundled / 'ILSVRC')
    out = _run(capsys, '--all', '--data-root', str(tmp_path))
    assert f'{bundled / "ILSVRC"} (vid): kept: up to date' in out
    assert '7 of 8 part(s) written, 1 kept' in out
    assert _mtimes(bundled / 'ILSVRC') == vid
    meta = json.loads((bundled / benchgen.META_FILE).read_text())
    assert meta['formats'] == ['vid', 'cityscapes', 'coco', 'kitti']
    assert meta['preset']['name'] == 'tiny' and meta['seed'] == 0
    for fmt in meta['formats']:
        assert (bundled / benchgen.FORMAT_DIRS[fmt]).is_dir()


def test_stale_and_partial_parts_are_rebuilt_with_a_message(tmp_path, capsys):
    args = ['--out', str(tmp_path), '--preset', 'tiny', '--formats', 'vid', 'cityscapes', 'kitti']
    _run(capsys, *args)
    city = _mtimes(tmp_path / 'cityscapes')
    # a file missing in one part, an interrupted write recorded for another
    victim = next(p for p in sorted((tmp_path / 'ILSVRC').rglob('*.JPEG')))
    victim.unlink()
    meta = json.loads((tmp_path / benchgen.META_FILE).read_text())
    n_vid = meta['vid']['num_files']
    meta['kitti']['state'] = 'writing'
    (tmp_path / benchgen.META_FILE).write_text(json.dumps(meta))
    out = _run(capsys, *args)
    assert f'(vid): rewriting: partial: {n_vid - 1} files, {n_vid} were written' in out
    assert '(kitti): rewriting: partial: an earlier run stopped while writing it' in out
    assert '(cityscapes): kept: up to date' in out
    assert victim.is_file() and _mtimes(tmp_path / 'cityscapes') == city

    # another seed: stale, rebuilt; the top-level preset/seed follow the parts
    out = _run(
        capsys, '--out', str(tmp_path), '--preset', 'tiny', '--seed', '1', '--formats', 'vid'
    )
    assert (
        "(vid): rewriting: stale: preset 'tiny', seed 0 on disk, asked preset 'tiny', seed 1" in out
    )
    meta = json.loads((tmp_path / benchgen.META_FILE).read_text())
    assert meta['vid']['seed'] == 1 and meta['cityscapes']['seed'] == 0
    assert meta['seed'] is None and meta['preset'] is None
    # a part written by hand in its folder (no record): rebuilt, not trusted
    del meta['kitti']
    meta['formats'].remove('kitti')
    (tmp_path / benchgen.META_FILE).write_text(json.dumps(meta))
    plans = benchgen.plan_benchmark(tmp_path, preset='tiny', formats=('kitti', 'cityscapes'))
    assert [(p.fmt, p.action) for p in plans] == [('kitti', 'rebuild'), ('cityscapes', 'keep')]
    assert 'not recorded' in plans[0].reason


def test_version_1_metadata_is_adopted(tmp_path, capsys):
    """A folder written by the earlier generator (metadata without per-part records) is kept."""
    _run(capsys, '--out', str(tmp_path), '--preset', 'tiny', '--formats', 'vid', 'cityscapes')
    meta = json.loads((tmp_path / benchgen.META_FILE).read_text())
    old = dict(meta, version=1, preset=dataclass_dict('tiny'), seed=0)
    for fmt in ('vid', 'cityscapes'):
        old[fmt] = {k: v for k, v in meta[fmt].items() if k in ('root', 'size', 'train', 'val')}
    (tmp_path / benchgen.META_FILE).write_text(json.dumps(old))
    before = _mtimes(tmp_path)
    out = _run(capsys, '--out', str(tmp_path), '--preset', 'tiny', '--formats', 'vid', 'cityscapes')
    assert 'nothing to do' in out and _mtimes(tmp_path) == before
    out = _run(
        capsys, '--out', str(tmp_path), '--preset', 'tiny', '--seed', '1', '--formats', 'vid'
    )
    assert (
        "(vid): rewriting: stale: preset 'tiny', seed 0 on disk, asked preset 'tiny', seed 1" in out
    )


def dataclass_dict(name: str) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(benchgen.get_preset(name))))


def test_foreign_folder_is_refused_and_kept(tmp_path, capsys):
    (tmp_path / 'ILSVRC').mkdir()
    (tmp_path / 'ILSVRC' / 'mine.txt').write_text('user data')
    assert cli.main(['--out', str(tmp_path), '--preset', 'tiny', '--formats', 'vid']) == 1
    assert 'not written by this generator, so it is not deleted' in capsys.readouterr().err
    assert (tmp_path / 'ILSVRC' / 'mine.txt').read_text() == 'user data'


def test_cli_argument_errors(capsys):
    for args in (
        ['--all', '--preset', 'small'],
        ['--all', '--formats', 'vid'],
        ['--formats', 'vid'],
    ):
        with pytest.raises(SystemExit) as exc:
            cli.parse_args(args)
        assert exc.value.code == 2
    assert '--all writes the presets' in capsys.readouterr().err


def test_all_covers_every_bundled_folder_the_configs_read():
    """Every ``data/bundled*`` path in configs/ lies in a part that ``--all`` builds, in the
    preset the config expects (``_large`` folders: ``large``)."""
    built = {
        f'data/{folder}/{benchgen.FORMAT_DIRS[fmt]}/': preset
        for folder, preset, formats in cli.ALL_PARTS
        for fmt in formats
    }
    paths = set()
    for config in (REPO / 'configs').rglob('*.py'):
        paths |= set(re.findall(r"'(data/bundled[^']*)'", config.read_text()))
    assert len(paths) >= 5
    for path in sorted(paths):
        part = [root for root in built if (path + '/').startswith(root)]
        assert part, f'{path} (read by a config) is not built by --all'
        assert built[part[0]] == ('large' if '_large/' in path else 'small'), path
