#!/usr/bin/env python3
"""Writes tiny random GGUF models for tests (no download needed).

    python models/make_tiny.py OUT.gguf [--arch llama|qwen2|qwen3|gemma3|gemma4|phi3|smollm3|qwen35] [--layers 4] [--type F32|F16|Q8_0|Q4_0|Q4_1]

Any other --arch name writes a llama-shaped file under that architecture (for "unsupported" tests).
gemma3 files get a sliding window of 8 tokens (every 6th layer global) so short prompts exercise it.
phi3 files have the fused attn_qkv and gate+up ffn_up tensors and LongRoPE factors (original context 64, so a
session of more than 64 tokens takes the long ones) with an attention factor; smollm3 files have a NoPE layer
every 4th layer (as llama.cpp, from the architecture). gemma4 files have the E2B/E4B layout in small (see
GEMMA4_LAYER_TYPES): sliding (head_dim 16, 2 kv heads) and full (head_dim 32, 1 kv head, proportional RoPE:
rope_freqs leaves 3/4 of the pairs unrotated) layers, K = V on the full layers (no attn_v), per-layer
embeddings, the last two layers sharing the K/V of the last sliding and the last full layer with their own
KV, double-wide FFNs on the shared layers, a layer output scale and the final logit soft-cap; 8 layers
(write_tiny_model(..., n_expert=4): every layer a mixture of experts, the 26B-A4B layout). qwen35 files are the
hybrid: gated delta-net linear-attention layers (conv kernel 4, 2 q/k heads and 4 v heads of 16) and
full-attention layers (head_dim 32, an output gate per head in attn_q, q/k norms, partial interleaved M-RoPE over
16 of 32 dimensions with sections [2, 1, 1, 1] so one pair in five stays unrotated); full attention on every 3rd
layer (qwen35.full_attention_interval), or the layer kinds given as `recurrent_layers`
(qwen35.attention.recurrent_layers).

The tokenizer is byte-level BPE over the 256 GPT-2 byte symbols plus a few merges and ChatML specials,
so any text can be encoded. Weights are seeded random normals; `tiny_model_weights()` returns the same
fp32 arrays for NumPy reference implementations.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def gpt2_bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def tiny_vocab():
    byte_map = gpt2_bytes_to_unicode()
    tokens = [byte_map[b] for b in range(256)]
    merges = []
    for a, b in [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("a", "n"), ("e", "r"), ("o", "n"), ("Ġ", "a")]:
        merges.append(f"{a} {b}")
        tokens.append(a + b)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    types = [1] * len(tokens) + [3] * len(specials)
    tokens += specials
    return tokens, merges, types


# gemma4 tiny: the type of each layer (True: sliding window), the shared-KV layers at the end (layers
# n_layer - GEMMA4_SHARED_KV.. reuse the K/V of the last sliding and the last full layer before them, as llama.cpp)
GEMMA4_LAYER_TYPES = [True, True, False, True, True, False, True, False]
GEMMA4_SHARED_KV = 2


def tiny_gemma4_weights(n_layer=8, d_model=64, n_head=4, ffn=128, seed=0, n_expert=0):
    """The gemma4 tiny (see the module docstring); hp has per-layer lists: sliding, head_dim_of, n_head_kv_of,
    ffn_of, kv_source (the layer whose K/V each layer attends over). n_expert > 0 makes every layer a mixture of
    experts as the 26B-A4B layout (the dense FFN its shared expert): a router with its input scale, n_expert experts
    of FFN size ffn // 4 (gate and up fused on even layers, separate on odd ones; a down scale per expert), 2 used
    per token, and the extra norms."""
    if n_layer != len(GEMMA4_LAYER_TYPES):
        raise ValueError(f"the gemma4 tiny has {len(GEMMA4_LAYER_TYPES)} layers")
    tokens, _, _ = tiny_vocab()
    n_vocab = len(tokens)
    rng = np.random.default_rng(seed)
    hd_swa, hd_full, nkv_swa, nkv_full, ple = 16, 32, 2, 1, 8
    sliding = list(GEMMA4_LAYER_TYPES)
    first_shared = n_layer - GEMMA4_SHARED_KV
    kv_source = [l if l < first_shared else first_shared - (2 if sliding[l] else 1) for l in range(n_layer)]
    head_dim_of = [hd_swa if s else hd_full for s in sliding]
    n_head_kv_of = [nkv_swa if s else nkv_full for s in sliding]
    ffn_of = [ffn if l < first_shared else 2 * ffn for l in range(n_layer)]  # use_double_wide_mlp

    def mat(n_out, n_in, scale=None):
        return (rng.standard_normal((n_out, n_in)) * (scale or 1.0 / np.sqrt(n_in))).astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    # tied output (no output.weight; embeddings small enough that the soft-cap bends, not saturates, the logits);
    # proportional RoPE on full layers: 1/4 of the pairs rotate
    n_rotated = hd_full // 8
    w = {"token_embd.weight": mat(n_vocab, d_model, 0.25), "output_norm.weight": norm(d_model),
         "rope_freqs.weight": np.array([1.0] * n_rotated + [1e30] * (hd_full // 2 - n_rotated), dtype=np.float32),
         "per_layer_token_embd.weight": mat(n_vocab, n_layer * ple, 1.0),
         "per_layer_model_proj.weight": mat(n_layer * ple, d_model), "per_layer_proj_norm.weight": norm(ple)}
    for l in range(n_layer):
        b, hd, kv = f"blk.{l}.", head_dim_of[l], n_head_kv_of[l] * head_dim_of[l]
        w[b + "attn_norm.weight"] = norm(d_model)
        w[b + "attn_q.weight"] = mat(n_head * hd, d_model)
        if kv_source[l] == l:
            w[b + "attn_k.weight"] = mat(kv, d_model)
            if sliding[l]:  # full layers: V = K (attention_k_eq_v)
                w[b + "attn_v.weight"] = mat(kv, d_model)
            w[b + "attn_k_norm.weight"] = norm(hd)
        w[b + "attn_q_norm.weight"] = norm(hd)
        w[b + "attn_output.weight"] = mat(d_model, n_head * hd)
        w[b + "post_attention_norm.weight"] = norm(d_model)
        w[b + "ffn_norm.weight"] = norm(d_model)
        w[b + "ffn_gate.weight"] = mat(ffn_of[l], d_model)
        w[b + "ffn_up.weight"] = mat(ffn_of[l], d_model)
        w[b + "ffn_down.weight"] = mat(d_model, ffn_of[l])
        w[b + "post_ffw_norm.weight"] = norm(d_model)
        w[b + "inp_gate.weight"] = mat(ple, d_model)
        w[b + "proj.weight"] = mat(d_model, ple)
        w[b + "post_norm.weight"] = norm(d_model)
        w[b + "layer_output_scale.weight"] = (0.5 + rng.random(1)).astype(np.float32)
        if n_expert:
            ff_exp = ffn // 4
            w[b + "ffn_gate_inp.weight"] = mat(n_expert, d_model, 1.0)
            w[b + "ffn_gate_inp.scale"] = norm(d_model)
            w[b + "pre_ffw_norm_2.weight"] = norm(d_model)
            w[b + "post_ffw_norm_1.weight"] = norm(d_model)
            w[b + "post_ffw_norm_2.weight"] = norm(d_model)
            gate = np.stack([mat(ff_exp, d_model) for _ in range(n_expert)])  # (n_expert, ff_exp, d)
            up = np.stack([mat(ff_exp, d_model) for _ in range(n_expert)])
            if l % 2 == 0:  # one tensor: each expert's gate rows, then its up rows
                w[b + "ffn_gate_up_exps.weight"] = np.concatenate([gate, up], axis=1)
            else:
                w[b + "ffn_gate_exps.weight"], w[b + "ffn_up_exps.weight"] = gate, up
            w[b + "ffn_down_exps.weight"] = np.stack([mat(d_model, ff_exp) for _ in range(n_expert)])
            w[b + "ffn_down_exps.scale"] = (0.5 + rng.random(n_expert)).astype(np.float32)
    hp = dict(n_expert=n_expert, n_expert_used=2 if n_expert else 0, expert_ffn=ffn // 4, arch="gemma4", n_layer=n_layer, d_model=d_model, n_head=n_head, n_head_kv=max(n_head_kv_of), ffn=ffn,
              head_dim=hd_full, n_vocab=n_vocab, rope_base=1e6, rope_base_local=10000.0, eps=1e-6, n_ctx=512,
              sliding_window=8, sliding=sliding, head_dim_of=head_dim_of, n_head_kv_of=n_head_kv_of, ffn_of=ffn_of,
              kv_source=kv_source, shared_kv_layers=GEMMA4_SHARED_KV, rope_dim=hd_full, rope_dim_local=hd_swa,
              per_layer_dim=ple, final_logit_softcap=30.0, attention_scale=1.0)
    return hp, w


def tiny_model_weights(arch="llama", n_layer=4, d_model=64, n_head=4, n_head_kv=2, ffn=128, seed=0, n_expert=0,
                       recurrent_layers=None):
    """Deterministic fp32 weights (numpy, shapes as (n_out, n_in)) for a tiny model (n_expert: gemma4 only;
    recurrent_layers: qwen35 only)."""
    if arch == "gemma4":
        return tiny_gemma4_weights(n_layer, d_model, n_head, ffn, seed, n_expert)
    if arch == "qwen35":
        return tiny_qwen35_weights(n_layer, d_model, n_head, n_head_kv, ffn, seed, recurrent_layers)
    if n_expert:
        raise ValueError("n_expert: gemma4 tinies only")
    tokens, _, _ = tiny_vocab()
    n_vocab = len(tokens)
    rng = np.random.default_rng(seed)
    head_dim = d_model // n_head
    kv = n_head_kv * head_dim

    def mat(n_out, n_in, scale=None):
        return (rng.standard_normal((n_out, n_in)) * (scale or 1.0 / np.sqrt(n_in))).astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    w = {"token_embd.weight": mat(n_vocab, d_model, 1.0), "output_norm.weight": norm(d_model),
         "output.weight": mat(n_vocab, d_model)}
    if arch == "phi3":  # LongRoPE frequency divisors (head_dim/2), drawn before the layers
        w["rope_factors_short.weight"] = (1.0 + rng.random(head_dim // 2)).astype(np.float32)
        w["rope_factors_long.weight"] = (1.0 + 4.0 * rng.random(head_dim // 2)).astype(np.float32)
    for l in range(n_layer):
        b = f"blk.{l}."
        w[b + "attn_norm.weight"] = norm(d_model)
        if arch == "phi3":  # one fused matrix: q rows, then k rows, then v rows
            w[b + "attn_qkv.weight"] = np.concatenate([mat(d_model, d_model), mat(kv, d_model), mat(kv, d_model)])
        else:
            w[b + "attn_q.weight"] = mat(d_model, d_model)
            w[b + "attn_k.weight"] = mat(kv, d_model)
            w[b + "attn_v.weight"] = mat(kv, d_model)
        w[b + "attn_output.weight"] = mat(d_model, d_model)
        if arch == "qwen2":
            w[b + "attn_q.bias"] = (0.1 * rng.standard_normal(d_model)).astype(np.float32)
            w[b + "attn_k.bias"] = (0.1 * rng.standard_normal(kv)).astype(np.float32)
            w[b + "attn_v.bias"] = (0.1 * rng.standard_normal(kv)).astype(np.float32)
        if arch in ("qwen3", "gemma3"):
            w[b + "attn_q_norm.weight"] = norm(head_dim)
            w[b + "attn_k_norm.weight"] = norm(head_dim)
        if arch == "gemma3":
            w[b + "post_attention_norm.weight"] = norm(d_model)
            w[b + "post_ffw_norm.weight"] = norm(d_model)
        w[b + "ffn_norm.weight"] = norm(d_model)
        if arch == "phi3":  # one fused matrix: gate rows, then up rows
            w[b + "ffn_up.weight"] = np.concatenate([mat(ffn, d_model), mat(ffn, d_model)])
        else:
            w[b + "ffn_gate.weight"] = mat(ffn, d_model)
            w[b + "ffn_up.weight"] = mat(ffn, d_model)
        w[b + "ffn_down.weight"] = mat(d_model, ffn)
    hp = dict(arch=arch, n_layer=n_layer, d_model=d_model, n_head=n_head, n_head_kv=n_head_kv, ffn=ffn,
              head_dim=head_dim, n_vocab=n_vocab, rope_base=10000.0, eps=1e-5, n_ctx=512)
    if arch == "gemma3":
        hp.update(rope_base=1e6, sliding_window=8, sliding_window_pattern=6, rope_base_local=10000.0)
    if arch == "phi3":
        hp.update(n_ctx_orig=64, rope_attn_factor=1.19)
    if arch == "smollm3":
        hp.update(rope_neox=False, nope_layer_step=4)
    return hp, w


def tiny_qwen35_weights(n_layer, d_model, n_head, n_head_kv, ffn, seed, recurrent_layers=None):
    """The hybrid: gated delta-net layers (llama.cpp's qwen35 tensors) and gated full-attention layers."""
    tokens, _, _ = tiny_vocab()
    n_vocab = len(tokens)
    rng = np.random.default_rng(seed)
    head_dim, rope_dim, interval = 32, 16, 3
    ssm = dict(conv_kernel=4, head_dim=16, n_k_heads=2, n_v_heads=4)
    recurrent = ([bool(r) for r in recurrent_layers] if recurrent_layers is not None
                 else [(l + 1) % interval != 0 for l in range(n_layer)])
    assert len(recurrent) == n_layer
    qd, kv = n_head * head_dim, n_head_kv * head_dim
    key_dim, value_dim = ssm["n_k_heads"] * ssm["head_dim"], ssm["n_v_heads"] * ssm["head_dim"]
    conv_dim, nv = 2 * key_dim + value_dim, ssm["n_v_heads"]

    def mat(n_out, n_in, scale=None):
        return (rng.standard_normal((n_out, n_in)) * (scale or 1.0 / np.sqrt(n_in))).astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    w = {"token_embd.weight": mat(n_vocab, d_model, 1.0), "output_norm.weight": norm(d_model),
         "output.weight": mat(n_vocab, d_model)}
    for l in range(n_layer):
        b = f"blk.{l}."
        w[b + "attn_norm.weight"] = norm(d_model)
        if recurrent[l]:
            w[b + "attn_qkv.weight"] = mat(conv_dim, d_model)
            w[b + "attn_gate.weight"] = mat(value_dim, d_model)
            w[b + "ssm_conv1d.weight"] = (rng.standard_normal((conv_dim, ssm["conv_kernel"])) * 0.5).astype(np.float32)
            w[b + "ssm_dt.bias"] = (0.5 * rng.standard_normal(nv)).astype(np.float32)
            w[b + "ssm_a"] = (-np.exp(rng.uniform(-2.0, 0.5, nv))).astype(np.float32)   # -exp(A_log)
            w[b + "ssm_beta.weight"] = mat(nv, d_model)
            w[b + "ssm_alpha.weight"] = mat(nv, d_model)
            w[b + "ssm_norm.weight"] = norm(ssm["head_dim"])
            w[b + "ssm_out.weight"] = mat(d_model, value_dim)
        else:  # attn_q: per head, q rows then the output gate's rows
            w[b + "attn_q.weight"] = mat(2 * qd, d_model)
            w[b + "attn_k.weight"] = mat(kv, d_model)
            w[b + "attn_v.weight"] = mat(kv, d_model)
            w[b + "attn_output.weight"] = mat(d_model, qd)
            w[b + "attn_q_norm.weight"] = norm(head_dim)
            w[b + "attn_k_norm.weight"] = norm(head_dim)
        w[b + "post_attention_norm.weight"] = norm(d_model)  # qwen35's norm before the FFN
        w[b + "ffn_gate.weight"] = mat(ffn, d_model)
        w[b + "ffn_up.weight"] = mat(ffn, d_model)
        w[b + "ffn_down.weight"] = mat(d_model, ffn)
    hp = dict(arch="qwen35", n_layer=n_layer, d_model=d_model, n_head=n_head, n_head_kv=n_head_kv, ffn=ffn,
              head_dim=head_dim, n_vocab=n_vocab, rope_base=10000.0, eps=1e-6, n_ctx=512, rope_dim=rope_dim,
              rope_sections=[2, 1, 1, 1], recurrent=recurrent, full_attention_interval=interval,
              recurrent_layers_key=recurrent_layers is not None, ssm=ssm)
    return hp, w


def write_tiny_model(path, arch="llama", n_layer=4, weight_type="F32", seed=0, tokenizer_model="gpt2", tokenizer_pre=None,
                     **dims):
    """Writes the tiny model; tokenizer_model / tokenizer_pre replace the tokenizer's names (tests of unknown ones)."""
    import gguf

    hp, weights = tiny_model_weights(arch, n_layer, seed=seed, **dims)
    tokens, merges, types = tiny_vocab()
    writer = gguf.GGUFWriter(str(path), arch)
    # (llama.cpp gives the special tokens of a model whose name contains "phi3" extra attributes, looking up
    # tokens this vocabulary lacks: the tiny phi3 is named otherwise)
    writer.add_name(f"tiny-{arch}" if arch != "phi3" else "tiny-phi-three")
    writer.add_block_count(hp["n_layer"])
    writer.add_context_length(hp["n_ctx"])
    writer.add_embedding_length(hp["d_model"])
    writer.add_feed_forward_length(hp["ffn"] if arch != "gemma4" else hp["ffn_of"])
    writer.add_head_count(hp["n_head"])
    writer.add_head_count_kv(hp["n_head_kv"] if arch != "gemma4" else hp["n_head_kv_of"])
    writer.add_rope_freq_base(hp["rope_base"])
    writer.add_layer_norm_rms_eps(hp["eps"])
    if arch == "gemma3":
        writer.add_sliding_window(hp["sliding_window"])
    if arch == "gemma4":
        writer.add_sliding_window(hp["sliding_window"])
        writer.add_sliding_window_pattern(hp["sliding"])
        writer.add_shared_kv_layers(hp["shared_kv_layers"])
        writer.add_embedding_length_per_layer_input(hp["per_layer_dim"])
        writer.add_key_length(hp["head_dim"])
        writer.add_value_length(hp["head_dim"])
        writer.add_key_length_swa(min(hp["head_dim_of"]))
        writer.add_value_length_swa(min(hp["head_dim_of"]))
        writer.add_rope_dimension_count(hp["rope_dim"])
        writer.add_rope_dimension_count_swa(hp["rope_dim_local"])
        writer.add_rope_freq_base_swa(hp["rope_base_local"])
        writer.add_final_logit_softcapping(hp["final_logit_softcap"])
        if hp["n_expert"]:
            writer.add_expert_count(hp["n_expert"])
            writer.add_expert_used_count(hp["n_expert_used"])
            writer.add_expert_feed_forward_length(hp["expert_ffn"])
    if arch == "qwen35":
        writer.add_key_length(hp["head_dim"])
        writer.add_value_length(hp["head_dim"])
        writer.add_rope_dimension_count(hp["rope_dim"])
        writer.add_rope_dimension_sections(hp["rope_sections"])
        ssm = hp["ssm"]
        writer.add_ssm_conv_kernel(ssm["conv_kernel"])
        writer.add_ssm_state_size(ssm["head_dim"])
        writer.add_ssm_group_count(ssm["n_k_heads"])
        writer.add_ssm_time_step_rank(ssm["n_v_heads"])
        writer.add_ssm_inner_size(ssm["n_v_heads"] * ssm["head_dim"])
        if hp["recurrent_layers_key"]:
            writer.add_array("qwen35.attention.recurrent_layers", [int(r) for r in hp["recurrent"]])
        else:
            writer.add_full_attention_interval(hp["full_attention_interval"])
    if arch == "phi3":
        writer.add_rope_dimension_count(hp["head_dim"])
        writer.add_rope_scaling_orig_ctx_len(hp["n_ctx_orig"])
        writer.add_rope_scaling_attn_factors(hp["rope_attn_factor"])
    writer.add_tokenizer_model(tokenizer_model)
    writer.add_tokenizer_pre(tokenizer_pre or ("smollm" if arch == "llama" else "qwen2"))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(len(tokens) - 3)
    writer.add_eos_token_id(len(tokens) - 1)
    writer.add_add_bos_token(False)
    writer.add_chat_template("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                             "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    qtype = getattr(gguf.GGMLQuantizationType, weight_type)
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    for name, arr in weights.items():
        # (a matrix whose rows are no whole number of blocks, the gemma4 tiny's per-layer proj, stays F32)
        if arr.ndim >= 2 and weight_type != "F32" and arr.shape[-1] % block == 0:
            if weight_type == "F16":
                writer.add_tensor(name, arr.astype(np.float16))
            else:
                q = gguf.quants.quantize(arr, qtype)
                writer.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qtype)
        else:
            writer.add_tensor(name, arr)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return hp, weights


def content_sha256(path):
    """sha256 of what a GGUF file says, not of its layout: every metadata key and value, every tensor's name,
    type, shape and bytes, in the file's order. Stable across gguf-py versions that lay the file out
    differently; any change to a weight or a hyperparameter changes it."""
    import hashlib

    import gguf

    r = gguf.GGUFReader(str(path))
    h = hashlib.sha256()
    for name, field in r.fields.items():
        if name.startswith("GGUF."):  # the header's own fields (version, counts)
            continue
        h.update(name.encode())
        h.update(repr(field.contents()).encode())
    for t in r.tensors:
        h.update(f"{t.name}|{t.tensor_type.name}|{list(map(int, t.shape))}".encode())
        h.update(np.ascontiguousarray(t.data).tobytes())
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--arch", default="llama", help="llama, qwen2, qwen3, gemma3, gemma4, phi3, smollm3, qwen35 (or any name: llama-shaped)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--type", default="F32")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    write_tiny_model(Path(a.out), a.arch, a.layers, a.type, a.seed)
    print(a.out)


if __name__ == "__main__":
    main()
