# schedx — set-up, tests and demonstration.
#
#   make test          create .venv if needed, build the extension, run the test suite
#   make demo          run the main demonstration (python -m schedx.demo)
#   make parity-long   long randomized differential run against torch (tests marked `slow`)
#   make bench         CPU benchmark against torch and the C floor, timed interleaved, plus a callgrind
#                      profile; writes benchmarks/results/cpu.md, cpu.json, callgrind.json, cpu-speedup.png
#   make compile-cuda  compile-check csrc/*.cu with nvcc (no GPU needed); skipped without nvcc
#   make clean         remove build outputs (keeps .venv)
#   make distclean     clean, and remove .venv
#
# Everything runs from nothing: the first `make test` creates .venv with `python3 -m venv`.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

# torch must be pinned exactly: this resolves to the CPU wheel on local disk. An open range or a
# bare `torch` would download a multi-GB CUDA build.
TORCH_REQ := torch==2.13.0
# Test, build and plotting tools. Nothing here depends on torch, so none of it can pull another torch.
# (pybind11 is listed for the extension build, which runs with --no-build-isolation.)
DEV_REQS  := pytest pytest-benchmark hypothesis mpmath numpy ninja setuptools wheel pybind11 matplotlib

# Stamps: the environment is reinstalled when the project metadata changes, the extension is rebuilt
# when its sources or setup.py change.
ENV_STAMP   := $(VENV)/.installed
BUILD_STAMP := $(VENV)/.built
PROJECT_FILES := $(wildcard pyproject.toml setup.py)
CSRC_FILES    := $(wildcard csrc/*)

.PHONY: setup test demo parity-long bench compile-cuda clean distclean

setup: $(BUILD_STAMP)

$(ENV_STAMP): $(PROJECT_FILES)
	@echo "==> [setup] creating virtual environment $(VENV) ($(PYTHON) -m venv)"
	@if [ -x "$(PY)" ]; then echo "    $(VENV) exists; reusing it"; else $(PYTHON) -m venv $(VENV); fi
	@echo "==> [setup] installing $(TORCH_REQ) and: $(DEV_REQS)"
	$(PIP) install --disable-pip-version-check $(TORCH_REQ) $(DEV_REQS)
	@touch $@

$(BUILD_STAMP): $(ENV_STAMP) $(CSRC_FILES) $(PROJECT_FILES)
	@echo "==> [build] building schedx and its extension (pip install --no-build-isolation -e .)"
	$(PIP) install --disable-pip-version-check --no-build-isolation -e .
	@touch $@

test: $(BUILD_STAMP)
	@echo "==> [test] running the test suite (pytest -q; tests marked slow are deselected)"
	$(PY) -m pytest -q

demo: $(BUILD_STAMP)
	@echo "==> [demo] python -m schedx.demo"
	$(PY) -m schedx.demo

parity-long: $(BUILD_STAMP)
	@echo "==> [parity-long] long randomized differential run against torch"
	SCHEDX_HYPOTHESIS_PROFILE=long $(PY) -m pytest -q -m 'slow or not slow' tests/test_parity_differential.py

bench: $(BUILD_STAMP)
	@echo "==> [bench] CPU benchmark: torch vs schedx vs the C floor, then callgrind (benchmarks/run.sh)"
	PY=$(PY) benchmarks/run.sh

# Compile-check the CUDA sources with nvcc alone (their own headers, Python.h and the CUDA runtime): no
# GPU and no torch headers needed. Succeeds, saying so, when there is no nvcc or no .cu file.
CU_FILES := $(wildcard csrc/*.cu)
PY_INCLUDE = $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
NVCC_FLAGS = -std=c++17 --fmad=false -Icsrc -I$(PY_INCLUDE)

compile-cuda:
	@nvcc="$$(command -v nvcc || true)"; \
	if [ -z "$$nvcc" ] && [ -n "$${CUDA_HOME:-}" ] && [ -x "$$CUDA_HOME/bin/nvcc" ]; then nvcc="$$CUDA_HOME/bin/nvcc"; fi; \
	if [ -z "$$nvcc" ]; then echo "==> [compile-cuda] nvcc not found (PATH, \$$CUDA_HOME/bin): skipping the CUDA compile check"; exit 0; fi; \
	if [ -z "$(CU_FILES)" ]; then echo "==> [compile-cuda] no csrc/*.cu files: nothing to compile"; exit 0; fi; \
	echo "==> [compile-cuda] compile-checking $(words $(CU_FILES)) file(s) with $$nvcc ($$("$$nvcc" --version | tail -n 2 | head -n 1))"; \
	for f in $(CU_FILES); do \
	  echo "    $$nvcc $(NVCC_FLAGS) -c -o /dev/null $$f"; \
	  "$$nvcc" $(NVCC_FLAGS) -c -o /dev/null "$$f"; \
	done; \
	echo "==> [compile-cuda] ok"

clean:
	@echo "==> [clean] removing build outputs (keeping $(VENV))"
	rm -rf build dist *.egg-info schedx/*.so schedx/*.pyd
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf
	rm -f $(BUILD_STAMP)

distclean: clean
	@echo "==> [distclean] removing $(VENV)"
	rm -rf $(VENV)
