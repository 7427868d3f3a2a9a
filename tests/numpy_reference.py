"""NumPy fp32 reference forward pass, written from the architectures' definitions (not from the engine).

    hp, w = load_gguf(path)          # or make_tiny.tiny_model_weights(...)
    logits = forward(hp, w, ids)     # (n, n_vocab) float32

Weights: GGUF tensor names -> fp32 arrays, matrices shaped (n_out, n_in), vectors (n,). hp: the dict of
make_tiny.tiny_model_weights (arch, n_layer, d_model, n_head, n_head_kv, head_dim, n_vocab, rope_base,
eps; optional rope_neox, attention_scale) plus, for gemma3, sliding_window, sliding_window_pattern,
rope_base_local.

Architectures:
- llama:  RMSNorm -> q,k,v -> RoPE (NORM: adjacent pairs) -> causal GQA -> o; RMSNorm -> SwiGLU FFN.
- qwen2:  llama + q/k/v biases, RoPE NEOX (pairs i, i + d/2).
- qwen3:  llama + per-head RMSNorm of q and k before RoPE, RoPE NEOX, no biases.
- gemma3: embeddings * sqrt(d_model); qwen3-style q/k norms; RMSNorm after attention and after the FFN
          (before each residual add); GELU(tanh)-gated FFN; sliding-window attention on layers
          l % pattern != pattern - 1 with their own RoPE base. Norm weights are stored with the +1 folded in.
- phi3:   llama with one fused attn_qkv (q, k, v rows) and one fused ffn_up (gate rows, then up rows), RoPE NEOX
          with LongRoPE frequency divisors (long past the original context n_ctx_orig, else short) and cos/sin
          times rope_attn_factor.
- smollm3: llama without RoPE on every 4th layer ((l + 1) % 4 == 0).
- gemma4: gemma3's layer with, per layer, its type (hp["sliding"]), head size and kv heads (sliding and full
          layers differ), FFN size and K/V source: the last layers (hp["kv_source"][l] != l) compute no K/V and
          attend over the K/V of an earlier layer of their type. q and k get their RMSNorm, v an RMSNorm without
          weight; K = V where a layer has no attn_v; attention scale 1; RoPE NEOX, the full layers' with
          rope_freqs as frequency divisors (proportional RoPE: 1e30 leaves a pair unrotated). Per-layer
          embeddings: per_layer_token_embd[id] * sqrt(ple) plus RMSNorm(per_layer_model_proj . x0 / sqrt(d)),
          times 1/sqrt(2), gives each layer a (ple) input; after the FFN residual a layer adds
          RMSNorm(proj . (gelu(inp_gate . x) * input_l)), then scales the residual stream by
          layer_output_scale. Logits soft-capped.
- qwen35: the hybrid (llama.cpp's src/models/qwen35.cpp). Every layer: RMSNorm -> mixer -> residual;
          RMSNorm (post_attention_norm) -> SwiGLU FFN -> residual. Mixer on linear-attention layers (hp
          "recurrent"): the gated delta net (delta_net_layer); on the others: attn_q gives q and an output gate per
          head, q/k RMSNorm per head, NEOX RoPE over rope_dim dims where the pairs of M-RoPE's 4th section stay
          unrotated (text positions (p, p, p, 0)), causal GQA, output times sigmoid(gate), attn_output.
"""

from __future__ import annotations

import numpy as np


def rms_norm(x, w, eps):
    """x: (..., n); normalised over the last axis, times w (None: no weight)."""
    x = x.astype(np.float64)
    y = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    return (y if w is None else y * w).astype(np.float32)


