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
- qwen35: the hybrid (llama.cpp's src/models/qwen35.cpp). Every layer: RMSNorm -> mixer -> residual;
          RMSNorm (post_attention_norm) -> SwiGLU FFN -> residual. Mixer on linear-attention layers (hp
          "recurrent"): the gated delta net (delta_net_layer); on the others: attn_q gives q and an output gate per
          head, q/k RMSNorm per head, NEOX RoPE over rope_dim dims where the pairs of M-RoPE's 4th section stay
          unrotated (text positions (p, p, p, 0)), causal GQA, output times sigmoid(gate), attn_output.
"""

from __future__ import annotations

import numpy as np


def rms_norm(x, w, eps):
    """x: (..., n); normalised over the last axis, times w."""
    x = x.astype(np.float64)
    y = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    return (y * w).astype(np.float32)


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


def attention(q, k, v, n_head_kv, scale, window=0):
    """q: (n, H, hd), k/v: (n, Hkv, hd); causal (and within `window` positions when > 0). -> (n, H*hd)."""
    n, H, hd = q.shape
    group = H // n_head_kv
    i, j = np.arange(n)[:, None], np.arange(n)[None, :]
    mask = j <= i
    if window > 0:
        mask &= j > i - window
    out = np.empty((n, H, hd), dtype=np.float64)
    for h in range(H):
        kh, vh = k[:, h // group].astype(np.float64), v[:, h // group].astype(np.float64)
        s = (q[:, h].astype(np.float64) @ kh.T) * scale                   # (n, n)
        s = np.where(mask, s, -np.inf)
        p = np.exp(s - s.max(axis=1, keepdims=True))
        out[:, h] = (p / p.sum(axis=1, keepdims=True)) @ vh
    return out.reshape(n, H * hd).astype(np.float32)


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

    w = {}
    for t in r.tensors:
        a = gguf.quants.dequantize(t.data, t.tensor_type)
        w[t.name] = np.asarray(a, dtype=np.float32).reshape(tuple(int(s) for s in reversed(t.shape)) if len(t.shape) > 1 else -1)
    d, H = int(meta("embedding_length")), int(meta("attention.head_count"))
    hp = dict(arch=arch, n_layer=int(meta("block_count")), d_model=d, n_head=H,
              n_head_kv=int(meta("attention.head_count_kv", H)), head_dim=int(meta("attention.key_length", d // H)),
              n_vocab=w["token_embd.weight"].shape[0], rope_base=float(meta("rope.freq_base", 10000.0)),
              eps=float(meta("attention.layer_norm_rms_epsilon", 1e-6 if arch == "gemma3" else 1e-5)))
    if arch == "gemma3":
        hp.update(sliding_window=int(meta("attention.sliding_window", 0)), sliding_window_pattern=6, rope_base_local=10000.0)
    return hp, w
