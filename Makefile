# schedx — set-up, tests and demonstration.
#
#   make test          create .venv if needed, build the extension, run the test suite
#   make demo          run the main demonstration (python -m schedx.demo)
#   make parity-long   long randomized differential run against torch (tests marked `slow`)
#   make bench         CPU benchmark against torch and the C floor, timed interleaved, plus a callgrind
#                      profile; writes benchmarks/results/cpu.md, cpu.json, callgrind.json, cpu-speedup.png
#   make compile-cuda  compile-check csrc/*.cu with nvcc (no GPU needed); skipped without nvcc
#   make sanitize      the engine built with AddressSanitizer + UBSan, under the parity and fuzz tests
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
# Frameworks the tests check schedx against (transformers' schedule functions and Trainer, accelerate,
# Lightning). Pinned; installed in the same command as the pinned torch, which satisfies their torch
# requirement, so none of them can pull another torch.
FRAMEWORK_REQS := transformers==5.24.0 accelerate==1.15.0 pytorch-lightning==2.6.6

# Stamps: the environment is reinstalled when the project metadata changes, the extension is rebuilt
# when its sources or setup.py change.
ENV_STAMP   := $(VENV)/.installed
BUILD_STAMP := $(VENV)/.built
PROJECT_FILES := $(wildcard pyproject.toml setup.py)
CSRC_FILES    := $(wildcard csrc/*)

.PHONY: setup test demo parity-long curves bench compile-cuda sanitize clean distclean

setup: $(BUILD_STAMP)

$(ENV_STAMP): $(PROJECT_FILES) Makefile
	@echo "==> [setup] creating virtual environment $(VENV) ($(PYTHON) -m venv)"
	@if [ -x "$(PY)" ]; then echo "    $(VENV) exists; reusing it"; else $(PYTHON) -m venv $(VENV); fi
	@echo "==> [setup] installing $(TORCH_REQ) and: $(DEV_REQS) $(FRAMEWORK_REQS)"
	$(PIP) install --disable-pip-version-check $(TORCH_REQ) $(DEV_REQS) $(FRAMEWORK_REQS)
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

# The curves of the README's "Choosing a schedule", drawn by the CLI.
CURVES := benchmarks/results/choosing
curves: $(BUILD_STAMP)
	@echo "==> [curves] python -m schedx plot ... -> $(CURVES)/*.png"
	@mkdir -p $(CURVES)
	$(PY) -m schedx plot "linear_with_warmup(300, 5000)" "cosine_with_warmup(300, 5000)" \
	    "constant_with_warmup(300)" --lr 3e-5 --steps 5000 -o $(CURVES)/fine-tuning.png
	$(PY) -m schedx plot "OneCycleLR(max_lr=0.4, total_steps=9000)" \
	    "warmup(450, cosine(steps=8550, end=0.01))" "MultiStepLR(milestones=[3000, 6000, 8000], gamma=0.1)" \
	    --lr 0.4 --steps 9000 -o $(CURVES)/from-scratch.png
	$(PY) -m schedx plot "warmup(2500, cosine(steps=17500))" "warmup(500, cosine(steps=19500))" \
	    --lr 3.2 --steps 20000 -o $(CURVES)/large-batch.png
	$(PY) -m schedx plot "warmup_stable_decay(1000, 4000, num_training_steps=30000, decay_type='1-sqrt')" \
	    "inverse_sqrt(1000)" "cosine_with_min_lr(1000, 30000, min_lr_rate=0.1)" \
	    --lr 6e-4 --steps 30000 -o $(CURVES)/open-ended.png
	$(PY) -m schedx plot "CosineAnnealingWarmRestarts(T_0=1000, T_mult=2, eta_min=1e-4)" \
	    "timm_cosine(t_initial=1000, lr_min=1e-4, cycle_mul=2.0, cycle_decay=0.6, cycle_limit=4)" \
	    --lr 0.1 --steps 15000 -o $(CURVES)/restarts.png

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

# The engine built with -fsanitize=address,undefined into build/sanitize, next to a copy of the package
# and the tests (run from there, so `import schedx` finds that build), under the parity, bad-input,
# tensor-mode, re-entry (finalizers in a step) and thread-stress tests. Python itself is not instrumented: libasan is preloaded, with libstdc++ right after
# it so that ASan's __cxa_throw interceptor finds the real one when torch throws a C++ exception; leak
# checks are off (CPython keeps memory until exit), PYTHONMALLOC=malloc puts Python's objects under
# ASan's watch too (a use after free of a float or a dict is caught), and the first report stops the run.
SANITIZE_DIR := build/sanitize
SANITIZE_TESTS := tests/test_parity_differential.py tests/test_parity_cases.py tests/test_bad_input.py \
                  tests/test_state_dict.py tests/test_tensor_mode.py tests/test_plot.py \
                  tests/test_schedules.py tests/test_tracing.py tests/test_fuzz.py tests/test_engine.py \
                  tests/test_reentry.py tests/test_thread_stress.py

sanitize: $(ENV_STAMP)
	@echo "==> [sanitize] building the engine with AddressSanitizer + UBSan into $(SANITIZE_DIR)"
	rm -rf $(SANITIZE_DIR) $(SANITIZE_DIR)-tmp && mkdir -p $(SANITIZE_DIR)
	cp -r schedx tests pyproject.toml $(SANITIZE_DIR)/ && rm -f $(SANITIZE_DIR)/schedx/*.so
	SCHEDX_SANITIZE=1 SCHEDX_CUDA=0 $(PY) setup.py -q build_ext --build-lib $(SANITIZE_DIR) \
	    --build-temp $(SANITIZE_DIR)-tmp
	@echo "==> [sanitize] running the parity and bad-input tests against it"
	cd $(SANITIZE_DIR) && ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 PYTHONMALLOC=malloc \
	    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	    LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libstdc++.so)" \
	    $(abspath $(PY)) -m pytest -q -p no:cacheprovider $(SANITIZE_TESTS)

clean:
	@echo "==> [clean] removing build outputs (keeping $(VENV))"
	rm -rf build dist *.egg-info schedx/*.so schedx/*.pyd
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf
	rm -f $(BUILD_STAMP)

distclean: clean
	@echo "==> [distclean] removing $(VENV)"
	rm -rf $(VENV)
