#!/usr/bin/env python3
"""lazyllm_edge's CUDA backend against PyTorch (transformers) on the same GGUF weights, on one GPU.

For every ``--model PATH`` (repeatable; ``--label NAME`` in the same order), in one process:

  lazyllm_edge (``Generator(path, backend="cuda", n_ctx=max N + 64)``)
    ppN        dense prefill of N prompt tokens: wall time of ``g.reset(); g.append(ids)`` (append returns once
               the last position's logits are on the host) -> tokens / s
    tgT@dD     dense decode: after a D-token prompt (untimed), T appends of one token each -> tokens / s
    ttftN S    TTFT of an N-token prompt with the LazyLLM schedule S (``g.set_lazy(S)`` before the prefill), and
               its speedup against the engine's own dense prefill
  torch (transformers, ``--torch-dtype``, SDPA attention, ``model.eval()``, ``torch.inference_mode()``)
    ppN        ``model(input_ids, use_cache=True, logits_to_keep=1)`` and the last logits copied to the host,
               ``torch.cuda.synchronize()`` on both sides -> tokens / s
    tgT@dD     after a D-token prefill (untimed), T forward calls of one token with ``past_key_values``, one
               synchronize at the end (``--torch-decode-host-logits``: copy each step's logits to the host, as
               ``append`` does) -> tokens / s

Each figure: one untimed warm-up, then the mean over ``--reps`` repetitions. Prompt ids are seeded random ids in
[100, min(n_vocab, 30000)) (no special tokens), the same for both engines. A weight sanity check compares the
last-position logits of both at every prompt length and after the decode steps (greedy token equal?, relative RMS
difference std(a - b) / std(a) -- "weights match" below 0.2 --, cosine, top-10 overlap): it reports, never fails.
The torch model is built with ``AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)`` (transformers' GGUF
loader; it needs ``accelerate``) or, when that fails or its logits disagree with the engine's, from the GGUF metadata
and ``gguf.quants.dequantize`` here (llama and qwen2; ``--torch-loader``), undoing llama.cpp's q/k row permutation
for llama as transformers does.

    python benchmarks/cuda_vs_torch.py --model /tmp/syn/qwen.gguf --label qwen2.5-0.5b-synthetic \\
        --model ~/.cache/lazyllm_edge/SmolLM2-135M-Instruct.Q4_1.gguf --label smollm2-135m --json cuda_vs_torch.json

Figures print as they are measured (flushed), so a run cut short keeps what it had; ``--json`` is rewritten after
every model. Needs numpy and gguf; the torch part needs torch and transformers (``--skip-torch`` without them).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

import numpy as np  # noqa: E402

# transformers must not try the network (the GPU machine has none)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def log(msg: str = "") -> None:
    print(msg, flush=True)


def import_torch():
    try:
        import torch
        import transformers
    except ImportError as e:
        raise SystemExit(f"the torch comparison needs torch and transformers ({e}); install them or pass --skip-torch")
    return torch, transformers


def int_list(s: str) -> List[int]:
    try:
        out = [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}")
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {s!r}")
    return out


def str_list(s: str) -> List[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def make_ids(n_vocab: int, n: int, seed: int) -> List[int]:
    rng = np.random.default_rng(seed)
    return rng.integers(100, min(n_vocab, 30000), size=n).tolist()


# Logit agreement: std(lazyllm - torch) / std(lazyllm). Measured on SmolLM2 (CPU, 32-64 tokens): 0.03-0.04 with
# torch in bf16/fp16, 0.37-0.46 when the llama q/k permutation is not undone (the cosine stays above 0.996 there,
# so it is no test), 0.8+ for unrelated weights.
MATCH_REL_RMS = 0.2


def compare_logits(a: np.ndarray, b: np.ndarray) -> Dict:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    n = min(a.size, b.size)  # an HF vocab may be padded
    a, b = a[:n], b[:n]
    cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))
    rel = float(np.std(a - b) / (np.std(a) + 1e-30))
    ta, tb = set(np.argsort(-a)[:10].tolist()), set(np.argsort(-b)[:10].tolist())
    return {"greedy_equal": bool(a.argmax() == b.argmax()), "lazyllm_top1": int(a.argmax()),
            "torch_top1": int(b.argmax()), "cosine": cos, "top10_overlap": len(ta & tb) / 10,
            "rel_rms_diff": rel, "max_abs_diff": float(np.abs(a - b).max()), "weights_match": rel <= MATCH_REL_RMS}


def fmt_cmp(c: Dict) -> str:
    return (("weights match" if c["weights_match"] else "LOGITS DISAGREE") + ": "
            f"greedy {'equal' if c['greedy_equal'] else 'DIFFERENT'} ({c['lazyllm_top1']} vs {c['torch_top1']}), "
            f"cosine {c['cosine']:.5f}, rel. RMS diff {c['rel_rms_diff']:.3f}, top-10 overlap {c['top10_overlap']:.1f}")


def mean(xs):
    return float(np.mean(xs)) if xs else float("nan")


def timing(times: List[float], n: int) -> Dict:
    """Samples (s), mean, median and tokens/s from the mean, for n tokens per sample."""
    m = mean(times)
    return {"samples_s": times, "mean_s": m, "median_s": float(np.median(times)), "tps": n / m}


# ---------------------------------------------------------------------------------------------- lazyllm_edge

def _guard(out: Dict, key: str, fn) -> None:
    """Runs one test; an exception is logged and stored as out[key + '_error'] and the next test goes on."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001
        out[f"{key}_error"] = f"{type(e).__name__}: {e}"
        log(f"    {key} failed: {out[key + '_error']}")


