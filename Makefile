# `make test`: create .venv if missing, install the exact pins and the package, run the suite.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

# Debian packages the demo corpus needs: espeak-ng (speech with word timings) and bible-kjv (public-domain text).
SYSTEM_PACKAGES := espeak-ng bible-kjv
# And the suite: a one-node SLURM (slurm-wlm + munge) that tests/launch/test_slurm.py starts (skipped without them).
TEST_PACKAGES := $(SYSTEM_PACKAGES) slurm-wlm munge

# `make demo` scale: multiplies the corpus, the evaluation set and the FLOP budget (1 = about 20 min on 2 cores,
# 2026-11-29).
DEMO_SCALE ?= 1
# `make demo` seeds, e.g. DEMO_SEEDS="0 1 2" (default: the sweep file's, recipes/sweep_make_demo.yaml).
DEMO_SEEDS ?=

# What `make gpu-check` installs on a CUDA machine that has torch (and transformers, tiktoken, ...) but no network.
GPU_PACKAGES := torchtitan omegaconf torchdata soundfile cffi pycparser soxr zstandard tyro docstring_parser \
	typeguard spmd_types dill jiwer rapidfuzz click
GPU_WHEELS ?= gpu_wheels

.PHONY: install system-deps demo test bench gpu-wheels gpu-check

$(PY):
	python3 -m venv $(VENV)

# The installed pins take 2.6 GB (2026-11-29): a full disk is said before pip starts, not midway through it.
$(STAMP): requirements.txt setup.py | $(PY)
	@free=$$(df -Pk $(VENV) | awk 'NR==2 {print int($$4 / 1024)}'); [ -e $@ ] || [ -z "$$free" ] || [ "$$free" -ge 3072 ] || \
		{ echo "make: installing into $(VENV) needs about 3 GB free, $$free MB are: free some space first"; exit 1; }
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps -e .
	touch $@

install: $(STAMP)

# Installs PACKAGES (the demo's, or the suite's under `make test`) where root can; otherwise says what to run.
PACKAGES = $(SYSTEM_PACKAGES)
test: PACKAGES = $(TEST_PACKAGES)

system-deps:
	@missing=""; \
	for pkg in $(PACKAGES); do dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq$$missing; \
		else echo "missing Debian packages; run: sudo apt-get install -y$$missing"; fi; \
	fi

demo: $(STAMP) system-deps
	@for pkg in $(SYSTEM_PACKAGES); do dpkg -s $$pkg >/dev/null 2>&1 || \
		{ echo "make demo needs the Debian package $$pkg: sudo apt-get install -y $(SYSTEM_PACKAGES)"; exit 1; }; done
	$(PY) -m lst_train demo --scale $(DEMO_SCALE) $(if $(DEMO_SEEDS),--seeds $(DEMO_SEEDS)) --out demo_out

test: $(STAMP) system-deps
	$(PY) -m pytest tests

bench: $(STAMP)
	$(PY) bench/pool_unpool.py
	$(PY) bench/loader.py

# Where the package registry is reachable: cp312 manylinux wheels of GPU_PACKAGES at requirements.txt's pins.
gpu-wheels:
	mkdir -p $(GPU_WHEELS)
	python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d $(GPU_WHEELS) $$(grep -E "^($$(echo $(GPU_PACKAGES) | tr ' ' '|'))==" requirements.txt)

# On the CUDA machine (torch preinstalled, no network; gpu_wheels/ copied along): GPU tests and benchmarks, at most
# ~9 min (the stage limits).
gpu-check:
	bash launch/gpu_check.sh
