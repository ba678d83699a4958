#!/usr/bin/env bash
# Create ./.venv and install mmvideoeq with its pinned stack (requirements.txt).
#
# Idempotent: a stamp file records the hash of requirements.txt + setup.py; when nothing changed the
# script returns in about a second. mmcv 2.1.0 has no binary wheel for this platform, so its ops are
# compiled once (about 18 min on 2 cores) into a wheelhouse outside the checkout
# (${MMVIDEOEQ_WHEELHOUSE:-~/.cache/mmvideoeq/wheels}) and reused by every later install and clone.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${MMVIDEOEQ_VENV:-$ROOT/.venv}
WHEELHOUSE=${MMVIDEOEQ_WHEELHOUSE:-$HOME/.cache/mmvideoeq/wheels}
PY=${PYTHON:-python3}
STAMP=$VENV/.mmvideoeq-installed
want=$(cat requirements.txt setup.py | sha256sum | cut -d' ' -f1)
if [[ -f $STAMP && "$(cat "$STAMP")" == "$want" ]]; then
  echo "[install] $VENV is up to date"; exit 0
fi
[[ -x $VENV/bin/python ]] || "$PY" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install 'pip>=24' 'wheel' 'setuptools>=77.0.3,<81' 'ninja'
# torch first (local CPU wheel), numpy<2 for the OpenMMLab 3.x stack.
"${pip[@]}" install "torch==2.13.0" "numpy==1.26.4"
mkdir -p "$WHEELHOUSE"
if ! ls "$WHEELHOUSE"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
  echo "[install] building mmcv 2.1.0 with ops (once; ~18 min on 2 cores) into $WHEELHOUSE"
  MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} "${pip[@]}" wheel --no-build-isolation --no-deps \
    -w "$WHEELHOUSE" mmcv==2.1.0
fi
"${pip[@]}" install --find-links "$WHEELHOUSE" -r requirements.txt
"${pip[@]}" install --no-deps --no-build-isolation -e .
"$VENV/bin/python" - <<'PY'
import mmcv, mmdet, mmseg, mmengine, torch
from mmcv.ops import RoIAlign, nms  # noqa: F401  (compiled ops present)
print(f'[install] torch {torch.__version__}, mmengine {mmengine.__version__}, mmcv {mmcv.__version__} '
      f'(ops), mmdet {mmdet.__version__}, mmseg {mmseg.__version__}')
PY
echo "$want" > "$STAMP"
