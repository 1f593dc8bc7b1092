# Two entry points, both self-contained on a fresh machine:
#   make demo   set up, then run the pipeline on the built-in default
#   make test   set up, then run the test suite (fast tests; `make test-slow` runs the slow ones)
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# MuJoCo renders off-screen: OSMesa on a CPU machine, EGL where an NVIDIA GPU is present.
export MUJOCO_GL ?= $(if $(wildcard /dev/nvidia0),egl,osmesa)

.PHONY: setup demo test test-slow bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@if [ "$(MUJOCO_GL)" = "osmesa" ] && ! ldconfig -p | grep -q libOSMesa; then \
		echo "Installing Debian's libosmesa6 (off-screen OpenGL for MuJoCo)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq libosmesa6; \
	fi
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# Pinned: any looser torch spec makes pip fetch the multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	# openpi's own client, for the serving tests; its numpy<2 pin is metadata only (pure Python), so no deps.
	$(PY) -m pip install -q --no-deps openpi-client==0.1.2
	touch $@

demo: setup
	$(VENV)/bin/vlm2vla demo --config demo

test: setup
	$(PY) -m pytest

test-slow: setup
	$(PY) -m pytest -m slow

bench: setup
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache
