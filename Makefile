# The set-up commands of the README:
#   make demo   — install (first time only) and run the main job: streaming evaluation on the
#                 bundled benchmark
#   make data   — every bundled part the configs and shipped checkpoints read (adds what is
#                 missing, keeps what is there)
#   make test   — install (first time only), lint in check mode, run the test suite
PY := .venv/bin/python
BENCH := data/bundled

.PHONY: install lint test demo benchmark-data data

install:
	bash tools/install.sh

lint: install
	$(PY) -m ruff check mmvideoeq benchgen tools tests configs
	$(PY) -m ruff format --check mmvideoeq benchgen tools tests configs

# OMP_WAIT_POLICY=PASSIVE: idle OpenMP threads sleep instead of spinning, so the suite does not
# slow to a crawl when other jobs share the cores
test: install lint
	OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -q

# the parts the demo reads; kept when already there (about a second to check)
benchmark-data: | install
	$(PY) tools/data/make_benchmark.py --out $(BENCH) --preset small --seed 0 --formats vid cityscapes

data: | install
	$(PY) tools/data/make_benchmark.py --all

demo: benchmark-data
	bash tools/demo/run_main_job.sh
