"""StreamingTestLoop on a toy DEQ model: isolation, batching, resets, order, results."""

import json

import pytest
import torch
from mmengine.dataset import BaseDataset
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseDataPreprocessor, BaseModel
from mmengine.runner import Runner
from mmengine.structures import BaseDataElement
from torch import nn

from mmvideoeq.deq import solve
from mmvideoeq.models.streaming import DEQStreamingMixin
from mmvideoeq.registry import DATASETS, METRICS, MODELS

C, H, W = 4, 4, 4
FULL = 60


class ToyBackbone(nn.Module):
    """f(z) = tanh(0.5 * conv(z) + inj(x)): a contraction, solved by fixed-point iteration."""

    test_max_iter = FULL

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(C, C, 3, padding=1, bias=False)
        with torch.no_grad():
            w = torch.randn(C, C, 3, 3, generator=g)
            self.conv.weight.copy_(0.5 * w / w.flatten().norm())
        self.inj = nn.Conv2d(1, C, 1)
        with torch.no_grad():
            self.inj.weight.copy_(torch.randn(C, 1, 1, 1, generator=g))
            self.inj.bias.copy_(torch.randn(C, generator=g))

    def init_stream_state(self, x):
        return [x.new_zeros(x.shape[0], C, H, W)]

    def forward_stream(self, x, z0, budget):
        inj = self.inj(x)
        f = lambda z: [torch.tanh(self.conv(z[0]) + inj)]
        z0 = self.init_stream_state(x) if z0 is None else z0
        full = budget.is_full
        z, stats = solve(
            f,
            z0,
            method='fixed_point',
            max_iter=FULL if full else budget.max_iter,
            tol=None if full else budget.tol,
            return_lowest=full or budget.select == 'lowest',
        )
        return [z[0]], z, stats


class ToyPreprocessor(BaseDataPreprocessor):
    def forward(self, data, training=False):
        return dict(inputs=torch.stack(data['inputs']), data_samples=data['data_samples'])


@MODELS.register_module(force=True)
class ToyStreamModel(DEQStreamingMixin, BaseModel):
    def __init__(self):
        super().__init__(data_preprocessor=ToyPreprocessor())
        self.backbone = ToyBackbone()

    def predict_from_feats(self, feats, data_samples):
        for i, s in enumerate(data_samples):
            s.pred = feats[0][i].clone()
        return data_samples

    def forward(self, inputs, data_samples=None, mode='tensor'):
        raise NotImplementedError


def _frame(video, t):
    g = torch.Generator().manual_seed(100 * video)
    base = torch.randn(1, H, W, generator=g)
    return base + 0.05 * t * torch.ones(1, H, W)


@DATASETS.register_module(force=True)
class ToyVideoDataset(BaseDataset):
    def __init__(self, videos=((0, 5), (1, 4)), reverse=False, broken=(), **kwargs):
        self.videos, self.reverse, self.broken = videos, reverse, set(map(tuple, broken))
        super().__init__(serialize_data=False, lazy_init=False, **kwargs)

    def load_data_list(self):
        out = []
        for v, n in self.videos:
            ts = list(range(n))[::-1] if self.reverse else range(n)
            out += [dict(video_id=f'v{v}', frame_id=t, video_length=n, video=v) for t in ts]
        return out

    def prepare_data(self, idx):
        info = self.get_data_info(idx)
        sample = BaseDataElement(
            metainfo=dict(
                video_id=info['video_id'],
                frame_id=info['frame_id'],
                video_length=info['video_length'],
            )
        )
        if (info['video_id'], info['frame_id']) in self.broken:  # as the safe loading marks it
            sample.set_metainfo(dict(eval_skip_reason='LoadImageFromFile failed on x.jpg'))
        return dict(inputs=_frame(info['video'], info['frame_id']), data_samples=sample)


RECORDS = []


