"""Process-wide numerics of the CPU backend.

- "default": prefill in exact fp32 (dequantized weights), decode with int8 activations, online-softmax attention.
- "llama.cpp": llama.cpp's CPU arithmetic (AVX2, flash attention off, fp16 KV cache): int8 activations in prefill
  too, ggml's fp32 accumulation orders (vec_dot, tinyBLAS and the repacked Q4_K kernels) and its attention
  (fp16 q and probabilities, its expf, its summation orders). Logits then equal llama.cpp's bit for bit for the
  covered weight types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q6_K; not Q5_K) when prompts are evaluated as llama.cpp does
  (the whole prompt in one call: a call's last n % 4 tokens take ggml's gemv order). A validation mode: prefill
  1.1-1.6x slower than "default", decode 1.5-2.5x slower.
"""
from . import _core

NUMERICS = ("default", "llama.cpp")


def set_numerics(mode: str) -> None:
    if mode not in NUMERICS:
        raise ValueError(f"numerics must be one of {NUMERICS}, got {mode!r}")
    _core.kernels.set_llama_cpp_numerics(mode == "llama.cpp")


def numerics() -> str:
    return "llama.cpp" if _core.kernels.llama_cpp_numerics() else "default"
