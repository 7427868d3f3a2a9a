#!/usr/bin/env bash
# CI step: libFuzzer (clang, with ASan+UBSan) on the GGUF reader + tokenizer loading (fuzz_gguf), on
# tokenization of arbitrary text (fuzz_tokenizer), on the C++ chat path (fuzz_chat: template family, messages,
# tokenization with special tokens), on the lazy-spec parser (fuzz_lazy_spec) and on the saved-session reader
# (fuzz_session_file), for a fixed time each (FUZZ_SECONDS, FUZZ_TOKENIZER_SECONDS, FUZZ_CHAT_SECONDS,
# FUZZ_LAZY_SPEC_SECONDS, FUZZ_SESSION_SECONDS: default 45 / 15 / 10 / 5 / 15, 90 s in all), seeded with generated
# tiny models, the head of a real model, tests/fuzz/seeds/, tests/fuzz/regressions/ and
# tests/fuzz/session_regressions/. A crash, hang (>10 s per input), leak or sanitizer report fails the step; its
# input is copied to tests/fuzz/regressions/ (session_regressions/ for the session reader) to be committed as a
# regression file (replayed by the CTests gguf_regressions and session_file_regressions).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
B=$ROOT/build/fuzz
SECONDS_GGUF=${FUZZ_SECONDS:-45}
SECONDS_TOK=${FUZZ_TOKENIZER_SECONDS:-15}
SECONDS_CHAT=${FUZZ_CHAT_SECONDS:-10}
SECONDS_SPEC=${FUZZ_LAZY_SPEC_SECONDS:-5}
SECONDS_SESSION=${FUZZ_SESSION_SECONDS:-15}
if ! command -v clang++ >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang >/dev/null
fi
python3 -c "import gguf, numpy" 2>/dev/null || pip install -q gguf numpy
command -v ninja >/dev/null || pip install -q ninja

echo "== build the fuzz targets (clang, libFuzzer, ASan+UBSan)"
CC=clang CXX=clang++ cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLAZYLLM_EDGE_FUZZ=ON \
  -DLAZYLLM_EDGE_SANITIZE=ON -DCMAKE_C_FLAGS=-fsanitize=fuzzer-no-link -DCMAKE_CXX_FLAGS=-fsanitize=fuzzer-no-link >/dev/null
cmake --build "$B" --target fuzz_gguf fuzz_tokenizer fuzz_chat fuzz_lazy_spec fuzz_session_file

echo "== seed corpus: generated tiny models + the head of a real model"
SEEDS=$B/seeds
rm -rf "$SEEDS" && mkdir -p "$SEEDS/gguf" "$SEEDS/text" "$B/corpus_gguf" "$B/corpus_text" "$B/corpus_chat" \
  "$B/corpus_spec" "$B/corpus_session" "$B/crashes" "$B/crashes_session"
python3 - "$SEEDS/gguf" <<'PY'
import sys
sys.path.insert(0, "models")
from make_tiny import write_tiny_model
out = sys.argv[1]
small = dict(d_model=8, n_head=2, n_head_kv=1, ffn=8)
for arch, wtype in [("llama", "F32"), ("qwen2", "F16"), ("qwen3", "Q8_0")]:
    write_tiny_model(f"{out}/tiny-{arch}-{wtype}.bin", arch, 1, wtype, **(small if wtype != "Q8_0" else dict(d_model=32, n_head=2, n_head_kv=1, ffn=32)))
PY
REAL=${LAZYLLM_EDGE_CACHE:-$HOME/.cache/lazyllm_edge}/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$REAL" ] && head -c 65536 "$REAL" >"$SEEDS/gguf/smollm2-head.bin"
printf 'Hello world' >"$SEEDS/text/1"
printf '<|im_start|>user\nhi 你好 🙂<|im_end|>\n' >"$SEEDS/text/2"
printf "  it's 12345 \t\n\xe4\xbd\xa0 \xff\xfe done" >"$SEEDS/text/3"
ls -la "$SEEDS/gguf"

FLAGS=(-timeout=10 -rss_limit_mb=4096 -malloc_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$B/crashes/")
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
status=0
echo "== fuzz_gguf for ${SECONDS_GGUF}s"
"$B/tests/fuzz/fuzz_gguf" "${FLAGS[@]}" -max_len=65536 -max_total_time="$SECONDS_GGUF" \
  "$B/corpus_gguf" "$SEEDS/gguf" tests/fuzz/regressions 2>&1 | tail -15 || status=1
echo "== fuzz_tokenizer for ${SECONDS_TOK}s"
export LAZYLLM_EDGE_FUZZ_MODEL=$REAL
[ -f "$REAL" ] || LAZYLLM_EDGE_FUZZ_MODEL=$SEEDS/gguf/tiny-llama-F32.bin
"$B/tests/fuzz/fuzz_tokenizer" "${FLAGS[@]}" -max_len=4096 -max_total_time="$SECONDS_TOK" \
  "$B/corpus_text" "$SEEDS/text" 2>&1 | tail -15 || status=1
echo "== fuzz_chat for ${SECONDS_CHAT}s"
"$B/tests/fuzz/fuzz_chat" "${FLAGS[@]}" -max_len=4096 -max_total_time="$SECONDS_CHAT" \
  "$B/corpus_chat" tests/fuzz/seeds/chat 2>&1 | tail -15 || status=1
echo "== fuzz_lazy_spec for ${SECONDS_SPEC}s"
"$B/tests/fuzz/fuzz_lazy_spec" "${FLAGS[@]}" -max_len=256 -max_total_time="$SECONDS_SPEC" \
  "$B/corpus_spec" tests/fuzz/seeds/lazy_spec 2>&1 | tail -15 || status=1
echo "== fuzz_session_file for ${SECONDS_SESSION}s"
# (its own artifact folder: its regressions are replayed by another CTest; the last -artifact_prefix wins)
"$B/tests/fuzz/fuzz_session_file" "${FLAGS[@]}" -artifact_prefix="$B/crashes_session/" -max_len=4096 \
  -max_total_time="$SECONDS_SESSION" "$B/corpus_session" tests/fuzz/session_regressions 2>&1 | tail -15 || status=1

if compgen -G "$B/crashes_session/*" >/dev/null; then
  echo "fuzzing the session reader found failing inputs (copied to tests/fuzz/session_regressions/, commit them with the fix):"
  for f in "$B"/crashes_session/*; do cp "$f" "tests/fuzz/session_regressions/$(basename "$f").bin"; echo "  $(basename "$f")"; done
  status=1
fi
if compgen -G "$B/crashes/*" >/dev/null; then
  echo "fuzzing found failing inputs (copied to tests/fuzz/regressions/, commit them with the fix):"
  for f in "$B"/crashes/*; do cp "$f" "tests/fuzz/regressions/$(basename "$f").bin"; echo "  $(basename "$f")"; done
  status=1
fi
[ $status -eq 0 ] && echo "fuzz: OK" || echo "fuzz: FAILED"
exit $status
