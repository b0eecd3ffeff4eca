# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv when missing, installs torch first (the CPU build 2.13.0 here, so no
# dependency can pull a CUDA build), then the project with the extras it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test check lint typecheck bench clean-venv

$(VENV)/.torch:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	touch $@

$(VENV)/.base: $(VENV)/.torch pyproject.toml
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.dev: $(VENV)/.torch pyproject.toml
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@ $(VENV)/.base

demo: $(VENV)/.base
	$(VENV)/bin/obliviate demo

check: $(VENV)/.dev
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy benchmarks

test: check
	./scripts/install-chromium.sh
	$(VENV)/bin/pytest

bench: $(VENV)/.dev
	$(PY) benchmarks/run_all.py

clean-venv:
	rm -rf $(VENV)
