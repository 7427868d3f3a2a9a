"""NumPy reference of the llama forward pass with LazyLLM pruning, written from the definitions in
cpp/lazy/step.cpp (prefill over a fresh context): importance = the softmax attention of the query window's
tokens (the last `window` positions still computed at the layer; 1: the last token) over the active tokens
at a pruning layer (causal per query), averaged over the queries, then averaged over heads (or their maximum),
then (pool > 0) each token's the largest of the active tokens within `pool` positions of it; keep the top ceil(keep * n_active) (ties to the earlier position, last token always kept); dropped tokens stop
being computed and stop being attended to in later layers. K/V are rounded to fp16 like the engine's cache."""

import numpy as np


def rms_norm(x, w, eps):
    return x / np.sqrt((x.astype(np.float64) ** 2).mean(-1, keepdims=True) + eps) * w


def rope_norm(x, positions, base, head_dim):
    """llama ("normal") RoPE: rotates adjacent pairs (2i, 2i+1). x: (n, heads, head_dim)."""
    i = np.arange(head_dim // 2)
    theta = positions[:, None] * base ** (-2.0 * i / head_dim)  # (n, hd/2)
    c, s = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out


def fp16(x):
    return x.astype(np.float16).astype(np.float64)


def layer_kv(hp, w, layer, hidden, positions):
    """K (roped) and V of one layer for hidden states (n, d) at `positions`, fp16-rounded like the cache."""
    b = f"blk.{layer}."
    hd, nkv = hp["head_dim"], hp["n_head_kv"]
    x = rms_norm(hidden, w[b + "attn_norm.weight"], hp["eps"])
    k = (x @ w[b + "attn_k.weight"].T).reshape(len(positions), nkv, hd)
    v = x @ w[b + "attn_v.weight"].T
    k = rope_norm(k, np.asarray(positions, dtype=np.float64), hp["rope_base"], hd).reshape(len(positions), -1)
    return fp16(k), fp16(v)


def max_pool(positions, importance, radius):
    """Each token's importance becomes the largest of the tokens within `radius` positions of it."""
    near = np.abs(positions[:, None] - positions[None, :]) <= radius  # (n, n)
    return np.where(near, importance[None, :], -np.inf).max(axis=1)


def forward_lazy(hp, w, ids, schedule=(), window=1, max_heads=False, pool=0):
    """Returns (last-position logits, [(layer, active positions, importance)])."""
    keep_at = dict(schedule)
    n, d, hd = len(ids), hp["d_model"], hp["head_dim"]
    nh, nkv = hp["n_head"], hp["n_head_kv"]
    group = nh // nkv
    h = w["token_embd.weight"][np.asarray(ids)].astype(np.float64)  # (n, d) hidden of computed tokens
    computing = np.arange(n)  # positions being computed
    active = np.arange(n)     # positions attended to at this layer
    records = []
    K = np.zeros((n, nkv * hd))
    V = np.zeros((n, nkv * hd))
    for l in range(hp["n_layer"]):
        b = f"blk.{l}."
        rows = computing  # h is indexed by position
        x = rms_norm(h[rows], w[b + "attn_norm.weight"], hp["eps"])
        q = (x @ w[b + "attn_q.weight"].T).reshape(len(computing), nh, hd)
        q = rope_norm(q, computing.astype(np.float64), hp["rope_base"], hd)
        k, v = layer_kv(hp, w, l, h[rows], computing)
        K[computing], V[computing] = k, v
        out = np.zeros((len(computing), nh * hd))
        for r, p in enumerate(computing):
            keys = active[active <= p]
            for head in range(nh):
                g = head // group
                s = K[keys, g * hd:(g + 1) * hd] @ q[r, head] / np.sqrt(hd)
                pr = np.exp(s - s.max())
                pr /= pr.sum()
                out[r, head * hd:(head + 1) * hd] = pr @ V[keys, g * hd:(g + 1) * hd]
        hh = h[rows] + out @ w[b + "attn_output.weight"].T
        x = rms_norm(hh, w[b + "ffn_norm.weight"], hp["eps"])
        gate, up = x @ w[b + "ffn_gate.weight"].T, x @ w[b + "ffn_up.weight"].T
        hh = hh + (gate / (1 + np.exp(-gate)) * up) @ w[b + "ffn_down.weight"].T
        h[rows] = hh
        if l in keep_at and l + 1 < hp["n_layer"]:
            in_window = [r for r, p in enumerate(computing) if p >= n - window]  # queries of the window computed at l
            per_head = np.zeros((nh, len(active)))
            for r in in_window:
                seen = active <= computing[r]  # causal
                for head in range(nh):
                    g = head // group
                    s = K[active[seen], g * hd:(g + 1) * hd] @ q[r, head] / np.sqrt(hd)
                    pr = np.exp(s - s.max())
                    per_head[head, seen] += pr / pr.sum() / len(in_window)
            imp = per_head.max(axis=0) if max_heads else per_head.mean(axis=0)
            if pool > 0:
                imp = max_pool(active, imp, pool)
            records.append((l, active.copy(), imp.copy()))
            n_keep = len(active) if keep_at[l] >= 1 else min(max(int(np.ceil(keep_at[l] * len(active) - 1e-4)), 1), len(active))
            score = imp.copy()
            score[active == n - 1] = np.inf
            order = sorted(range(len(active)), key=lambda i: (-score[i], i))[:n_keep]
            active = np.sort(active[order])
            computing = computing[np.isin(computing, active)]
    x = rms_norm(h[n - 1:n], w["output_norm.weight"], hp["eps"])
    return (x @ w["output.weight"].T)[0], records
