"""docs/inference.md: every Python snippet runs as written, in order, from a repository root.

The root here is a temporary folder with the repository's ``configs`` and ``checkpoints``, the
bundled benchmark's VID frames rendered with the ``tiny`` preset into ``data/bundled``, a video
``my_video.mp4`` made of those frames, and a fake camera (``cv2.VideoCapture(0)`` opens that
video; ``cv2.imshow``/``waitKey`` are recorded, not shown).
"""

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / 'docs' / 'inference.md'
CKPTS = ('faster-rcnn_mdeq-tiny-sur8_16e_bundled-vid', 'htc_r26-tiny-detectors_bundled-coco')


def _snippets() -> list[str]:
    return re.findall(r'```python\n(.*?)```', DOC.read_text(), flags=re.S)


@pytest.fixture
def repo_root(tmp_path, monkeypatch):
    for name in CKPTS + ('mdeq-tiny-sur8_800it_bundled-cityscapes',):
        if not (ROOT / 'checkpoints' / f'{name}.pth').is_file():
            pytest.skip(f'shipped checkpoint {name}.pth absent')
    for name in ('configs', 'checkpoints'):
        (tmp_path / name).symlink_to(ROOT / name)
    subprocess.run(
        [sys.executable, str(ROOT / 'tools' / 'data' / 'make_benchmark.py'), '--out',
         str(tmp_path / 'data' / 'bundled'), '--preset', 'tiny', '--formats', 'vid'],
        check=True, capture_output=True, env={'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1'},
    )  # fmt: skip
    frames = sorted((tmp_path / 'data/bundled/ILSVRC/Data/VID/val').glob('*/*.JPEG'))
    first = cv2.imread(str(frames[0]))
    writer = cv2.VideoWriter(
        str(tmp_path / 'my_video.mp4'), cv2.VideoWriter_fourcc(*'mp4v'), 25, first.shape[1::-1]
    )
    for f in frames[:3]:
        writer.write(cv2.imread(str(f)))
    writer.release()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_snippet_runs(repo_root, monkeypatch):
    real_capture = cv2.VideoCapture
    shown = []
    monkeypatch.setattr(
        cv2, 'VideoCapture', lambda src: real_capture('my_video.mp4' if src == 0 else src)
    )
    monkeypatch.setattr(cv2, 'imshow', lambda name, img: shown.append(img.shape))
    monkeypatch.setattr(cv2, 'waitKey', lambda ms: -1)
    monkeypatch.setattr(cv2, 'destroyAllWindows', lambda: None)
    snippets = _snippets()
    assert len(snippets) == 6
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for code in snippets:
            exec(compile(code, str(DOC), 'exec'), namespace)  # noqa: S102 - the doc's code
    # (the snippets' own output; mmengine's log lines go to stdout too)
    printed = [line for line in out.getvalue().splitlines() if ' - mmengine - ' not in line]
    infer = namespace['infer']
    assert printed[0].startswith('30 (') and "'airplane'" in printed[0]
    detections = [line for line in printed if ' at [' in line]
    names = {line.split(': ')[1].split()[0] for line in detections}
    assert detections and names <= set(infer.classes)
    assert sum('diverged: False' in line for line in printed) == 8  # 2 videos x 4 frames
    drawn = cv2.imread('vis/last_frame.png')
    assert drawn is not None and drawn.shape == cv2.imread(namespace['path']).shape
    cap = real_capture('my_video_out.mp4')
    count = 0
    while cap.read()[0]:
        count += 1
    assert count == 3  # the video loop wrote every frame
    assert len(shown) == 3 and shown[0] == drawn.shape  # the camera loop showed every frame
    for folder in ('vis_det', 'vis_seg'):
        files = list(Path(folder, 'vis').iterdir())  # named after the input image
        assert len(files) == 1 and cv2.imread(str(files[0])).shape == drawn.shape
    assert tuple(namespace['result'].pred_sem_seg.data.shape) == (1, *drawn.shape[:2])
