# hyperlens: two commands on a fresh machine.
#   make run    create .venv, install everything, run the main job (hyperlens tour) offline
#   make test   install if needed, run the test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
OFFLINE = HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1

.PHONY: run test install bench docs gpu-check clean-runs

install:
	@PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/setup.sh

run: install
	$(OFFLINE) $(VENV)/bin/hyperlens tour --out runs/tour

test: install
	$(OFFLINE) $(VENV)/bin/python -m pytest $(PYTEST_ARGS)

bench: install
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(OFFLINE) $(VENV)/bin/python $$b || exit 1; done

# The documentation site in site/ (open site/index.html); figures from the committed JSON.
docs: install
	NO_MKDOCS_2_WARNING=1 PYTHONPATH=src $(OFFLINE) $(VENV)/bin/python -m mkdocs build --strict -d site

# make gpu-check: the tests marked cuda (pytest -m cuda) and a CUDA-beside-CPU benchmark of
# the device paths, written to benchmarks/results/gpu_check.json (scripts/gpu_check.py says
# what each part does). It needs a CUDA GPU and installs nothing (PYTHONPATH=src), so it runs
# on the bare GPU machine; GPU_CHECK_ARGS=--dry-run prints the plan and checks the imports
# anywhere (here: make gpu-check PYTHON=.venv/bin/python GPU_CHECK_ARGS=--dry-run).
# With the device tool, one call, nothing to carry (the command is one line):
#   run(timeout_s=600, command="set -o pipefail; export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
#       TRANSFORMERS_OFFLINE=1; PYTHONPATH=src python3 scripts/gpu_check.py 2>&1 | tee
#       $OUT/gpu_check.log; rc=$?; cp benchmarks/results/gpu_check.json $OUT/; exit $rc")
gpu-check:
	$(OFFLINE) PYTHONPATH=src $(PYTHON) scripts/gpu_check.py $(GPU_CHECK_ARGS)

clean-runs:
	rm -rf runs
