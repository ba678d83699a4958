"""StreamingTestLoop with the real-time simulation, on a toy streaming detector with a fixed
latency table: the sAP in results.json equals the schedule, the reference pairing (pair_stream)
and pycocotools computed here by hand, with the warm setting re-run on the frames taken."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch
from mmengine.dataset import BaseDataset
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseDataPreprocessor, BaseModel
from mmengine.runner import Runner
from mmengine.structures import BaseDataElement, InstanceData
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn

from mmvideoeq.deq import Budget, solve
from mmvideoeq.evaluation.functional import pair_stream
from mmvideoeq.models.streaming import DEQStreamingMixin
from mmvideoeq.registry import DATASETS, METRICS, MODELS
from mmvideoeq.streaming import PipelineLatency, StreamFrame, StreamPolicy, run_stream
from mmvideoeq.streaming.realtime import LatencyTable, SequentialLatency, simulate_realtime

VIDEOS = (('a', 8), ('b', 4))
CAT, FPS = 7, 10.0
LATENCY = {'stream@1': 150.0, 'cold@1': 60.0, 'full': 250.0}


def _gt_box(video, t):
    x = 10.0 + 12.0 * t + (0.0 if video == 'a' else 100.0)
    return [x, 20.0, x + 48.0, 60.0]


def _images():
    """(video, t, img_id) in dataset order."""
    out = []
    for video, n in VIDEOS:
        out += [(video, t, len(out) + t + 1) for t in range(n)]
    return [(v, t, k + 1) for k, (v, t, _) in enumerate(out)]


def _coco_dict():
    images, anns = [], []
    for video, t, img_id in _images():
        x1, y1, x2, y2 = _gt_box(video, t)
        images.append(dict(id=img_id, width=320, height=100, file_name=f'{video}/{t}.jpg'))
        anns.append(
            dict(
                id=img_id,
                image_id=img_id,
                category_id=CAT,
                bbox=[x1, y1, x2 - x1, y2 - y1],
                area=(x2 - x1) * (y2 - y1),
                iscrowd=0,
            )
        )
    return dict(images=images, annotations=anns, categories=[dict(id=CAT, name='car')])


def _coco():
    coco = COCO()
    coco.dataset = _coco_dict()
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class ToyBackbone(nn.Module):
    """f(z) = tanh(0.5 z + x): the state after M steps depends on where it started."""

    test_max_iter = 6

    def init_stream_state(self, x):
        return [torch.zeros_like(x)]

    def forward_stream(self, x, z0, budget):
        z0 = self.init_stream_state(x) if z0 is None else z0
        n = self.test_max_iter if budget.is_full else budget.max_iter
        z, stats = solve(lambda z: [torch.tanh(0.5 * z[0] + x)], z0, method='fixed_point',
                         max_iter=n, tol=0.0, return_lowest=False)  # fmt: skip
        return z, z, stats


class ToyPreprocessor(BaseDataPreprocessor):
    def forward(self, data, training=False):
        x = data['inputs']
        x = x if isinstance(x, torch.Tensor) else torch.stack(x)  # default_collate stacks
        return dict(inputs=x, data_samples=data['data_samples'])


@MODELS.register_module(force=True)
class ToyRealtimeDetector(DEQStreamingMixin, BaseModel):
    """Predicts its frame's box shifted by 40 x the state's mean, with that mean as score: both
    depend on the solver state (budget, warm start), so the replay matters."""

    def __init__(self):
        super().__init__(data_preprocessor=ToyPreprocessor())
        self.backbone = ToyBackbone()
        self.scale = nn.Parameter(torch.tensor(40.0))  # a parameter, for DDP

    def predict_from_feats(self, feats, data_samples):
        for i, s in enumerate(data_samples):
            x1, y1, x2, y2 = s.metainfo['gt_box']
            z = float(feats[0][i].mean())
            dx = float(self.scale) * z
            s.pred_instances = InstanceData(
                bboxes=torch.tensor([[x1 + dx, y1, x2 + dx, y2]]),
                scores=torch.tensor([z]),
                labels=torch.tensor([0]),
            )
        return data_samples

    def forward(self, inputs, data_samples=None, mode='tensor'):
        raise NotImplementedError


def _input(video, t):
    return torch.full((1, 2, 2), (0.3 if video == 'a' else -0.2) + 0.15 * t)


@DATASETS.register_module(force=True)
class ToyRealtimeVideos(BaseDataset):
    def __init__(self, **kwargs):
        super().__init__(serialize_data=False, lazy_init=False, **kwargs)

    def load_data_list(self):
        n = dict(VIDEOS)
        return [dict(video_id=v, frame_id=t, img_id=i, video_length=n[v]) for v, t, i in _images()]

    def prepare_data(self, idx):
        info = self.get_data_info(idx)
        v, t = info['video_id'], info['frame_id']
        meta = dict(info, gt_box=_gt_box(v, t))
        meta.pop('sample_idx', None)
        return dict(inputs=_input(v, t), data_samples=BaseDataElement(metainfo=meta))


@METRICS.register_module(force=True)
class ToyCocoMetric(BaseMetric):
    """Exposes its pycocotools ground truth as mmdet's CocoMetric does (``_coco_api``,
    ``cat_ids``); its own metric is the mean predicted box shift."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._coco_api, self.cat_ids = _coco(), [CAT]

    def process(self, data_batch, data_samples):
        for s in data_samples:  # evaluators get dicts
            box = s['pred_instances']['bboxes'][0]
            self.results.append(float(box[0]) - s['gt_box'][0])

    def compute_metrics(self, results):
        return dict(mean_shift=sum(results) / len(results))


