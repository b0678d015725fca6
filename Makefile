# clustcontrol: `make demo` runs the main job on an embedded demo cluster, `make test` runs all
# tests. Both set themselves up first (Debian packages, virtual environment, Python packages).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= demo-out

.PHONY: setup deps venv demo demo-boot test soak e2e bench bench-quick lint clean

setup: deps venv

deps:
	./scripts/install-deps

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

demo: setup
	rm -rf $(DEMO_DIR)
	$(VENV)/bin/clustcontrol demo --dir $(DEMO_DIR)

demo-boot: setup
	$(PY) scripts/demo-boot

e2e: setup
	$(VENV)/bin/python -m pytest tests/vm -v

bench: setup
	$(PY) bench/run.py --full

bench-quick: setup
	$(PY) bench/run.py --quick

test: setup
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# The node engine's oracle (tests/node/test_oracle.py) for much longer than in `make test`:
# CC_SOAK_EXAMPLES random sequences (default 300, about an hour on two cores), a new seed each
# run; -s prints what the boots did. A failure prints a blob: CC_ORACLE_REPRODUCE=BLOB replays it.
SOAK_EXAMPLES ?= 300
soak: setup
	CC_SOAK_EXAMPLES=$(SOAK_EXAMPLES) $(VENV)/bin/python -m pytest tests/node/test_oracle.py -s $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) $(DEMO_DIR) .mypy_cache .ruff_cache .pytest_cache
