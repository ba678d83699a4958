#!/usr/bin/env bash
# The README's main job: streaming evaluation (StreamDEQ, thesis Table 4.3 / Fig. 4.6-4.9 protocol)
# of the bundled SUR-StreamDEQ detector on the bundled video benchmark, next to the cold-start
# baseline and the full solve. The checkpoint ships in checkpoints/; if it is missing it is
# re-created by training (minutes on 2 CPU cores).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
CFG=configs/streamdeq_vid/faster-rcnn_mdeq-tiny-sur8_16e_bundled-vid.py
CKPT=checkpoints/faster-rcnn_mdeq-tiny-sur8_16e_bundled-vid.pth
WORK=${WORK:-work_dirs/main_job}
if [[ ! -f $CKPT ]]; then
  echo "[main job] $CKPT not found: training it on the bundled benchmark"
  "$PY" tools/train.py "$CFG" --work-dir work_dirs/bundled_vid_train
  "$PY" tools/model_converters/publish_checkpoint.py \
    "$(cat work_dirs/bundled_vid_train/last_checkpoint)" "$CKPT"
fi
"$PY" tools/test.py "$CFG" "$CKPT" --streaming --iters 1 2 4 8 --work-dir "$WORK"
echo "[main job] results: $WORK/streaming/results.json, curves: $WORK/streaming/curves.png"