def _collate(batch):
    return dict(
        inputs=[b['inputs'] for b in batch], data_samples=[b['data_samples'] for b in batch]
    )


def _expected_sap(name, warm, iters):
    """Schedule, predictions of the frames taken (a warm stream over those frames only),
    reference pairing and pycocotools, by hand."""
    model = ToyRealtimeDetector()
    dets, img_ids = [], []
    for s, (video, n) in enumerate(VIDEOS):
        trace = simulate_realtime(n, FPS, SequentialLatency(LATENCY[name]))
        budget = dict(type='FullSolve') if iters is None else dict(type='FixedBudget', iters=iters)
        policy = StreamPolicy(budget=budget, warm=warm, gap_response='continue')
        frames = [
            StreamFrame(
                _input(video, j)[None],
                video,
                j,
                payload=BaseDataElement(metainfo=dict(gt_box=_gt_box(video, j))),
            )  # fmt: skip
            for j in trace.input_index
        ]
        outs = run_stream(model.stream_step, frames, policy).outputs
        box = {j: o.pred_instances.bboxes[0].tolist() for j, o in zip(trace.input_index, outs)}
        score = {j: float(o.pred_instances.scores[0]) for j, o in zip(trace.input_index, outs)}
        pairing = pair_stream(trace.finish, trace.input_index, n, fps=FPS, eta=0.0)
        ids = [i for v, _, i in _images() if v == video]
        img_ids += ids
        for t, j in enumerate(pairing.input_index):
            if j is not None:
                x1, y1, x2, y2 = box[j]
                dets.append(
                    dict(image_id=ids[t], bbox=[x1, y1, x2 - x1, y2 - y1], score=score[j],
                         category_id=CAT)
                )  # fmt: skip
        yield trace
    gt = _coco()
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(dets), 'bbox')
        ev.params.imgIds, ev.params.catIds = img_ids, [CAT]
        ev.params.maxDets = [100, 300, 1000]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    yield ev.stats


@pytest.fixture(scope='module')
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('rt')
    table = tmp / 'latency.json'
    LatencyTable(device='test', measured='by hand', latency_ms=LATENCY).save(table)
    runner = Runner(
        model=dict(type='ToyRealtimeDetector'),
        work_dir=str(tmp),
        test_dataloader=dict(
            batch_size=1,
            num_workers=0,
            collate_fn=_collate,
            dataset=dict(type='ToyRealtimeVideos'),
            sampler=dict(type='DefaultSampler', shuffle=False),
        ),
        test_evaluator=dict(type='ToyCocoMetric'),
        test_cfg=dict(
            type='StreamingTestLoop',
            iters=[1],
            timing=dict(batches=3, repeats=1, warmup=0),
            realtime=dict(
                fps=[FPS],
                latency_table=str(table),
                pipeline=True,
                save_latency_table=str(tmp / 'saved.json'),
            ),
        ),
        default_scope='mmvideoeq',
        default_hooks=dict(logger=None, checkpoint=None),
        log_level='WARNING',
    )
    metrics = runner.test()
    return metrics, json.loads((tmp / 'streaming' / 'results.json').read_text()), tmp


