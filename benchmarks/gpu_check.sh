#!/usr/bin/env bash
# The GPU check of the CUDA backend, for a machine with an NVIDIA GPU (not part of CI, which has none):
# builds with CUDA, runs the kernel tests (CTest test_cuda_kernels), the CUDA pytest cases and the GPU
# benchmark. Stages run in the order given; each logs to $LOGS/<stage>.log and a failure does not stop the
# next stage (one run gives every result). Exit status: the number of failed stages.
#
#   benchmarks/gpu_check.sh build kernels pytest bench [kbench]
#
# Environment: LOGS (default gpu-logs), B (build dir, default build/gpu), CUDA_ARCH (default: the GPU's,
# e.g. 90), PYTHON (default python3), LAZYLLM_EDGE_CACHE / LAZYLLM_EDGE_REFERENCE as for the tests,
# PYTEST_ARGS (extra pytest arguments), BENCH_ARGS (arguments of benchmarks/cuda_vs_torch.py).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
LOGS=${LOGS:-$ROOT/gpu-logs}
B=${B:-build/gpu}
PY=${PYTHON:-python3}
PKG=$ROOT/$B/pkg
mkdir -p "$LOGS"
failed=0

arch() {
  if [ -n "${CUDA_ARCH:-}" ]; then echo "$CUDA_ARCH"; return; fi
  nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.' || echo 90
}

stage_build() {
  local common=(-S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLAZYLLM_EDGE_CUDA=ON -DLAZYLLM_EDGE_BUILD_TESTS=ON
                -DCMAKE_CUDA_ARCHITECTURES="$(arch)" -DPython_EXECUTABLE="$(command -v "$PY")"
                -DLAZYLLM_EDGE_PYTHON_OUTPUT_DIR="$PKG/lazyllm_edge")
  # without Python headers the C++ parts (kernel tests, CLI) still build
  cmake "${common[@]}" -DLAZYLLM_EDGE_PYTHON=ON || cmake "${common[@]}" -DLAZYLLM_EDGE_PYTHON=OFF || return 1
  ninja -C "$B" -k 0 || return 1
  for f in lazyllm_edge/*.py models/registry.json; do ln -sf "$ROOT/$f" "$PKG/lazyllm_edge/"; done
}

stage_kernels() { "$B/tests/cpp/test_cuda_kernels"; }

stage_kbench() { "$B/tests/cpp/test_cuda_kernels" --bench; }  # per-kernel timings (attention, GEMMs)

stage_pytest() {
  (cd /tmp && PYTHONPATH="$PKG:$ROOT/tests:${PYTHONPATH:-}" "$PY" -m pytest -q -rs -p no:cacheprovider \
     "$ROOT/tests/test_cuda.py" "$ROOT/tests/test_lazy.py" "$ROOT/tests/test_reference_llama.py" \
     -k "cuda or backend_selection" ${PYTEST_ARGS:-})
}

stage_bench() {
  PYTHONPATH="$PKG:${PYTHONPATH:-}" "$PY" -u benchmarks/cuda_vs_torch.py ${BENCH_ARGS:-}
}

for stage in "$@"; do
  echo "== $stage ($(date +%T))"
  if "stage_$stage" >"$LOGS/$stage.log" 2>&1; then echo "== $stage: ok"; else echo "== $stage: FAILED"; failed=$((failed + 1)); fi
  tail -n 25 "$LOGS/$stage.log"
done
exit $failed
