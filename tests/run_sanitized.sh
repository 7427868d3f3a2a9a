#!/usr/bin/env bash
# Builds the core, the C API, the C/C++ tests, the Python extension and the test hooks' module (_testing) with
# AddressSanitizer + UBSan (LAZYLLM_EDGE_SANITIZE=ON) in build/asan, then runs the C/C++ tests (CTest, leak
# checking on) and the Python tests on tiny generated models with libasan preloaded into Python. A few minutes on
# 2 cores (plus the build: ~5 min cold, seconds with a warm ccache). Exit code non-zero on any failure or report.
#   tests/run_sanitized.sh [extra pytest args]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=$ROOT/build/asan
PY=$B/py  # the sanitized extensions go here, with a copy of the Python sources: the dev build stays as is
mkdir -p "$PY/lazyllm_edge"

cmake -S "$ROOT" -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLAZYLLM_EDGE_SANITIZE=ON \
  -DLAZYLLM_EDGE_BUILD_TESTS=ON -DLAZYLLM_EDGE_PYTHON=ON -DLAZYLLM_EDGE_TESTING=ON \
  -DLAZYLLM_EDGE_PYTHON_OUTPUT_DIR="$PY/lazyllm_edge" >/dev/null
cmake --build "$B"
cp "$ROOT"/lazyllm_edge/*.py "$PY/lazyllm_edge/"
cp "$ROOT/models/registry.json" "$PY/lazyllm_edge/"

# any UBSan finding is fatal and shows a stack; ASan aborts on its first report anyway
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1

echo "== C/C++ tests under ASan+UBSan"
(cd "$B" && ctest --output-on-failure --timeout 600)

echo "== Python tests on tiny models under ASan+UBSan"
LIBASAN=$(${CXX:-g++} -print-file-name=libasan.so)
LIBSTDCXX=$(${CXX:-g++} -print-file-name=libstdc++.so)
[ -f "$LIBASAN" ] || { echo "libasan.so not found ($LIBASAN)"; exit 1; }
# libstdc++ is preloaded too: python does not link it, and ASan must find the real __cxa_throw at start-up
PRELOAD="$LIBASAN $LIBSTDCXX"
# CPython's own allocations are never freed at exit: leak checking is for the C/C++ tests only
# -s: a sanitizer report must reach the log, not die inside pytest's capture
cd "$B"  # not the repo root: `python -m pytest` must import the sanitized package from $PY
LD_PRELOAD=$PRELOAD ASAN_OPTIONS=detect_leaks=0 PYTHONPATH=$PY python3 -c \
  "import lazyllm_edge._core as c, lazyllm_edge._testing as t
for m in (c, t): assert m.__file__.startswith('$PY'), m.__file__"
LD_PRELOAD=$PRELOAD ASAN_OPTIONS=detect_leaks=0 PYTHONPATH=$PY python3 -m pytest -q -s -p no:cacheprovider \
  "$ROOT/tests/test_hardening.py" "$ROOT/tests/test_kernels.py" "$ROOT/tests/test_errors.py" \
  "$ROOT/tests/test_lazy.py" -k "not bit_identical and not long_decode" "$@"
echo "run_sanitized: OK"
