# The two set-up commands of the README:
#   make demo   — install (first time only) and run the main job: streaming evaluation on the
#                 bundled benchmark
#   make test   — install (first time only), lint in check mode, run the test suite
PY := .venv/bin/python
BENCH := data/bundled

.PHONY: install lint test demo benchmark-data

install:
	bash tools/install.sh

lint: install
	$(PY) -m ruff check mmvideoeq benchgen tools tests configs
	$(PY) -m ruff format --check mmvideoeq benchgen tools tests configs

# OMP_WAIT_POLICY=PASSIVE: idle OpenMP threads sleep instead of spinning, so the suite does not
# slow to a crawl when other jobs share the cores
test: install lint
	OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -q

$(BENCH)/.done: | install
	$(PY) tools/data/make_benchmark.py --out $(BENCH) --preset small --seed 0 --overwrite
	touch $@

benchmark-data: $(BENCH)/.done

demo: benchmark-data
	bash tools/demo/run_main_job.sh
