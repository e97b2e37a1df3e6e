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

# Study chains run side by side (params.yaml lab.jobs); DVC checks and records every stage.
lab: $(STAMP)
	@python -m subspacelab lab
	-@python -m subspacelab replay-tracking   # waits for the background MLflow senders

test: $(STAMP)
	ruff check .
	python -m pytest -n auto; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

# MLflow 3.17's UI opens experiments on its GenAI pages until its sidebar switch says model training.
ui: $(STAMP)
	@echo "MLflow: http://127.0.0.1:5000/#/experiments?workflowType=machine_learning"
	@echo "(that link opens the model-training view, each experiment on its runs; MLflow's own"
	@echo "default is its GenAI view, switched at the top of the sidebar and kept by the browser)"
	mlflow ui --backend-store-uri "sqlite:///$(CURDIR)/mlflow.db" --host 127.0.0.1 --port 5000

flow: $(STAMP)
	python -m flows

lint: $(STAMP)
	ruff check . && ruff format --check .

dvc-yaml: $(STAMP)
	python -m subspacelab dvc-yaml

benchmarks: $(STAMP)
	python -m benchmarks