@METRICS.register_module(force=True)
class ToyRecordMetric(BaseMetric):
    """Error of the prediction w.r.t. the full-solve fixed point, by frame offset."""

    def process(self, data_batch, data_samples):
        for s in data_samples:
            RECORDS.append(s)
            if s.get('eval_skip_reason'):
                continue
            self.results.append((s['frame_offset'], float(s['pred'].abs().mean())))

    def compute_metrics(self, results):
        n = max(o for o, _ in results) + 1
        curve = [
            sum(v for o, v in results if o == k) / sum(1 for o, _ in results if o == k)
            for k in range(n)
        ]
        return dict(
            mean_abs=sum(v for _, v in results) / len(results), **{'offset_curve/mean_abs': curve}
        )


def _collate(batch):
    return dict(
        inputs=[b['inputs'] for b in batch], data_samples=[b['data_samples'] for b in batch]
    )


def _run(tmp_path, *, videos=((0, 5), (1, 4)), batch=1, reverse=False, broken=(), **loop):
    RECORDS.clear()
    loader = dict(
        batch_size=batch,
        num_workers=0,
        collate_fn=_collate,
        dataset=dict(type='ToyVideoDataset', videos=videos, reverse=reverse, broken=broken),
        sampler=dict(type='DefaultSampler', shuffle=False),
    )
    if batch > 1:
        loader['batch_sampler'] = dict(type='VideoInterleavedBatchSampler')
    runner = Runner(
        model=dict(type='ToyStreamModel'),
        work_dir=str(tmp_path),
        test_dataloader=loader,
        test_evaluator=dict(type='ToyRecordMetric'),
        test_cfg=dict(type='StreamingTestLoop', **loop),
        default_scope='mmvideoeq',
        default_hooks=dict(logger=None, checkpoint=None),
        log_level='WARNING',
    )
    metrics = runner.test()
    return metrics, RECORDS[:]


def _by_setting(records, n_frames):
    """Split the flat record list into consecutive settings of n_frames each."""
    return [records[i : i + n_frames] for i in range(0, len(records), n_frames)]


def _key(s):
    return s['video_id'], s['frame_id']


def test_two_videos_in_one_pass_equal_each_alone_and_batched(tmp_path):
    kw = dict(iters=[2], baseline=False, full_solve=False)
    _, both = _run(tmp_path / 'a', **kw)
    _, alone0 = _run(tmp_path / 'b', videos=((0, 5),), **kw)
    _, alone1 = _run(tmp_path / 'c', videos=((1, 4),), **kw)
    _, batched = _run(tmp_path / 'd', batch=2, **kw)
    ref = {_key(s): s['pred'] for s in alone0 + alone1}
    assert len(both) == len(batched) == len(ref) == 9
    for s in both + batched:
        torch.testing.assert_close(s['pred'], ref[_key(s)], rtol=0, atol=1e-6)
    # the warm start matters: streaming frame 4 differs from a cold 2-iteration solve
    _, cold = _run(tmp_path / 'e', videos=((0, 5),), iters=[2], warm_start=False, full_solve=False)
    cold_ref = {_key(s): s['pred'] for s in cold}
    assert (ref[('v0', 4)] - cold_ref[('v0', 4)]).abs().max() > 1e-3


def test_reset_at_video_boundary_and_offsets(tmp_path):
    _, recs = _run(tmp_path, iters=[1], baseline=False, full_solve=False)
    offsets = [(s['video_id'], s['frame_offset']) for s in recs]
    assert offsets == [('v0', k) for k in range(5)] + [('v1', k) for k in range(4)]
    # first frame of v1 is a cold 1-iteration solve: f(0) = tanh(inj(x))
    model = ToyStreamModel()
    x = _frame(1, 0)[None]
    expected = torch.tanh(model.backbone.inj(x))[0]
    torch.testing.assert_close(recs[5]['pred'], expected, rtol=0, atol=1e-6)


def test_init_reference_equals_full_solve_on_frame0(tmp_path):
    _, recs = _run(
        tmp_path,
        videos=((0, 3),),
        iters=[1],
        init='reference',
        reference_iters=FULL,
        baseline=False,
        full_solve=True,
    )
    stream, full = _by_setting(recs, 3)
    torch.testing.assert_close(stream[0]['pred'], full[0]['pred'], rtol=0, atol=1e-6)
    assert (stream[1]['pred'] - full[1]['pred']).abs().max() > 0  # then only 1 iteration per frame


