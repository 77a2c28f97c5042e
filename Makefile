# hyperlens: two commands on a fresh machine.
#   make run    create .venv, install everything, run the main job (hyperlens tour) offline
#   make test   install if needed, run the test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
OFFLINE = HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1

.PHONY: run test install bench docs clean-runs

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

clean-runs:
	rm -rf runs
