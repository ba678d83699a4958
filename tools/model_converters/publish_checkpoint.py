"""Strip a training checkpoint to what inference needs (state_dict + dataset meta) and save it.

Example:
    python tools/model_converters/publish_checkpoint.py work_dirs/x/epoch_24.pth out.pth

The published file holds tensors, strings and numbers only, so it loads with torch's
``weights_only`` unpickler without any allow-list, and is a few MB for the bundled models.
"""

import argparse
import hashlib
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402

from mmvideoeq.utils.checkpoint import safe_load_checkpoint  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('src')
    p.add_argument('dst')
    args = p.parse_args(argv)
    ckpt = safe_load_checkpoint(args.src)
    meta = ckpt.get('meta', {})
    out = dict(
        state_dict={k: v.detach().clone() for k, v in ckpt['state_dict'].items()},
        meta=dict(
            dataset_meta=meta.get('dataset_meta'),
            epoch=meta.get('epoch'),
            iter=meta.get('iter'),
            source=osp.basename(args.src),
        ),
    )
    torch.save(out, args.dst)
    sha = hashlib.sha256(open(args.dst, 'rb').read()).hexdigest()[:8]
    print(f'saved {args.dst} ({osp.getsize(args.dst) / 1e6:.2f} MB, sha256 {sha})')


if __name__ == '__main__':
    main()