def test_repeated_frame_stream_converges_to_full_solve(tmp_path):
    @DATASETS.register_module(force=True)
    class StaticVideo(ToyVideoDataset):
        def prepare_data(self, idx):
            out = super().prepare_data(idx)
            out['inputs'] = _frame(0, 0)
            return out

    RECORDS.clear()
    loader = dict(
        batch_size=1,
        num_workers=0,
        collate_fn=_collate,
        dataset=dict(type='StaticVideo', videos=((0, 40),)),
        sampler=dict(type='DefaultSampler', shuffle=False),
    )
    runner = Runner(
        model=dict(type='ToyStreamModel'),
        work_dir=str(tmp_path),
        test_dataloader=loader,
        test_evaluator=dict(type='ToyRecordMetric'),
        test_cfg=dict(type='StreamingTestLoop', iters=[1], baseline=False),
        default_scope='mmvideoeq',
        log_level='WARNING',
    )
    runner.test()
    stream, full = _by_setting(RECORDS, 40)
    first_err = (stream[0]['pred'] - full[0]['pred']).abs().max()
    last_err = (stream[-1]['pred'] - full[-1]['pred']).abs().max()
    assert last_err < 1e-4 < first_err


def test_out_of_order_frames_raise(tmp_path):
    with pytest.raises(ValueError, match='increasing frame_id order'):
        _run(tmp_path, reverse=True, iters=[1], baseline=False, full_solve=False)


def test_results_json_and_table(tmp_path):
    metrics, _ = _run(tmp_path, iters=[1, 2])
    report = json.loads((tmp_path / 'streaming' / 'results.json').read_text())
    assert report['status'] == 'done'
    assert list(report['settings']) == ['stream@1', 'stream@2', 'cold@1', 'cold@2', 'full']
    assert report['settings']['stream@2']['mean_iters'] == 2
    assert report['settings']['full']['mean_iters'] == FULL
    assert len(report['settings']['stream@1']['metrics']['offset_curve/mean_abs']) == 5
    assert set(metrics) >= {'stream@1/mean_abs', 'cold@2/mean_abs', 'full/mean_abs'}
    assert (tmp_path / 'streaming' / 'curves.png').stat().st_size > 1000


def test_unreadable_frame_is_skipped_reported_and_the_stream_goes_on(tmp_path):
    _, recs = _run(tmp_path, iters=[2], baseline=False, full_solve=False, broken=[('v0', 2)])
    report = json.loads((tmp_path / 'streaming' / 'results.json').read_text())
    res = report['settings']['stream@2']
    assert res['skipped'] == [
        dict(video_id='v0', frame_id=2, reason='LoadImageFromFile failed on x.jpg')
    ]
    assert res['frames'] == 8
    by_key = {_key(s): s for s in recs}
    assert 'pred' not in by_key[('v0', 2)]
    # frame 3 continues from frame 1's state (skip_response='continue')
    _, clean = _run(tmp_path / 'b', videos=((0, 5),), iters=[2], baseline=False, full_solve=False)
    ref = {_key(s): s['pred'] for s in clean}
    torch.testing.assert_close(by_key[('v0', 1)]['pred'], ref[('v0', 1)])
    assert (by_key[('v0', 3)]['pred'] - ref[('v0', 3)]).abs().max() > 0  # one frame missing


def test_timing_repeats_and_cost_plot(tmp_path):
    _run(tmp_path, iters=[1, 2], timing=dict(batches=2, repeats=2, warmup=1))
    report = json.loads((tmp_path / 'streaming' / 'results.json').read_text())
    timing = report['settings']['stream@2']['timing']
    assert timing['repeats'] == 2 and timing['frames'] == 2
    assert timing['min_ms'] <= timing['median_ms'] <= timing['max_ms']
    assert report['settings']['stream@2']['mean_evals'] == 2  # fixed point: 2 evaluations
    assert (tmp_path / 'streaming' / 'accuracy_vs_cost.png').stat().st_size > 1000