@pytest.mark.parametrize(
    'name, warm, iters', [('stream@1', True, 1), ('cold@1', False, 1), ('full', False, None)]
)
def test_sap_of_every_setting_equals_the_hand_computation(results, name, warm, iters):
    metrics, data, _ = results
    *traces, stats = list(_expected_sap(name, warm, iters))
    got = data['realtime']['settings'][name]
    assert got['latency_source'] == 'table' and got['latency_ms'] == LATENCY[name]
    r = got['fps']['10']
    for (video, _), trace in zip(VIDEOS, traces):
        assert r['traces'][video]['input_index'] == trace.input_index
        assert r['traces'][video]['finish'] == pytest.approx(trace.finish, abs=1e-12)
    assert r['sAP'] == pytest.approx(stats[0], abs=1e-12)
    assert r['sAP_50'] == pytest.approx(stats[1], abs=1e-12)
    assert metrics[f'{name}/sAP@10fps'] == pytest.approx(stats[0], abs=1e-12)


def test_schedule_replay_deadline_and_report(results):
    _, data, tmp = results
    stream = data['realtime']['settings']['stream@1']['fps']['10']
    # 150 ms at 10 fps: video a (8 frames) answers frames 0, 1, 3, 4, 6 at .15, .3, .45, .6, .75
    # (in the replay frame 3 is warm-started from frame 1: frame 2 was never processed).
    # Ground-truth frames 0 and 1 have no output yet; 2 gets frame 0's output, 3 (at .3, a
    # tie) and 4 frame 1's, 5 frame 3's, 6 (a tie) and 7 frame 4's: miss 2, mismatch
    # 2 + 2 + 3 + 2 + 2 + 3. Video b (4 frames): outputs of 0 and 1 at .15, .3: miss 2,
    # mismatch 2 + 2.
    assert stream['traces']['a']['input_index'] == [0, 1, 3, 4, 6]
    assert stream['counts'] == dict(num_frames=12, in_time=0, miss=4, mismatch=18)
    # offline AP under the same scorer: every frame answered by its own prediction
    assert 0 <= data['realtime']['settings']['full']['offline']['sAP'] <= 1
    # the deadline scheduler has one candidate (M = 1, 150 ms > 100 ms)
    deadline = data['realtime']['settings']['deadline']['fps']['10']
    assert set(deadline['budgets']) == {'1'}
    assert data['realtime']['best_fixed']['10']['setting'] in LATENCY
    assert (tmp / 'streaming' / 'sap_vs_fps.png').is_file()
    # the latencies used, saved as a table
    assert LatencyTable.load(tmp / 'saved.json').latency_ms == LATENCY


def test_pipelined_stream_is_timed_by_its_stages(results):
    _, data, _ = results
    piped = data['realtime']['settings']['stream@1|pipelined']
    stages = piped['latency_ms']['stages']
    assert len(stages) == 3 and piped['latency_ms']['latency'] == pytest.approx(sum(stages))
    # the stages split the setting's latency (the table's 150 ms): the same work, overlapped
    assert sum(stages) == pytest.approx(LATENCY['stream@1'])
    for video, n in VIDEOS:
        trace = simulate_realtime(n, FPS, PipelineLatency(stages))
        assert piped['fps']['10']['traces'][video]['input_index'] == trace.input_index
    assert 'stream@1|pipelined' not in data['realtime']['best_fixed']['10']['setting']


def test_bad_realtime_config_is_a_clear_error(tmp_path):
    from mmvideoeq.engine.loops.realtime_eval import RealtimeSweep

    with pytest.raises(ValueError, match='positive frame rates'):
        RealtimeSweep(fps=[0])
    with pytest.raises(ValueError, match='latency must be one of'):
        RealtimeSweep(fps=[30], latency='wall')
    with pytest.raises(FileNotFoundError, match='does not exist'):
        RealtimeSweep(fps=[30], latency_table=str(tmp_path / 'missing.json'))
    assert Budget.steps(1).max_iter == 1
