"""A user's own streaming model, dataset and metrics, registered into mmvideoeq's registries.

Imported by configs through ``custom_imports`` (the tests put this folder on ``PYTHONPATH``), as a
user's package would be: the model implements exactly the two protocol methods.
"""

import torch
from mmengine.dataset import BaseDataset
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement

from mmvideoeq.deq import solve
from mmvideoeq.registry import DATASETS, METRICS, MODELS
from mmvideoeq.streaming import StepOutput


@MODELS.register_module()
class ToyTwoMethodModel(BaseModel):
    """z = tanh(a z + x): a contraction for |a| < 1. Memory: frames seen in the sequence."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(0.8))

    def forward(self, inputs, data_samples=None, mode='tensor'):
        raise NotImplementedError('this model only streams')

    # ---- the protocol: these two methods are all a streaming model needs
    def stream_zero_state(self, inputs):
        return [inputs.new_zeros(inputs.shape[0], 4)]

    @torch.no_grad()
    def stream_step(self, inputs, z0, memory, budget, payloads):
        x = inputs.reshape(inputs.shape[0], -1)[:, :4]
        z0 = self.stream_zero_state(inputs) if z0 is None else z0

        def f(z):
            return [torch.tanh(self.a * z[0] + x)]

        full = budget.max_iter is None
        z, stats = solve(
            f,
            z0,
            method='fixed_point',
            max_iter=60 if full else budget.max_iter,
            tol=0.0 if full else budget.tol,
            return_lowest=False,
        )
        z_star, _ = solve(f, z0, method='fixed_point', max_iter=200, tol=0.0)
        memory = [1 if m is None else m + 1 for m in memory]
        for s, zi, zs, m in zip(payloads, z[0], z_star[0], memory):
            s.error = float((zi - zs).abs().max())
            s.count = m
        return StepOutput(list(payloads), z, memory, stats)


@DATASETS.register_module()
class ToyClips(BaseDataset):
    """``lengths[v]`` frames per video ``v``, frames of a video drifting slowly."""

    def __init__(self, lengths=(6, 6), **kwargs):
        self.lengths = tuple(lengths)
        super().__init__(serialize_data=False, **kwargs)

    def load_data_list(self):
        return [
            dict(video_id=f'v{v}', frame_id=t, video_length=n)
            for v, n in enumerate(self.lengths)
            for t in range(n)
        ]

    def prepare_data(self, idx):
        info = self.get_data_info(idx)
        g = torch.Generator().manual_seed(7 + int(info['video_id'][1:]))
        x = torch.randn(1, 2, 2, generator=g) + 0.05 * info['frame_id']
        keys = ('video_id', 'frame_id', 'video_length')
        return dict(inputs=x, data_samples=BaseDataElement(metainfo={k: info[k] for k in keys}))


@METRICS.register_module()
class ToyErrorMetric(BaseMetric):
    """Mean error to the fixed point, by frame offset, and an order-sensitive digest of the
    results (equal only when the results reach the metric in the same order)."""

    def process(self, data_batch, data_samples):
        for s in data_samples:
            self.results.append((s['error'], s['count'], s['frame_id'], s['frame_offset']))

    def compute_metrics(self, results):
        digest = 0
        for e, c, f, _ in results:
            digest = (digest * 1000003 + int(e * 1e6) + 7 * c + 13 * f) % (2**61 - 1)
        offsets = sorted({o for *_, o in results})
        curve = [
            sum(e for e, *_, o in results if o == k) / sum(1 for *_, o in results if o == k)
            for k in offsets
        ]
        return {
            'error': sum(e for e, *_ in results) / len(results),
            'counts_match': float(all(c == f + 1 for _, c, f, _ in results)),
            'digest': float(digest),
            'frames': float(len(results)),
            'offset_curve/error': curve,
        }


@MODELS.register_module()
class ToyRegressor(BaseModel):
    """``y = W x``, trained with a mean squared error (no normalisation layer: the gradient of
    a batch of 2B in one process equals the average of two batches of B)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(4, 2)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = torch.stack(inputs) if isinstance(inputs, list) else inputs
        out = self.linear(x.reshape(x.shape[0], -1))
        if mode == 'loss':
            y = torch.stack([s.target for s in data_samples])
            return dict(loss=((out - y) ** 2).mean())
        return out


@DATASETS.register_module()
class ToyRegression(BaseDataset):
    def __init__(self, **kwargs):
        super().__init__(serialize_data=False, **kwargs)

    def load_data_list(self):
        return [dict(i=i) for i in range(32)]

    def prepare_data(self, idx):
        g = torch.Generator().manual_seed(idx)
        x = torch.randn(4, generator=g)
        s = BaseDataElement(target=torch.stack([x.sum(), x[0] - x[1]]))
        return dict(inputs=x, data_samples=s)