def rope(x, positions, base, neox, rope_dim=None, freq_factors=None, attn_factor=1.0, still_pairs=()):
    """x: (n, heads, head_dim) rotated by position; NORM rotates (2i, 2i+1), NEOX rotates (i, i + rope_dim/2).
    freq_factors divide the frequencies; cos and sin are multiplied by attn_factor; the pairs in still_pairs
    rotate by angle 0."""
    n, _, hd = x.shape
    rd = rope_dim or hd
    inv = base ** (-np.arange(0, rd, 2, dtype=np.float64) / rd)           # (rd/2)
    if freq_factors is not None:
        inv = inv / np.asarray(freq_factors, dtype=np.float64)
    inv[list(still_pairs)] = 0.0
    ang = np.asarray(positions, dtype=np.float64)[:, None] * inv[None, :]  # (n, rd/2)
    c, s = attn_factor * np.cos(ang)[:, None, :], attn_factor * np.sin(ang)[:, None, :]
    out = x.astype(np.float64).copy()
    if neox:
        a, b = out[..., : rd // 2].copy(), out[..., rd // 2: rd].copy()
        out[..., : rd // 2] = a * c - b * s
        out[..., rd // 2: rd] = a * s + b * c
    else:
        a, b = out[..., 0:rd:2].copy(), out[..., 1:rd:2].copy()
        out[..., 0:rd:2] = a * c - b * s
        out[..., 1:rd:2] = a * s + b * c
    return out.astype(np.float32)


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def silu(x):
    return x / (1.0 + np.exp(-x))


def attention(q, k, v, n_head_kv, scale, window=0, keys=None):
    """q: (n, H, hd), k/v: (n, Hkv, hd); causal (and within `window` positions when > 0; only the positions
    where `keys` (n) is True, when given: a query outside them sees itself). -> (n, H*hd)."""
    n, H, hd = q.shape
    group = H // n_head_kv
    i, j = np.arange(n)[:, None], np.arange(n)[None, :]
    mask = j <= i
    if window > 0:
        mask &= j > i - window
    if keys is not None:
        mask &= keys[None, :] | (i == j)
    out = np.empty((n, H, hd), dtype=np.float64)
    for h in range(H):
        kh, vh = k[:, h // group].astype(np.float64), v[:, h // group].astype(np.float64)
        s = (q[:, h].astype(np.float64) @ kh.T) * scale                   # (n, n)
        s = np.where(mask, s, -np.inf)
        p = np.exp(s - s.max(axis=1, keepdims=True))
        out[:, h] = (p / p.sum(axis=1, keepdims=True)) @ vh
    return out.reshape(n, H * hd).astype(np.float32)


def gemma4_per_layer_inputs(hp, w, ids, x0):
    """(n, n_layer, ple) per-layer inputs of tokens `ids` with scaled embeddings x0 (n, d)."""
    L, d, ple, eps = hp["n_layer"], hp["d_model"], hp["per_layer_dim"], hp["eps"]
    tok = w["per_layer_token_embd.weight"][ids].reshape(len(ids), L, ple) * np.float32(np.sqrt(ple))
    proj = (x0 @ w["per_layer_model_proj.weight"].T) * np.float32(1.0 / np.sqrt(d))
    proj = rms_norm(proj.reshape(len(ids), L, ple), w["per_layer_proj_norm.weight"], eps)
    return ((proj + tok) * np.float32(1.0 / np.sqrt(2.0))).astype(np.float32)


def tokens_to_keep(n_active, keep):
    """lazy/selection.cpp's count: ceil(keep * n) with slack for the float keep fraction, at least 1."""
    return n_active if keep >= 1 else min(max(int(np.ceil(np.float32(keep) * n_active - 1e-4)), 1), n_active)


def gemma4_experts(hp, w, b, x):
    """gemma4's routed experts for the rows x (n, d) (the residual stream after attention): the router on
    RMSNorm(x) / sqrt(d) * ffn_gate_inp.scale, softmax, the n_expert_used largest with their probabilities
    renormalized; each chosen expert's GELU-gated FFN on RMSNorm(x) * pre_ffw_norm_2, times its down scale and
    weight, summed; RMSNorm * post_ffw_norm_2."""
    d, eps, k = hp["d_model"], hp["eps"], hp["n_expert_used"]
    logits = (rms_norm(x, None, eps) / np.sqrt(d) * w[b + "ffn_gate_inp.scale"]) @ w[b + "ffn_gate_inp.weight"].T
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    xin = rms_norm(x, w[b + "pre_ffw_norm_2.weight"], eps)
    if b + "ffn_gate_up_exps.weight" in w:
        gate, up = np.split(w[b + "ffn_gate_up_exps.weight"], 2, axis=1)
    else:
        gate, up = w[b + "ffn_gate_exps.weight"], w[b + "ffn_up_exps.weight"]
    down, scale = w[b + "ffn_down_exps.weight"], w.get(b + "ffn_down_exps.scale")
    out = np.zeros_like(x, dtype=np.float64)
    for r in range(len(x)):
        chosen = np.argsort(-p[r], kind="stable")[:k]
        weights = p[r, chosen] / p[r, chosen].sum()
        for e, wt in zip(chosen, weights):
            y = (gelu_tanh(gate[e] @ xin[r]) * (up[e] @ xin[r])) @ down[e].T
            out[r] += wt * (scale[e] if scale is not None else 1.0) * y
    return rms_norm(out, w[b + "post_ffw_norm_2.weight"], eps)


def forward_gemma4(hp, w, ids, schedule=None, kv_fp16=False):
    """gemma4 logits (n, n_vocab) for token ids at positions 0..n-1.

    schedule {layer: keep fraction}: LazyLLM pruning of this (fresh) prefill, as lazy/step.cpp defines it: after
    a stage layer the last token's softmax attention (per head over the active tokens it sees there, averaged
    over the heads) ranks the active tokens (on a sliding layer those inside its window; the earlier ones stay),
    the top ceil(keep * n) stay (ties to the earlier position, the last token always); the others are neither
    computed nor attended to in later layers. A shared-KV layer attends over its own active tokens with its
    source layer's K/V (each of them was computed there). Returns (logits, frontier): the layers each position
    was computed through. kv_fp16 rounds K and V to fp16 as the engine's cache does (for rankings)."""
    L, d, H, eps = hp["n_layer"], hp["d_model"], hp["n_head"], hp["eps"]
    ids = np.asarray(ids)
    n = len(ids)
    pos = np.arange(n)
    active = np.ones(n, dtype=bool)
    frontier = np.zeros(n, dtype=np.int64)
    x = w["token_embd.weight"][ids].astype(np.float32) * np.float32(np.sqrt(d))  # (n, d)
    per_layer = gemma4_per_layer_inputs(hp, w, ids, x) if hp.get("per_layer_dim") else None
    kv = {}  # layer -> (K, V) of the layers that compute them
    for l in range(L):
        b = f"blk.{l}."
        hd, Hkv, sliding = hp["head_dim_of"][l], hp["n_head_kv_of"][l], hp["sliding"][l]
        h = rms_norm(x, w[b + "attn_norm.weight"], eps)
        q = rms_norm((h @ w[b + "attn_q.weight"].T).reshape(n, H, hd), w[b + "attn_q_norm.weight"], eps)
        base, factors = (hp["rope_base_local"], None) if sliding else (hp["rope_base"], w["rope_freqs.weight"])
        rope_dim = hp["rope_dim_local"] if sliding else hp["rope_dim"]
        q = rope(q, pos, base, True, rope_dim, factors)
        src = hp["kv_source"][l]
        if src == l:
            k = (h @ w[b + "attn_k.weight"].T).reshape(n, Hkv, hd)
            v = (h @ w[b + "attn_v.weight"].T).reshape(n, Hkv, hd) if b + "attn_v.weight" in w else k
            k = rope(rms_norm(k, w[b + "attn_k_norm.weight"], eps), pos, base, True, rope_dim, factors)
            v = rms_norm(v, None, eps)
            kv[l] = (k.astype(np.float16).astype(np.float32), v.astype(np.float16).astype(np.float32)) if kv_fp16 else (k, v)
        k, v = kv[src]
        window = hp["sliding_window"] if sliding else 0
        a = attention(q, k, v, Hkv, hp.get("attention_scale", 1.0), window, active)
        y = x + rms_norm(a @ w[b + "attn_output.weight"].T, w[b + "post_attention_norm.weight"], eps)
        h = rms_norm(y, w[b + "ffn_norm.weight"], eps)
        f = (gelu_tanh(h @ w[b + "ffn_gate.weight"].T) * (h @ w[b + "ffn_up.weight"].T)) @ w[b + "ffn_down.weight"].T
        if b + "ffn_gate_inp.weight" in w:  # mixture of experts: f is the shared expert
            f = rms_norm(f, w[b + "post_ffw_norm_1.weight"], eps) + gemma4_experts(hp, w, b, y)
        y = y + rms_norm(f, w[b + "post_ffw_norm.weight"], eps)
        if per_layer is not None:
            g = gelu_tanh(y @ w[b + "inp_gate.weight"].T) * per_layer[:, l]
            y = y + rms_norm(g @ w[b + "proj.weight"].T, w[b + "post_norm.weight"], eps)
        if b + "layer_output_scale.weight" in w:
            y = y * w[b + "layer_output_scale.weight"][0]
        x = np.where(active[:, None], y, x)  # only the active tokens are computed
        frontier[active] = l + 1
        keep = (schedule or {}).get(l, 1.0)
        if keep < 1.0 and l + 1 < L:  # a stage: rank by the last token's attention, keep the most important
            ranked = active & (pos > n - 1 - window) if window else active.copy()
            cand = np.flatnonzero(ranked)
            group = H // Hkv
            imp = np.zeros(len(cand))
            for head in range(H):
                sc = k[cand, head // group].astype(np.float64) @ q[n - 1, head].astype(np.float64) * hp.get("attention_scale", 1.0)
                e = np.exp(sc - sc.max())
                imp += e / e.sum() / H
            n_keep = tokens_to_keep(len(cand), keep)
            order = sorted(range(len(cand)), key=lambda i: (cand[i] != n - 1, -imp[i], cand[i]))[:n_keep]
            active[cand] = False
            active[cand[order]] = True
    x = rms_norm(x, w["output_norm.weight"], eps)
    logits = x @ w.get("output.weight", w["token_embd.weight"]).T
    cap = hp.get("final_logit_softcap", 0.0)
    if cap:
        logits = cap * np.tanh(logits / cap)
    return (logits.astype(np.float32), frontier) if schedule is not None else logits.astype(np.float32)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def l2_normalize(x, eps):
    """x / sqrt(sum(x^2) + eps) over the last axis (llama.cpp's build_gdn_l2_norm)."""
    return x / np.sqrt(np.sum(x * x, axis=-1, keepdims=True) + eps)


def delta_net_layer(hp, w, b, h):
    """The gated delta-net mixer of one linear-attention layer over the whole sequence h (n, d), from an empty
    state: causal depthwise conv1d (kernel taps, zero history) and SiLU over q|k|v, q and k l2-normed per head,
    then per v head (q/k head = v head % n_k_heads) and token in order, with beta = sigmoid(ssm_beta h) and
    decay = exp(softplus(ssm_alpha h + dt_bias) * ssm_a):
        S = decay * S;  S += beta * outer(v - S k, k);  o = S q / sqrt(head_dim)
    then o = rms_norm(o) * ssm_norm * silu(z) per head (z = attn_gate h), and ssm_out. -> (n, d)"""
    ssm, eps = hp["ssm"], hp["eps"]
    kernel, hd, nk, nv = ssm["conv_kernel"], ssm["head_dim"], ssm["n_k_heads"], ssm["n_v_heads"]
    n = h.shape[0]
    h = h.astype(np.float64)
    qkv = h @ w[b + "attn_qkv.weight"].T                                   # (n, conv_dim)
    z = h @ w[b + "attn_gate.weight"].T                                    # (n, nv * hd)
    beta = sigmoid(h @ w[b + "ssm_beta.weight"].T)                         # (n, nv)
    x = h @ w[b + "ssm_alpha.weight"].T + w[b + "ssm_dt.bias"]
    decay = np.exp(np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20)))) * w[b + "ssm_a"])   # (n, nv)
    window = np.concatenate([np.zeros((kernel - 1, qkv.shape[1])), qkv])
    taps = w[b + "ssm_conv1d.weight"].astype(np.float64)                   # (conv_dim, kernel)
    conv = np.stack([np.sum(window[t:t + kernel].T * taps, axis=1) for t in range(n)])
    conv = silu(conv)
    key_dim = nk * hd
    q = l2_normalize(conv[:, :key_dim].reshape(n, nk, hd), eps)
    k = l2_normalize(conv[:, key_dim:2 * key_dim].reshape(n, nk, hd), eps)
    v = conv[:, 2 * key_dim:].reshape(n, nv, hd)
    out = np.zeros((n, nv, hd))
    for head in range(nv):
        S = np.zeros((hd, hd))                                             # (v index, k index)
        kh = head % nk
        for t in range(n):
            S = decay[t, head] * S
            S = S + beta[t, head] * np.outer(v[t, head] - S @ k[t, kh], k[t, kh])
            out[t, head] = S @ q[t, kh] / np.sqrt(hd)
    out = rms_norm(out, w[b + "ssm_norm.weight"], eps).astype(np.float64) * silu(z.reshape(n, nv, hd))
    return (out.reshape(n, nv * hd) @ w[b + "ssm_out.weight"].T).astype(np.float32)


def imrope_still_pairs(sections, rope_dim):
    """Pairs that do not rotate for text under interleaved M-RoPE (their sector takes the 4th position, 0)."""
    total = sum(sections)
    still = []
    for i in range(rope_dim // 2):
        s = i % total
        if not ((s % 3 == 0 and s < 3 * sections[0]) or (s % 3 == 1 and s < 3 * sections[1]) or
                (s % 3 == 2 and s < 3 * sections[2])):
            still.append(i)
    return still


def qwen35_attention_layer(hp, w, b, h):
    """The gated full-attention mixer of one qwen35 layer over h (n, d). -> (n, d)"""
    n, H, Hkv, hd, eps = h.shape[0], hp["n_head"], hp["n_head_kv"], hp["head_dim"], hp["eps"]
    qg = (h @ w[b + "attn_q.weight"].T).reshape(n, H, 2 * hd)
    q, gate = qg[..., :hd], qg[..., hd:].reshape(n, H * hd)
    k = (h @ w[b + "attn_k.weight"].T).reshape(n, Hkv, hd)
    v = (h @ w[b + "attn_v.weight"].T).reshape(n, Hkv, hd)
    q, k = rms_norm(q, w[b + "attn_q_norm.weight"], eps), rms_norm(k, w[b + "attn_k_norm.weight"], eps)
    still = imrope_still_pairs(hp["rope_sections"], hp["rope_dim"])
    q, k = (rope(t, np.arange(n), hp["rope_base"], True, hp["rope_dim"], still_pairs=still) for t in (q, k))
    a = attention(q, k, v, Hkv, 1.0 / np.sqrt(hd)) * sigmoid(gate.astype(np.float64))
    return (a @ w[b + "attn_output.weight"].T).astype(np.float32)


def qwen35_forward(hp, w, ids):
    x = w["token_embd.weight"][np.asarray(ids)].astype(np.float32)
    eps = hp["eps"]
    for l in range(hp["n_layer"]):
        b = f"blk.{l}."
        h = rms_norm(x, w[b + "attn_norm.weight"], eps)
        x = x + (delta_net_layer(hp, w, b, h) if hp["recurrent"][l] else qwen35_attention_layer(hp, w, b, h))
        h = rms_norm(x, w[b + "post_attention_norm.weight"], eps)
        x = x + ((silu(h @ w[b + "ffn_gate.weight"].T) * (h @ w[b + "ffn_up.weight"].T)) @ w[b + "ffn_down.weight"].T)
    x = rms_norm(x, w["output_norm.weight"], eps)
    return (x @ w.get("output.weight", w["token_embd.weight"]).T).astype(np.float32)


def forward(hp, w, ids, n_ctx=None):
    """Logits (n, n_vocab) for token ids at positions 0..n-1 (n_ctx: the session's context size, which picks
    phi3's LongRoPE factors)."""
    arch = hp["arch"]
    if arch == "gemma4":
        return forward_gemma4(hp, w, ids)
    if arch == "qwen35":
        return qwen35_forward(hp, w, ids)
    L, d, H, Hkv, hd, eps = hp["n_layer"], hp["d_model"], hp["n_head"], hp["n_head_kv"], hp["head_dim"], hp["eps"]
    gemma = arch == "gemma3"
    neox = hp.get("rope_neox", arch != "llama")
    scale = hp.get("attention_scale", 1.0 / np.sqrt(hd))
    ids = np.asarray(ids)
    n = len(ids)
    pos = np.arange(n)
    x = w["token_embd.weight"][ids].astype(np.float32)                     # (n, d)
    factors, attn_factor = None, hp.get("rope_attn_factor", 1.0)
    if "rope_factors_long.weight" in w:
        long = (n_ctx or n) > hp["n_ctx_orig"]
        factors = w["rope_factors_long.weight" if long else "rope_factors_short.weight"]
    if gemma:
        x = x * np.float32(np.sqrt(d))
    for l in range(L):
        b = f"blk.{l}."
        sliding = gemma and hp.get("sliding_window", 0) > 0 and l % hp["sliding_window_pattern"] != hp["sliding_window_pattern"] - 1
        base = hp.get("rope_base_local", 10000.0) if sliding else hp["rope_base"]
        h = rms_norm(x, w[b + "attn_norm.weight"], eps)
        if b + "attn_qkv.weight" in w:
            q, k, v = np.split(h @ w[b + "attn_qkv.weight"].T, [H * hd, H * hd + Hkv * hd], axis=1)
        else:
            q, k, v = h @ w[b + "attn_q.weight"].T, h @ w[b + "attn_k.weight"].T, h @ w[b + "attn_v.weight"].T
        if b + "attn_q.bias" in w:
            q, k, v = q + w[b + "attn_q.bias"], k + w[b + "attn_k.bias"], v + w[b + "attn_v.bias"]
        q, k, v = q.reshape(n, H, hd), k.reshape(n, Hkv, hd), v.reshape(n, Hkv, hd)
        if b + "attn_q_norm.weight" in w:
            q, k = rms_norm(q, w[b + "attn_q_norm.weight"], eps), rms_norm(k, w[b + "attn_k_norm.weight"], eps)
        if not (hp.get("nope_layer_step") and (l + 1) % hp["nope_layer_step"] == 0):
            q, k = rope(q, pos, base, neox, None, factors, attn_factor), rope(k, pos, base, neox, None, factors, attn_factor)
        a = attention(q, k, v, Hkv, scale, hp["sliding_window"] if sliding else 0)
        a = a @ w[b + "attn_output.weight"].T
        if gemma:
            a = rms_norm(a, w[b + "post_attention_norm.weight"], eps)
        x = x + a
        h = rms_norm(x, w[b + "ffn_norm.weight"], eps)
        if b + "ffn_gate.weight" in w:
            g, u = h @ w[b + "ffn_gate.weight"].T, h @ w[b + "ffn_up.weight"].T
        else:
            g, u = np.split(h @ w[b + "ffn_up.weight"].T, 2, axis=1)
        f = ((gelu_tanh(g) if gemma else silu(g)) * u) @ w[b + "ffn_down.weight"].T
        if gemma:
            f = rms_norm(f, w[b + "post_ffw_norm.weight"], eps)
        x = x + f
    x = rms_norm(x, w["output_norm.weight"], eps)
    out = w.get("output.weight", w["token_embd.weight"])
    return (x @ out.T).astype(np.float32)


def load_gguf(path):
    """(hp, weights) of a GGUF file, every tensor dequantized to fp32 with gguf-py (slow for big files)."""
    import gguf

    r = gguf.GGUFReader(str(path))
    arch = str(r.fields["general.architecture"].contents())

    def meta(key, default=None):
        f = r.fields.get(f"{arch}.{key}")
        return default if f is None else f.contents()

    w = load_gguf_weights(path, r)
    d, H = int(meta("embedding_length")), int(meta("attention.head_count"))
    hp = dict(arch=arch, n_layer=int(meta("block_count")), d_model=d, n_head=H,
              n_head_kv=int(meta("attention.head_count_kv", H)), head_dim=int(meta("attention.key_length", d // H)),
              n_vocab=w["token_embd.weight"].shape[0], rope_base=float(meta("rope.freq_base", 10000.0)),
              eps=float(meta("attention.layer_norm_rms_epsilon", 1e-6 if arch == "gemma3" else 1e-5)))
    if arch == "gemma3":
        hp.update(sliding_window=int(meta("attention.sliding_window", 0)), sliding_window_pattern=6, rope_base_local=10000.0)
    return hp, w


def load_gguf_weights(path, reader=None):
    """Every tensor of a GGUF file dequantized to fp32 with gguf-py: matrices (n_out, n_in), vectors (n,)."""
    import gguf

    r = reader or gguf.GGUFReader(str(path))
    w = {}
    for t in r.tensors:
        a = gguf.quants.dequantize(t.data, t.tensor_type)
        w[t.name] = np.asarray(a, dtype=np.float32).reshape(tuple(int(s) for s in reversed(t.shape)) if len(t.shape) > 1 else -1)
    return w
