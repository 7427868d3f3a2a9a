#!/usr/bin/env bash
# CI step: C/C++ and Python tests under AddressSanitizer + UBSan (see tests/run_sanitized.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import nanobind, gguf, numpy, pytest" 2>/dev/null || pip install -q nanobind gguf numpy pytest
command -v ninja >/dev/null || pip install -q ninja
exec timeout 1500 tests/run_sanitized.sh "$@"
