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

.PHONY: install repro test export-check pytest nbtest bench paper clean

$(STAMP): requirements.txt requirements-dev.txt setup.py settings.ini
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) --upgrade pip 'setuptools<81' wheel $(QUIET)
	# torch first, pinned, so nothing else resolves another build
	$(PIP) torch==2.13.0 $(QUIET)
	$(PIP) -r requirements.txt -r requirements-dev.txt $(QUIET)
	$(PIP) --no-deps --no-build-isolation -e . $(QUIET)
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

install: $(STAMP)

# Until the sweep runner lands, the embedded default executes every notebook at smoke
# scale with papermill (outputs under results/notebooks/, run records under results/runs/)
# and writes results/smoke/summary.md.
REPRO_NBS ?= $(sort $(wildcard nbs/[0-9]*.ipynb))
repro: $(STAMP)
	@mkdir -p results/notebooks results/smoke
	@echo "# make repro: smoke scale, $$(date -u +%FT%TZ)" > results/smoke/summary.md
	@echo "" >> results/smoke/summary.md
	@echo "| notebook | status | seconds |" >> results/smoke/summary.md
	@echo "|---|---|---:|" >> results/smoke/summary.md
	@t0=$$(date +%s); fail=0; for nb in $(REPRO_NBS); do \
	  n=$$(basename $$nb); s=$$(date +%s); \
	  if $(BIN)/papermill -k python3 --log-level WARNING $$nb results/notebooks/$$n -p scale smoke -p output_dir results \
	       >results/notebooks/$$n.log 2>&1; \
	  then st=ok; else st=FAILED; fail=1; fi; \
	  echo "| $$n | $$st | $$(( $$(date +%s) - s )) |" | tee -a results/smoke/summary.md; \
	done; \
	echo "" >> results/smoke/summary.md; \
	echo "Total: $$(( $$(date +%s) - t0 )) s. Run records: $$(ls results/runs/*.json 2>/dev/null | wc -l) in results/runs/." >> results/smoke/summary.md; \
	echo "Summary: results/smoke/summary.md (executed notebooks in results/notebooks/)"; exit $$fail

export-check: $(STAMP)
	$(BIN)/nbdev_export
	@if [ -n "$$(git status --porcelain -- knife_repro)" ]; then \
	  echo "nbdev_export changed knife_repro/: export the notebooks and commit both"; \
	  git status --porcelain -- knife_repro; git --no-pager diff --stat -- knife_repro; exit 1; fi
	@echo "export check: knife_repro/ matches nbs/"

pytest: $(STAMP)
	$(BIN)/python -m pytest -q tests

nbtest: $(STAMP)
	$(BIN)/nbdev_test --n_workers 2 --timing

test: export-check pytest nbtest

bench: $(STAMP)
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

paper: $(STAMP)
	$(BIN)/python -m knife_repro.sweep $(SWEEP) --scale paper $(ARGS)

clean:
	rm -rf $(VENV) .cache results/runs results/notebooks
