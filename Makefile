# subspace-lab. `make lab` runs the whole lab on the embedded default; `make test` runs the tests.
# Both create .venv and install the project when missing (nothing to install by hand).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export MPLBACKEND := Agg

.PHONY: lab test ui flow lint dvc-yaml benchmarks clean-outputs

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

lab: $(STAMP)
	python -m subspacelab check
	python -m subspacelab dvc-yaml --check
	dvc --wait-for-lock repro   # waits (not fails) while a flow's stage holds DVC's lock
	-python -m subspacelab replay-tracking   # waits for the background MLflow senders
	@echo "Front page: reports/SUMMARY.md  |  runs: make ui"

test: $(STAMP)
	ruff check .
	python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

ui: $(STAMP)
	mlflow ui --backend-store-uri "sqlite:///$(CURDIR)/mlflow.db" --host 127.0.0.1 --port 5000

flow: $(STAMP)
	python -m flows

lint: $(STAMP)
	ruff check . && ruff format --check .

dvc-yaml: $(STAMP)
	python -m subspacelab dvc-yaml

benchmarks: $(STAMP)
	python -m benchmarks