def run_lazyllm(args, path: str, res: Dict, refs: Dict[str, np.ndarray]) -> None:
    """Fills res['lazyllm'] and refs (the dense last-position logits, for the sanity check)."""
    from lazyllm_edge import Generator

    Ns, depth, T = args.prompt_tokens, args.decode_depth, args.decode_tokens
    n_ctx = max(max(Ns), depth + T) + 64
    t0 = C.now()
    g = Generator(path, n_ctx=n_ctx, backend=args.backend)
    out = res["lazyllm"] = {"backend": args.backend, "n_ctx": n_ctx, "load_s": C.now() - t0, "info": {
        k: v for k, v in dict(g.info).items() if isinstance(v, (int, float, str, bool))}}
    res.update(architecture=g.info.get("architecture"), n_layer=g.n_layer, n_vocab=g.n_vocab)
    ids = make_ids(g.n_vocab, n_ctx, args.seed)
    res["ids_head"] = ids[:8]
    log(f"  lazyllm_edge: backend={args.backend}, {g.info.get('architecture')}, {g.n_layer} layers, "
        f"n_vocab {g.n_vocab}, n_ctx {n_ctx}, loaded in {out['load_s']:.2f} s")

    def stats():
        s = g.stats
        s = s() if callable(s) else s
        return {k: v for k, v in dict(s).items() if isinstance(v, (int, float, str, bool))}

    def prefill(n):
        g.reset()
        t = C.now()
        lo = g.append(ids[:n])
        return C.now() - t, lo

    def dense_pp(n):
        prefill(n)  # warm-up
        times = []
        for r in range(args.reps):
            dt, lo = prefill(n)
            times.append(dt)
            log(f"    lazyllm pp{n} rep {r + 1}/{args.reps}: {dt * 1e3:.1f} ms, {n / dt:.1f} t/s")
        refs[f"pp{n}"] = np.array(lo, dtype=np.float32)
        out[f"pp{n}"] = {**timing(times, n), "stats": stats(), "finite": bool(np.isfinite(lo).all())}

    def decode_once():
        g.reset()
        lo = g.append(ids[:depth])
        t = C.now()
        for i in range(T):
            last = g.append([ids[depth + i]])
        return C.now() - t, lo, last

    def dense_tg():
        decode_once()
        times = []
        for r in range(args.reps):
            dt, lo, last = decode_once()
            times.append(dt)
            log(f"    lazyllm tg{T}@d{depth} rep {r + 1}/{args.reps}: {T / dt:.1f} t/s")
        refs[f"d{depth}"] = np.array(lo, dtype=np.float32)
        refs[f"d{depth}+{T}"] = np.array(last, dtype=np.float32)
        out[f"tg{T}@d{depth}"] = timing(times, T)

    def lazy_ttft(n, sched):
        prefill(n)
        times = []
        for r in range(args.reps):
            dt, lo = prefill(n)
            times.append(dt)
        st = stats()
        e = out[f"ttft{n}_{sched}"] = {**timing(times, n), "stats": st, "finite": bool(np.isfinite(lo).all())}
        dense = out.get(f"pp{n}", {}).get("mean_s")
        if dense:
            e["speedup_vs_dense"] = dense / mean(times)
        frac = st.get("prefill_fraction_computed")
        log(f"    lazyllm ttft{n} {sched}: {mean(times) * 1e3:.1f} ms"
            + (f" (dense {dense * 1e3:.1f} ms, {dense / mean(times):.2f}x" if dense else " (")
            + (f", computed {frac:.1%}" if isinstance(frac, float) else "") + ")")

    _guard(out, "set_lazy_off", lambda: g.set_lazy("off"))
    for n in Ns:
        _guard(out, f"pp{n}", lambda: dense_pp(n))
    _guard(out, f"tg{T}@d{depth}", dense_tg)
    if not args.skip_lazy:
        for sched in args.schedules:
            try:
                g.set_lazy(sched)
            except Exception as e:  # noqa: BLE001 - report and go on
                out[f"lazy_{sched}_error"] = f"{type(e).__name__}: {e}"
                log(f"    lazyllm set_lazy({sched!r}) failed: {out[f'lazy_{sched}_error']}")
                continue
            for n in Ns:
                _guard(out, f"ttft{n}_{sched}", lambda: lazy_ttft(n, sched))
        _guard(out, "set_lazy_off", lambda: g.set_lazy("off"))
    g = None  # free the engine (and its GPU memory) before torch starts
    gc.collect()


