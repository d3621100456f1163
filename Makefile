# bnlab: `make demo` (a real paired run with plots), `make test` (the suite).
# Both install into .venv on demand from constraints.txt.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# Absolute, so that runs started from other directories (tests, sweep jobs) find the same data.
DATA    ?= $(abspath $(or $(BNLAB_DATA_DIR),$(wildcard ../shared/data/cifar10-mini)))
ifneq ($(DATA),)
export BNLAB_DATA_DIR := $(DATA)
endif

.PHONY: help install demo test test-slow lint bench gpu-check reproduce clean
help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/bnlab: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
	$(BIN)/pip install -q -c constraints.txt -e '.[test]' 2>&1 | grep -v "is ignored" ; test -x $(BIN)/bnlab
	@touch $(BIN)/bnlab

install: $(BIN)/bnlab  ## create .venv with pinned dependencies

DEMO_DIR := outputs/demo/$(shell date +%Y-%m-%d_%H-%M-%S)
demo: install  ## paired BN / no-BN run on CIFAR-10 (narrow VGG-11), summary table and plots
	$(BIN)/bnlab experiment=demo data.download=true hydra.run.dir=$(DEMO_DIR)
	$(BIN)/bnlab-plot $(DEMO_DIR)
	$(BIN)/bnlab-explore $(DEMO_DIR)
	$(BIN)/bnlab-report $(DEMO_DIR)

test: install  ## fast test suite (real runs on the CIFAR-10 subset, W&B offline)
	$(BIN)/pytest -q

test-slow: install  ## the slow end-to-end tests only
	$(BIN)/pytest -q -m slow

lint: install  ## ruff (rules in pyproject.toml) over bnlab/, tests/, scripts/
	$(BIN)/ruff check bnlab tests scripts

bench: install  ## benchmarks (probe cost, curvature solvers, training speed vs the standard loop); output in results/bench/
	$(BIN)/python -m bnlab.bench.probes --out results/bench/probes.txt
	$(BIN)/python -m bnlab.bench.curvature --out results/bench/curvature.txt
	$(BIN)/bnlab-bench --models vgg11,resnet20:0.5,resnet20 --sweep-jobs 8 --sweep-n-jobs 2 --out results/bench/speed.txt

gpu-check:  ## on a CUDA machine: gpu tests, a probed run, the GPU bench -> results/bench/gpu.txt (without CUDA: one line, exit 0)
	@BIN=$(BIN) bash scripts/gpu_check.sh

reproduce: install  ## every experiment at CPU scale into results/ (+ figures, claims, report); ~75 min on 2 cores
	BIN=$(BIN) bash scripts/reproduce.sh

clean:  ## remove run outputs (not .venv)
	rm -rf outputs multirun wandb .pytest_cache
