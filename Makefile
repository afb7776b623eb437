# Set-up and everyday commands. `make run` and `make test` create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_PIN := torch==2.13.0
RIVC := $(VENV)/bin/rivc
TIMESTEPS ?= 40000
TARGET ?= akida
BITS ?= 4
SEED ?= 0

.PHONY: run test test-all bench bench-zoo ablation ablation-quick tune failure-modes clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_PIN)"
	$(PY) -m pip install --quiet -e ".[dev]" "$(TORCH_PIN)"
	# NeuroBench (tests cross-check the cost report's counts): its own requirements would pull another torch
	$(PY) -m pip install --quiet --no-deps "neurobench==2.3.0"
	touch $(STAMP)

run: $(STAMP)  ## the mission: train RIVC for Akida 2.0 (emulated), export to the chip, deploy on Akida's engine
	$(RIVC) train --env CartPole-v1 --target $(TARGET) --bits $(BITS) --timesteps $(TIMESTEPS) --seed $(SEED) --eval-freq 2500 --force \
		--out runs/quickstart
	$(RIVC) export runs/quickstart --backend akida --out runs/quickstart/policy --force
	$(RIVC) deploy runs/quickstart/policy

test: $(STAMP)  ## the fast test suite (what CI runs)
	$(VENV)/bin/pytest -q

test-all: $(STAMP)  ## also the slow end-to-end runs
	$(VENV)/bin/pytest -q -m "slow or not slow"

bench: $(STAMP)  ## benchmarks: conversion/latency and training throughput vs Stable-Baselines3 DQN
	$(PY) benchmarks/run.py

bench-zoo: $(STAMP)  ## RIVC vs SB3 DQN on the RL Zoo's settings, 5 seeds (hours on 2 cores; resumable) -> docs/ZOO.md
	$(VENV)/bin/pip install --quiet -e ".[zoo]" "$(TORCH_PIN)"
	$(PY) benchmarks/zoo.py

ablation-quick: $(STAMP)  ## the paper's ablation, 4-bit, short budgets (about 10 min on 2 cores) -> docs/
	$(PY) benchmarks/ablation.py --quick

ablation: $(STAMP)  ## the full ablation: 2/4/8 bits, 3 seeds, 3 tasks (about 70 min on 2 cores; resumable) -> docs/
	$(PY) benchmarks/ablation.py

TUNE_ENV ?= CartPole-v1
TRIALS ?= 20
TUNE_STEPS ?= 40000
STORAGE ?= runs/tune/study.log
tune: $(STAMP)  ## Optuna study of RIVC's knobs (TPE, median pruner; STORAGE shared by processes/machines) -> docs/TUNING.md
	$(PY) benchmarks/tune.py --env $(TUNE_ENV) --trials $(TRIALS) --timesteps $(TUNE_STEPS) --storage $(STORAGE)
	$(PY) benchmarks/tune.py --report --storage $(STORAGE)

failure-modes: $(STAMP)  ## how CartPole policies fail, per variant and bit width -> docs/failure_modes.md
	$(PY) benchmarks/failure_modes.py

clean:
	rm -rf $(VENV) runs *.egg-info