# ---------------------------------------------------------------------------------------------- torch

def _gguf_meta(reader) -> Dict:
    out = {}
    for k, f in reader.fields.items():
        if k.startswith("GGUF.") or k.startswith("tokenizer.ggml.") and k not in (
                "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id"):
            continue
        try:
            out[k] = f.contents()
        except Exception:  # noqa: BLE001
            pass
    return out


def reverse_llama_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo convert_hf_to_gguf.py's LlamaModel.permute (rotary pairs interleaved per head -> HF's two halves).
    For attn_k pass the number of KV heads."""
    dim = w.shape[0] // n_head // 2
    return w.reshape(n_head, dim, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def build_torch_manual(path: str, torch, transformers, dtype, device: str, min_positions: int):
    """HF model from GGUF metadata + gguf.quants.dequantize (llama and qwen2 layouts)."""
    import gguf

    r = gguf.GGUFReader(path)
    meta = _gguf_meta(r)
    arch = meta["general.architecture"]
    if arch not in ("llama", "qwen2"):
        raise RuntimeError(f"manual loader: architecture {arch!r} not supported (llama, qwen2)")
    tensors = {t.name: t for t in r.tensors}

    def m(key, default=None):
        return meta.get(f"{arch}.{key}", default)

    n_head, n_kv = int(m("attention.head_count")), int(m("attention.head_count_kv", m("attention.head_count")))
    d = int(m("embedding_length"))
    head_dim = int(m("attention.key_length", m("rope.dimension_count", d // n_head)))
    kw = dict(vocab_size=int(tensors["token_embd.weight"].shape[1]), hidden_size=d,
              intermediate_size=int(m("feed_forward_length")), num_hidden_layers=int(m("block_count")),
              num_attention_heads=n_head, num_key_value_heads=n_kv,
              max_position_embeddings=max(int(m("context_length", 4096)), min_positions),
              rms_norm_eps=float(m("attention.layer_norm_rms_epsilon", 1e-6)), rope_theta=float(m("rope.freq_base", 10000.0)),
              tie_word_embeddings="output.weight" not in tensors,
              bos_token_id=meta.get("tokenizer.ggml.bos_token_id"), eos_token_id=meta.get("tokenizer.ggml.eos_token_id"))
    if m("rope.scaling.type") not in (None, "none"):
        log(f"    (manual loader: rope scaling {m('rope.scaling.type')!r} ignored)")
    if arch == "llama":
        kw.update(head_dim=head_dim, attention_bias="blk.0.attn_q.bias" in tensors)
        config = transformers.LlamaConfig(**kw)
    else:
        kw.update(use_sliding_window=False)
        config = transformers.Qwen2Config(**kw)
    rp = getattr(config, "rope_parameters", None)  # transformers 5: rope_theta lives in rope_parameters
    if isinstance(rp, dict):
        rp["rope_theta"] = kw["rope_theta"]
    config._attn_implementation = "sdpa"

    names = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
             "output.weight": "lm_head.weight"}
    per_layer = {"attn_norm.weight": "input_layernorm.weight", "ffn_norm.weight": "post_attention_layernorm.weight",
                 "attn_q.weight": "self_attn.q_proj.weight", "attn_k.weight": "self_attn.k_proj.weight",
                 "attn_v.weight": "self_attn.v_proj.weight", "attn_output.weight": "self_attn.o_proj.weight",
                 "attn_q.bias": "self_attn.q_proj.bias", "attn_k.bias": "self_attn.k_proj.bias",
                 "attn_v.bias": "self_attn.v_proj.bias", "ffn_gate.weight": "mlp.gate_proj.weight",
                 "ffn_up.weight": "mlp.up_proj.weight", "ffn_down.weight": "mlp.down_proj.weight"}
    with torch.device(device):
        try:
            model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
        except TypeError:
            model = transformers.AutoModelForCausalLM.from_config(config, torch_dtype=dtype, attn_implementation="sdpa")
    model.to(dtype)
    sd = model.state_dict()
    loaded = set()
    for name, t in tensors.items():
        if name in names:
            hf = names[name]
        elif name.startswith("blk."):
            _, layer, rest = name.split(".", 2)
            if rest not in per_layer:
                raise RuntimeError(f"manual loader: unexpected tensor {name}")
            hf = f"model.layers.{layer}.{per_layer[rest]}"
        else:
            if name == "rope_freqs.weight":
                log("    (manual loader: rope_freqs.weight ignored)")
                continue
            raise RuntimeError(f"manual loader: unexpected tensor {name}")
        w = gguf.quants.dequantize(t.data, t.tensor_type)
        w = np.asarray(w, dtype=np.float32).reshape(tuple(int(x) for x in reversed(t.shape)))
        if arch == "llama" and (".attn_q." in name or ".attn_k." in name):
            w = reverse_llama_permute(w, n_head if ".attn_q." in name else n_kv)
        if hf not in sd:
            raise RuntimeError(f"manual loader: {name} -> {hf} not in the HF model")
        if tuple(sd[hf].shape) != w.shape:
            raise RuntimeError(f"manual loader: {name} {w.shape} vs {hf} {tuple(sd[hf].shape)}")
        if not w.flags.writeable:
            w = w.copy()
        with torch.no_grad():
            sd[hf].copy_(torch.from_numpy(w))
        loaded.add(hf)
    if config.tie_word_embeddings:
        model.tie_weights()
        loaded.add("lm_head.weight")
    missing = [k for k in sd if k not in loaded and not k.endswith("rotary_emb.inv_freq")]
    if missing:
        raise RuntimeError(f"manual loader: parameters not in the GGUF: {missing[:5]}")
    check_dense(model, torch, dtype)
    return model


def check_dense(model, torch, dtype) -> None:
    """The baseline must be a plain dense model: every linear layer a torch.nn.Linear in `dtype` (recent
    transformers can keep GGUF weights packed in GgufLinear modules that unpack them at every forward)."""
    lin = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    odd = sorted({type(m).__name__ for m in model.modules() if "gguf" in type(m).__name__.lower()
                  or (isinstance(m, torch.nn.Linear) and type(m) is not torch.nn.Linear)})
    dtypes = sorted({str(p.dtype) for p in model.parameters()})
    if odd or not lin or dtypes != [str(dtype)]:
        raise RuntimeError(f"not a plain dense {dtype} model (modules {odd}, parameter dtypes {dtypes})")


def build_torch_hf(path: str, torch, transformers, dtype, device: str):
    d, name = os.path.split(os.path.abspath(path))
    kw = dict(gguf_file=name, attn_implementation="sdpa", local_files_only=True)
    if hasattr(transformers, "GgufConfig"):  # transformers >= 5.2x: ask for a dense model, not packed blocks
        try:
            kw["quantization_config"] = transformers.GgufConfig(dequantize=True)
        except TypeError:
            pass
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=dtype, **kw)
    except TypeError:
        model = transformers.AutoModelForCausalLM.from_pretrained(d, torch_dtype=dtype, **kw)
    model = model.to(device=device, dtype=dtype)
    check_dense(model, torch, dtype)
    return model


class TorchRunner:
    def __init__(self, model, torch, device: str):
        self.model, self.torch, self.device = model.eval(), torch, device
        self.keep_kw = {"logits_to_keep": 1}
        # transformers >= 5.2x names the KV cache argument/output `cache` (past_key_values is deprecated there)
        import inspect
        try:
            params = inspect.signature(model.forward).parameters
        except (TypeError, ValueError):
            params = {}
        self.cache_arg = "cache" if "cache" in params and "past_key_values" not in params else "past_key_values"

    def sync(self):
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()

    def forward(self, ids, past=None):
        x = self.torch.tensor([ids], dtype=self.torch.long, device=self.device)
        kw = {self.cache_arg: past} if past is not None else {}
        try:
            out = self.model(input_ids=x, use_cache=True, **kw, **self.keep_kw)
        except TypeError:
            if not self.keep_kw:
                raise
            self.keep_kw = {}  # older transformers: no logits_to_keep, slice instead
            out = self.model(input_ids=x, use_cache=True, **kw)
        cache = getattr(out, "cache", None) if self.cache_arg == "cache" else out.past_key_values
        return out.logits[0, -1], cache

    def prefill(self, ids):
        torch = self.torch
        with torch.inference_mode():
            self.sync()
            t = C.now()
            lo, _ = self.forward(ids)
            lo = lo.float().cpu()
            self.sync()
            return C.now() - t, lo.numpy()

    def decode(self, ids, depth: int, T: int, host_logits: bool):
        torch = self.torch
        with torch.inference_mode():
            lo, past = self.forward(ids[:depth])
            lo = lo.float().cpu().numpy()
            self.sync()
            t = C.now()
            for i in range(T):
                step, past = self.forward([ids[depth + i]], past)
                if host_logits:
                    step.float().cpu()
            self.sync()
            dt = C.now() - t
            return dt, lo, step.float().cpu().numpy()


def run_torch(args, path: str, res: Dict, refs: Dict[str, np.ndarray]) -> None:
    torch, transformers = import_torch()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.torch_dtype]
    device = args.device
    Ns, depth, T = args.prompt_tokens, args.decode_depth, args.decode_tokens
    out = res["torch"] = {"dtype": args.torch_dtype, "device": device, "attn_implementation": "sdpa"}
    n_vocab = res.get("n_vocab")
    if n_vocab is None:  # --skip-lazyllm (or the engine failed): read the figures from the file
        import gguf
        r = gguf.GGUFReader(path)
        n_vocab = int(next(t for t in r.tensors if t.name == "token_embd.weight").shape[1])
        arch = r.fields["general.architecture"].contents()
        res.update(n_vocab=n_vocab, architecture=arch)
        if f"{arch}.block_count" in r.fields:
            res["n_layer"] = int(r.fields[f"{arch}.block_count"].contents())
    ids = make_ids(n_vocab, max(max(Ns), depth + T) + 64, args.seed)
    check_key = f"d{depth}"

    def load(kind):
        t = C.now()
        if kind == "hf":
            model = build_torch_hf(path, torch, transformers, dtype, device)
        else:
            model = build_torch_manual(path, torch, transformers, dtype, device, max(Ns) + 64)
        return TorchRunner(model, torch, device), C.now() - t

    order = {"auto": ["hf", "manual"], "hf": ["hf"], "manual": ["manual"]}[args.torch_loader]
    runner, errors, best = None, {}, None
    for kind in order:
        try:
            cand, load_s = load(kind)
        except Exception as e:  # noqa: BLE001 - try the next loader
            errors[kind] = f"{type(e).__name__}: {e}"
            log(f"  torch loader '{kind}' failed: {errors[kind]}")
            continue
        try:
            _, lo = cand.prefill(ids[:depth])
        except Exception as e:  # noqa: BLE001
            errors[kind] = f"first forward: {type(e).__name__}: {e}"
            log(f"  torch loader '{kind}': {errors[kind]}")
            cand = None
            continue
        cmp = compare_logits(refs[check_key], lo) if check_key in refs else None
        log(f"  torch: loader '{kind}', {args.torch_dtype}, loaded in {load_s:.1f} s"
            + (f"; vs lazyllm at {depth} tokens: {fmt_cmp(cmp)}" if cmp else ""))
        out.setdefault("loader_attempts", []).append({"loader": kind, "load_s": load_s, "check": cmp})
        if cmp is None or cmp["weights_match"]:
            runner, out["loader"], out["load_s"] = cand, kind, load_s
            break
        log(f"  torch: loader '{kind}' disagrees with lazyllm_edge (rel. RMS diff {cmp['rel_rms_diff']:.3f})")
        if best is None or cmp["rel_rms_diff"] < best[0]:
            best = (cmp["rel_rms_diff"], cand, kind, load_s)  # kept in case no loader agrees
        cand = None
    if runner is None and best is not None:
        _, runner, out["loader"], out["load_s"] = best
        log(f"  torch: no loader agrees with lazyllm_edge; timing the closest ('{out['loader']}')")
    best = None
    gc.collect()
    if errors:
        out["loader_errors"] = errors
    if runner is None:
        raise RuntimeError(f"no torch loader worked: {errors}")
    out["model_class"] = type(runner.model).__name__
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    agreement = res.setdefault("agreement", {})

    def pp(n):
        runner.prefill(ids[:n])
        times = []
        for r in range(args.reps):
            dt, lo = runner.prefill(ids[:n])
            times.append(dt)
            log(f"    torch pp{n} rep {r + 1}/{args.reps}: {dt * 1e3:.1f} ms, {n / dt:.1f} t/s")
        out[f"pp{n}"] = {**timing(times, n), "finite": bool(np.isfinite(lo).all())}
        if f"pp{n}" in refs:
            agreement[f"pp{n}"] = c = compare_logits(refs[f"pp{n}"], lo)
            log(f"    next token after {n} tokens: {fmt_cmp(c)}")

    def tg():
        runner.decode(ids, depth, T, args.torch_decode_host_logits)
        times = []
        for r in range(args.reps):
            dt, lo, last = runner.decode(ids, depth, T, args.torch_decode_host_logits)
            times.append(dt)
            log(f"    torch tg{T}@d{depth} rep {r + 1}/{args.reps}: {T / dt:.1f} t/s")
        out[f"tg{T}@d{depth}"] = {**timing(times, T), "host_logits_each_step": args.torch_decode_host_logits}
        if check_key in refs:
            agreement[check_key] = c = compare_logits(refs[check_key], lo)
            log(f"    next token after {depth} tokens: {fmt_cmp(c)}")
        if f"{check_key}+{T}" in refs:  # after the decode steps: checks both engines' KV-cache paths
            agreement[f"{check_key}+{T}"] = c = compare_logits(refs[f"{check_key}+{T}"], last)
            log(f"    next token after {depth}+{T} decoded tokens: {fmt_cmp(c)}")

    for n in Ns:
        _guard(out, f"pp{n}", lambda: pp(n))
    _guard(out, f"tg{T}@d{depth}", tg)
    if device.startswith("cuda"):
        out["max_memory_allocated_bytes"] = int(torch.cuda.max_memory_allocated())
    runner = None
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------- report

def print_report(args, res: Dict) -> None:
    L, Tq = res.get("lazyllm", {}), res.get("torch", {})
    Ns, depth, T = args.prompt_tokens, args.decode_depth, args.decode_tokens

    def f(x, spec):
        return format(x, spec) if isinstance(x, (int, float)) and x == x else "-"

    def ratio(a, b):
        return a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None

    rows = []
    for n in Ns:
        a, b = L.get(f"pp{n}", {}).get("tps"), Tq.get(f"pp{n}", {}).get("tps")
        rows.append([f"pp{n} (t/s)", f(a, ".1f"), f(b, ".1f"), f(ratio(a, b), ".2f"), ""])
    a, b = L.get(f"tg{T}@d{depth}", {}).get("tps"), Tq.get(f"tg{T}@d{depth}", {}).get("tps")
    rows.append([f"tg{T}@d{depth} (t/s)", f(a, ".1f"), f(b, ".1f"), f(ratio(a, b), ".2f"), ""])
    for n in Ns:
        a, b = L.get(f"pp{n}", {}).get("mean_s"), Tq.get(f"pp{n}", {}).get("mean_s")
        rows.append([f"ttft{n} dense (ms)", f(a and a * 1e3, ".1f"), f(b and b * 1e3, ".1f"), f(ratio(a, b), ".2f"), ""])
        for s in args.schedules:
            e = L.get(f"ttft{n}_{s}")
            if e:
                rows.append([f"ttft{n} {s} (ms)", f(e["mean_s"] * 1e3, ".1f"), f(b and b * 1e3, ".1f"),
                             f(ratio(e["mean_s"], b), ".2f"), f(e.get("speedup_vs_dense"), ".2f") + "x"])
    log(f"\n## {res['label']} ({res.get('architecture', '?')}, {res.get('n_layer', '?')} layers) — {res['path']}")
    C.print_table(["test", "lazyllm_edge", "torch", "ratio", "lazy vs own dense"], rows)
    log("ratio = lazyllm_edge / torch: above 1 is better for t/s, below 1 for ms."
        + (f" torch: {Tq['loader']} loader, {args.torch_dtype}, sdpa." if Tq.get("loader") else ""))
    for side, d in (("lazyllm_edge", L), ("torch", Tq)):
        for k, v in d.items():
            if k.endswith("_error"):
                log(f"  {side} {k}: {v}")
    for k in ("lazyllm_error", "torch_error"):
        if k in res:
            log(f"  {k}: {res[k]}")
    for k, c in res.get("agreement", {}).items():
        log(f"  sanity {k}: {fmt_cmp(c)}")


def versions() -> Dict:
    from importlib import metadata

    v = {"python": platform.python_version(), "numpy": np.__version__}
    for mod in ("lazyllm_edge", "gguf", "torch", "transformers", "accelerate"):
        try:
            v[mod] = metadata.version(mod)
        except Exception:  # noqa: BLE001
            v[mod] = None
    try:
        import lazyllm_edge
        v["lazyllm_edge"] = getattr(lazyllm_edge, "__version__", v["lazyllm_edge"])
    except Exception:  # noqa: BLE001
        pass
    try:
        import torch
        v["torch_cuda"] = torch.version.cuda
    except Exception:  # noqa: BLE001
        pass
    return v


def device_name(args) -> Optional[str]:
    try:
        import torch
        if torch.cuda.is_available():
            return torch.cuda.get_device_name()
    except Exception:  # noqa: BLE001
        pass
    try:
        import subprocess
        return subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=20).stdout.strip() or None
    except Exception:  # noqa: BLE001
        return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", "-m", action="append", default=None, help="GGUF path (repeatable; default: the cached "
                    "SmolLM2-135M-Instruct)")
    ap.add_argument("--label", action="append", default=None, help="name of each --model, in order (default: file name)")
    ap.add_argument("--prompt-tokens", type=int_list, default=[4096, 8192], help="prefill/TTFT sizes N (default 4096,8192)")
    ap.add_argument("--decode-tokens", type=int, default=64, help="decode steps T (default 64)")
    ap.add_argument("--decode-depth", type=int, default=512, help="prompt tokens before decoding D (default 512)")
    ap.add_argument("--reps", "-r", type=int, default=3, help="timed repetitions after one warm-up (default 3)")
    ap.add_argument("--schedules", type=str_list, default=["balanced", "aggressive"],
                    help="LazyLLM presets/specs for the TTFT rows (default balanced,aggressive)")
    ap.add_argument("--seed", type=int, default=1234, help="prompt ids seed (default 1234)")
    ap.add_argument("--torch-dtype", choices=["bf16", "fp16", "fp32"], default="bf16")
    ap.add_argument("--torch-loader", choices=["auto", "hf", "manual"], default="auto",
                    help="auto: transformers' GGUF loader, else (failure or logits far from lazyllm_edge's) this "
                         "script's own (default auto)")
    ap.add_argument("--torch-decode-host-logits", action="store_true",
                    help="torch decode: copy each step's logits to the host (as append does); default: sync at the end")
    ap.add_argument("--backend", default="cuda", help="lazyllm_edge backend (default cuda)")
    ap.add_argument("--device", default="cuda", help="torch device (default cuda)")
    ap.add_argument("--skip-torch", action="store_true", help="lazyllm_edge only")
    ap.add_argument("--skip-lazy", action="store_true", help="no LazyLLM TTFT rows")
    ap.add_argument("--skip-lazyllm", action="store_true", help="torch only (no sanity check)")
    ap.add_argument("--json", default=None, metavar="FILE", help="write all figures as JSON (after every model)")
    args = ap.parse_args(argv)
    if args.reps < 1 or args.decode_tokens < 1 or args.decode_depth < 1:
        ap.error("--reps, --decode-tokens and --decode-depth must be >= 1")
    models = args.model or [C.default_model()]
    labels = args.label or []
    if len(labels) > len(models):
        ap.error("more --label than --model")
    labels = labels + [os.path.splitext(os.path.basename(p))[0] for p in models[len(labels):]]
    for p in models:
        if not os.path.isfile(p):
            ap.error(f"model file not found: {p}")
    if not args.skip_torch:
        import_torch()  # fail early with a clear message

    doc = {"script": "benchmarks/cuda_vs_torch.py", "device": device_name(args), "versions": versions(),
           "host": C.host_info(), "args": {k: v for k, v in vars(args).items()}, "models": []}
    log(f"# cuda_vs_torch: device {doc['device']}, " + ", ".join(f"{k} {v}" for k, v in doc["versions"].items() if v)
        + f"; N={args.prompt_tokens}, tg{args.decode_tokens}@d{args.decode_depth}, reps={args.reps}")

    def save():
        if args.json:
            with open(args.json, "w", encoding="utf-8") as fh:
                json.dump(doc, fh, indent=1, default=str)
                fh.write("\n")

    for path, label in zip(models, labels):
        res = {"label": label, "path": os.path.abspath(path), "size_bytes": os.path.getsize(path)}
        doc["models"].append(res)
        log(f"\n# {label}: {path} ({C.human_size(res['size_bytes'])})")
        refs: Dict[str, np.ndarray] = {}
        if not args.skip_lazyllm:
            try:
                run_lazyllm(args, path, res, refs)
            except Exception as e:  # noqa: BLE001 - keep going with torch
                res["lazyllm_error"] = f"{type(e).__name__}: {e}"
                log(f"  lazyllm_edge failed: {res['lazyllm_error']}")
            save()
        if not args.skip_torch:
            try:
                run_torch(args, path, res, refs)
            except Exception as e:  # noqa: BLE001
                res["torch_error"] = f"{type(e).__name__}: {e}"
                log(f"  torch failed: {res['torch_error']}")
            save()
        print_report(args, res)
        save()
    if args.json:
        log(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
