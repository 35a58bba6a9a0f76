#!/usr/bin/env bash
# `make matrix`: schedx's comparison tests against every supported torch release, one venv at a time.
#
#   benchmarks/torch_matrix.sh                  every release in RELEASES
#   benchmarks/torch_matrix.sh 2.5.1 2.9.1      those releases only
#
# For each release: a fresh venv (build/matrix-venv) with that torch (the CUDA build from the index,
# about 5 GB: only one venv is on disk at a time, installed without pip's cache) and the test tools,
# then the comparison tests, then the venv is deleted. The tests compare schedx with the torch
# installed beside it, so they check each release's own behaviour.
#
# The extension is built once (it uses only the CPython API: no torch headers, so one build serves every
# release) into build/matrix/pkg, next to a copy of schedx/ and tests/; the tests run from there, so
# `import schedx` finds that build, never the checkout's (whose .so files belong to .venv).
#
# Each release's row (passed, failed, skipped, errors, wall times) replaces its row in MATRIX_TABLE
# (default benchmarks/results/torch-matrix.md); its pytest log is build/matrix/<release>.log.
# Exit status: 0 when every release passed. MATRIX_KEEP_VENV=1 (for working on one release) keeps the
# venv after the run and reuses it when it already holds the release.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

RELEASES=(2.5.1 2.6.0 2.7.1 2.8.0 2.9.1 2.10.0 2.11.0 2.12.1 2.13.0 2.14.1 2.15.0)
# The tests that compare schedx with torch and need nothing beyond torch and the tools below (not the
# frameworks' tests, the plots, packaging, the CUDA-only tests, nor schedx's own schedules and tracer).
TESTS=(
    test_parity_cases.py test_api.py test_state_dict.py test_bad_input.py test_engine.py
    test_parity_differential.py test_int_types.py test_lambda_calls.py test_overrides.py
    test_torch_module_rebound.py test_reentry.py
    test_tensor_mode.py test_tensor_errors.py test_tensor_aliasing.py test_tensor_leaks.py
    test_compile.py
)
TEST_REQS=(pytest hypothesis mpmath numpy "setuptools>=77")
PYTHON=${PYTHON:-python3}
TABLE=${MATRIX_TABLE:-benchmarks/results/torch-matrix.md}
WORK=build/matrix
VENV=build/matrix-venv
PKG=$WORK/pkg
# The machine's pip configuration may cap torch with a constraints file; the matrix installs exactly
# the release it names, so its pip commands read an empty constraints file instead (the machine's
# configuration is left as it is).
NO_CONSTRAINTS=$WORK/no-constraints.txt

if [ $# -gt 0 ]; then RELEASES=("$@"); fi

prepare() {
    rm -rf "$WORK" && mkdir -p "$PKG"
    : > "$NO_CONSTRAINTS"
    cp -r schedx tests pyproject.toml "$PKG"/
    rm -f "$PKG"/schedx/*.so "$PKG"/schedx/_build_info.json
}

holds_release() {  # release
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c \
        "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$1')" 2>/dev/null
}

make_venv() {  # release
    if [ "${MATRIX_KEEP_VENV:-0}" = 1 ] && holds_release "$1"; then echo "    reusing $VENV"; return 0; fi
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    PIP_CONSTRAINT="$(pwd)/$NO_CONSTRAINTS" "$VENV/bin/python" -m pip install -q --no-cache-dir \
        --disable-pip-version-check "torch==$1" "${TEST_REQS[@]}" 2>&1 | grep -v "is ignored" || true
    holds_release "$1" || { echo "torch $1 did not install"; return 1; }
}

build_extension() {  # once, with the first venv's Python
    [ -e "$WORK/built" ] && return 0
    echo "    building the extension into $PKG (SCHEDX_CUDA=0)"
    SCHEDX_CUDA=0 "$VENV/bin/python" setup.py -q build_ext --build-lib "$PKG" --build-temp "$WORK/tmp" \
        > "$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; return 1; }
    touch "$WORK/built"
}

# "12 passed, 3 skipped in 4.5s" -> the count of one outcome.
count() {  # outcome summary-line
    grep -oE "[0-9]+ $1" <<<"$2" | grep -oE '^[0-9]+' || echo 0
}

write_row() {  # release passed failed skipped errors install_s tests_s
    mkdir -p "$(dirname "$TABLE")"
    if [ ! -s "$TABLE" ]; then
        cat > "$TABLE" <<'EOF'
# schedx against each torch release (`make matrix`)

The comparison tests (benchmarks/torch_matrix.sh's list) run in a venv holding only that torch (the CUDA
build, run on the CPU) and the test tools. Wall times on the 2-core development machine, shared with
other work: the venv's installation (download included) and the tests.

| torch | passed | failed | skipped | errors | install | tests | date |
|---|---|---|---|---|---|---|---|
EOF
    fi
    local row="| $1 | $2 | $3 | $4 | $5 | $6 s | $7 s | $(date -u +%Y-%m-%d) |"
    local rows
    rows=$( (grep -E '^\| [0-9]+\.[0-9]+\.[0-9]+ \|' "$TABLE" | grep -vF "| $1 |" || true; echo "$row") \
            | sort -t'|' -k2,2V)
    { grep -vE '^\| [0-9]+\.[0-9]+\.[0-9]+ \|' "$TABLE"; echo "$rows"; } > "$TABLE.tmp"
    mv "$TABLE.tmp" "$TABLE"
}

run_release() {  # release index total
    local release=$1 log="$WORK/$1.log" start summary status=0
    echo "==> [matrix] torch $release ($2/$3): venv $VENV ($(df -h --output=avail . | tail -1 | tr -d ' ') free)"
    start=$SECONDS
    make_venv "$release"
    local install_s=$((SECONDS - start))
    build_extension
    echo "    torch $release installed in ${install_s} s; running ${#TESTS[@]} test files"
    start=$SECONDS
    (cd "$PKG" && "$OLDPWD/$VENV/bin/python" - <<'EOF'
import pathlib, schedx
# The build next to the copied tests, not the checkout's package.
assert pathlib.Path(schedx.__file__).resolve().parent == pathlib.Path("schedx").resolve(), schedx.__file__
EOF
    )
    (cd "$PKG" && "$OLDPWD/$VENV/bin/python" -m pytest -q -rs -p no:cacheprovider "${TESTS[@]/#/tests/}") \
        > "$log" 2>&1 || status=$?
    local tests_s=$((SECONDS - start))
    summary=$(tail -n 1 "$log")
    echo "    torch $release: $summary"
    write_row "$release" "$(count passed "$summary")" "$(count failed "$summary")" \
        "$(count skipped "$summary")" "$(count error "$summary")" "$install_s" "$tests_s"
    [ "${MATRIX_KEEP_VENV:-0}" = 1 ] || rm -rf "$VENV"
    return $status
}

prepare
failed=()
for i in "${!RELEASES[@]}"; do
    run_release "${RELEASES[$i]}" $((i + 1)) ${#RELEASES[@]} || failed+=("${RELEASES[$i]}")
done
echo "==> [matrix] results in $TABLE"
if [ ${#failed[@]} -gt 0 ]; then
    echo "==> [matrix] failed: ${failed[*]} (logs: $WORK/<release>.log)"
    exit 1
fi
echo "==> [matrix] every release passed: ${RELEASES[*]}"
