"""tools/analysis_tools/eval_streaming_record.py: reference numbers, errors per bad file."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / 'tests' / 'data' / 'streaming_ap'
REF = json.loads((DATA / 'reference_outputs.json').read_text())
ANN = DATA / 'annotations.json'


def _load_cli():
    spec = importlib.util.spec_from_file_location(
        'eval_streaming_record', ROOT / 'tools/analysis_tools/eval_streaming_record.py'
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CLI = _load_cli()


def _run(capsys, *args):
    rc = CLI.main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err.strip()


@pytest.mark.parametrize('eta', ['0', '-1', '0.5'])
def test_record_file(capsys, tmp_path, eta):
    rc, out, err = _run(
        capsys,
        ANN,
        DATA / 'record_hand.json',
        '--fps',
        10,
        '--eta',
        eta,
        '--out',
        tmp_path / 'r.json',
    )
    assert rc == 0, err
    res = json.loads((tmp_path / 'r.json').read_text())
    ref = REF['hand'][eta]
    assert [res[k] for k in ('sAP', 'sAP_50', 'sAP_75')] == ref['stats'][:3]
    assert {k: res['counts'][k] for k in ('in_time', 'miss', 'mismatch')} == {
        k: ref[k] for k in ('in_time', 'miss', 'mismatch')
    }
    assert res['per_sequence']['seq_b']['num_frames'] == 7
    assert f"sAP      {ref['stats'][0]:.4f}" in out
    assert f"in_time {ref['in_time']}, miss {ref['miss']}, mismatch {ref['mismatch']}" in out


def test_record_directory_reference_layout(capsys, tmp_path):
    # the reference simulator's outputs (per-frame latency trace), one file per sequence
    rc, out, err = _run(
        capsys, ANN, DATA / 'record_sim_trace_fps10', '--fps', 10, '--eta', -1,
        '--out', tmp_path / 'r.json',
    )  # fmt: skip
    assert rc == 0, err
    res = json.loads((tmp_path / 'r.json').read_text())
    ref = REF['simulation']['trace_fps10']['eval']['-1']
    assert [res[k] for k in ('sAP', 'sAP_50')] == ref['stats'][:2]
    assert res['counts']['mismatch'] == ref['mismatch']


def _hand():
    return json.loads((DATA / 'record_hand.json').read_text())


def test_bad_inputs(capsys, tmp_path):
    def err_of(*args):
        rc, _, err = _run(capsys, *args)
        assert rc == 2
        return err

    assert 'annotation file' in err_of(tmp_path / 'none.json', DATA / 'record_hand.json')
    assert 'none.json does not exist' in err_of(ANN, tmp_path / 'none.json')

    bad = tmp_path / 'bad.json'
    bad.write_text('{"format": "mmvideoeq/streaming_record", ')
    assert f'{bad} is not valid JSON' in err_of(ANN, bad)

    rec = _hand()
    del rec['sequences']['seq_b']['scores']
    bad.write_text(json.dumps(rec))
    assert f"{bad}, sequence 'seq_b': missing ['scores']" in err_of(ANN, bad)

    rec = _hand()
    rec['sequences']['seq_a']['timestamps'][3] = 0.5  # after 0.5 comes 0.25
    bad.write_text(json.dumps(rec))
    assert f"{bad}, sequence 'seq_a', output 4: timestamp 0.25 is earlier" in err_of(ANN, bad)

    rec = _hand()
    rec['sequences']['seq_a']['input_fidx'][-1] = 12  # seq_a has 12 frames
    bad.write_text(json.dumps(rec))
    err = err_of(ANN, bad)
    assert f"record {bad}: sequence 'seq_a': input frame indices [12] are outside" in err

    rec = _hand()
    labels = rec['sequences']['seq_b']['labels']
    labels[0] = [7] + labels[0][1:]
    bad.write_text(json.dumps(rec))
    assert "sequence 'seq_b': labels [7] are not category ids" in err_of(ANN, bad)

    rec = _hand()
    rec['sequences']['seq_c'] = rec['sequences'].pop('seq_b')
    bad.write_text(json.dumps(rec))
    err = err_of(ANN, bad)
    assert "sequences without record ['seq_b']" in err and "annotation ['seq_c']" in err

    rec_dir = tmp_path / 'dir'
    shutil.copytree(DATA / 'record_sim_trace_fps10', rec_dir)
    (rec_dir / 'seq_b.json').unlink()
    assert "has no seq_b.json (the record of sequence 'seq_b')" in err_of(ANN, rec_dir)

    ann = json.loads(ANN.read_text())
    del ann['sequences']
    plain = tmp_path / 'plain_coco.json'
    plain.write_text(json.dumps(ann))
    assert f'{plain} has no "sequences" list' in err_of(plain, DATA / 'record_hand.json')

    plain.write_text('[]')
    assert 'is not a COCO annotation' in err_of(plain, DATA / 'record_hand.json')
