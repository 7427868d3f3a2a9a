#!/usr/bin/env python3
"""Random-weight GGUF files with the layout of a real model, for speed measurements without the real file.

    python benchmarks/make_synthetic.py --like qwen2.5-coder-0.5b OUT.gguf [--seed 0]
    python benchmarks/make_synthetic.py --like /path/to/real.gguf OUT.gguf     # layout read from that file
    python benchmarks/make_synthetic.py --like llama3.2-1b-q4_k_m OUT.gguf     # a layout defined by its shapes
    python benchmarks/make_synthetic.py --list
    python benchmarks/make_synthetic.py --dump-layout                          # regenerate synthetic_models.json
    python benchmarks/make_synthetic.py --dump-layout smollm2-135m=/path/to/SmolLM2-135M-Instruct.Q4_1.gguf

The layouts come from ``benchmarks/synthetic_models.json`` (written by ``--dump-layout`` from the real files in
the model cache): every metadata key of the real file except the tokenizer's big arrays, its control/user-defined
tokens, and the list of tensors (name, ggml shape ``ne``, ggml type). The output has the same architecture
metadata, tensor names, shapes and quantization types, so the engine runs the same kernels on the same sizes; only
the numbers differ:

* quantized matrices: random blocks built directly in the ggml block format (random quants, fp16 scales chosen so
  that a weight dequantizes to mean ~0 and standard deviation ~1/sqrt(n_in)); types without a block builder here are
  drawn as fp32 normals and quantized with ``gguf.quants.quantize``;
* F32/F16/BF16 matrices: normals with the same scale; norm weights (``*norm.weight``) ~1.0 as F32; biases small;
* tokenizer: byte-level GPT-2 BPE (the 256 byte symbols, a few merges) padded with unique dummy tokens up to the
  model's n_vocab; the real file's control/user-defined tokens keep their ids (so BOS/EOS/chat markers exist).

Needs numpy and the ``gguf`` package. The 0.5B Qwen layout takes well under a minute on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

HERE = Path(__file__).resolve().parent
LAYOUT_FILE = HERE / "synthetic_models.json"
CACHE = Path(os.environ.get("LAZYLLM_EDGE_CACHE") or Path.home() / ".cache" / "lazyllm_edge")
# key -> file name in the model cache (the registry names of models/registry.json)
DEFAULT_SOURCES = {
    "smollm2-135m": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "qwen2.5-coder-0.5b": "qwen2.5-coder-0.5b.gguf",
}
TOKENIZER_ARRAYS = ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type",
                    "tokenizer.ggml.scores")
MAX_ARRAY_KEPT = 1024  # any other metadata array longer than this is dropped from the layout too


# ---------------------------------------------------------------------------------------------- layout (dump)

def read_layout(path: str) -> Dict:
    """Layout of a real GGUF: metadata (without the tokenizer's big arrays), special tokens, tensors."""
    import gguf

    r = gguf.GGUFReader(path)
    meta: List[list] = []
    dropped: List[str] = []
    for key, fld in r.fields.items():
        if key.startswith("GGUF.") or key in TOKENIZER_ARRAYS:
            continue
        t0 = fld.types[0]
        if t0 == gguf.GGUFValueType.ARRAY:
            if len(fld.types) != 2 or len(fld.data) > MAX_ARRAY_KEPT:  # nested or big arrays
                dropped.append(key)
                continue
            meta.append([key, "ARRAY", fld.types[1].name, list(fld.contents())])
        else:
            meta.append([key, t0.name, fld.contents()])
    specials = []
    if "tokenizer.ggml.token_type" in r.fields and "tokenizer.ggml.tokens" in r.fields:
        types = r.fields["tokenizer.ggml.token_type"].contents()
        toks = r.fields["tokenizer.ggml.tokens"].contents()
        # control, user-defined and unknown tokens keep their ids and text; unused (5), byte (6) and normal ones
        # are replaced by the synthetic vocabulary
        specials = [[i, toks[i], int(types[i])] for i in range(len(types)) if types[i] in (2, 3, 4)]
    tensors = [[t.name, [int(x) for x in t.shape], t.tensor_type.name] for t in r.tensors]
    arch = r.fields["general.architecture"].contents()
    embd = next(t for t in tensors if t[0] == "token_embd.weight")
    return {"source_file": os.path.basename(path), "source_size": os.path.getsize(path), "architecture": arch,
            "n_vocab": embd[1][1], "dropped_metadata": dropped, "metadata": meta, "special_tokens": specials,
            "tensors": tensors}


def _dumps(obj, indent: int = 0) -> str:
    """JSON with one line per metadata key / tensor / special token (small, diff-friendly)."""
    pad = " " * indent
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f'{pad} {json.dumps(k)}: {_dumps(v, indent + 1)}' for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and obj and all(isinstance(x, list) for x in obj):
        return "[\n" + ",\n".join(f"{pad} {json.dumps(x, ensure_ascii=False)}" for x in obj) + "\n" + pad + "]"
    return json.dumps(obj, ensure_ascii=False)


def dump_layouts(specs: List[str], out: Path) -> None:
    old = load_layouts(out)["models"] if out.is_file() else {}
    doc = {"about": None, "models": old}
    doc["about"] = ("Layouts of real GGUF files for benchmarks/make_synthetic.py (regenerate with "
                    "python benchmarks/make_synthetic.py --dump-layout). tensors: [name, ne (ggml order), type].")
    pairs = [s.split("=", 1) for s in specs] if specs else [[k, str(CACHE / f)] for k, f in DEFAULT_SOURCES.items()]
    for key, path in pairs:
        if not os.path.isfile(path):
            print(f"{key}: {path} not found; {'keeping the stored layout' if key in doc['models'] else 'skipped'}",
                  file=sys.stderr)
            continue
        doc["models"][key] = read_layout(path)
        lay = doc["models"][key]
        print(f"{key}: {lay['architecture']}, {len(lay['tensors'])} tensors, {len(lay['metadata'])} metadata keys, "
              f"{len(lay['special_tokens'])} special tokens", file=sys.stderr)
    text = _dumps(doc) + "\n"
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out} ({len(text.encode()) / 1024:.1f} KiB)", file=sys.stderr)


def load_layouts(path: Path = LAYOUT_FILE) -> Dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ---------------------------------------------------------------------------------------------- shaped layouts

def llama_q4_k_m_layout(name: str, n_layer: int, d_model: int, n_head: int, n_head_kv: int, head_dim: int, ffn: int,
                        n_vocab: int) -> Dict:
    """A llama-architecture layout from its shapes, not copied from a file: Llama-3 metadata (rope base 500000, tied
    embeddings) and llama.cpp's Q4_K_M type choice (llama_tensor_get_type): Q4_K, with Q6_K for the tied
    embedding/output and for attn_v and ffn_down in the layers use_more_bits picks (the first and last eighth and
    every third one between)."""
    def more_bits(i):
        return i < n_layer // 8 or i >= 7 * n_layer // 8 or (i - n_layer // 8) % 3 == 2

    meta = [["general.architecture", "STRING", "llama"], ["general.name", "STRING", name],
            ["llama.block_count", "UINT32", n_layer], ["llama.context_length", "UINT32", 131072],
            ["llama.embedding_length", "UINT32", d_model], ["llama.feed_forward_length", "UINT32", ffn],
            ["llama.attention.head_count", "UINT32", n_head], ["llama.attention.head_count_kv", "UINT32", n_head_kv],
            ["llama.attention.key_length", "UINT32", head_dim], ["llama.attention.value_length", "UINT32", head_dim],
            ["llama.rope.freq_base", "FLOAT32", 500000.0], ["llama.rope.dimension_count", "UINT32", head_dim],
            ["llama.attention.layer_norm_rms_epsilon", "FLOAT32", 1e-5], ["llama.vocab_size", "UINT32", n_vocab],
            ["general.file_type", "UINT32", 15], ["general.quantization_version", "UINT32", 2],
            ["tokenizer.ggml.model", "STRING", "gpt2"], ["tokenizer.ggml.pre", "STRING", "default"],
            ["tokenizer.ggml.add_bos_token", "BOOL", True], ["tokenizer.ggml.bos_token_id", "UINT32", 128000],
            ["tokenizer.ggml.eos_token_id", "UINT32", 128009]]
    specials = [[128000, "<|begin_of_text|>", 3], [128001, "<|end_of_text|>", 3], [128009, "<|eot_id|>", 3]]
    q, kv = n_head * head_dim, n_head_kv * head_dim
    tensors = [["token_embd.weight", [d_model, n_vocab], "Q6_K"], ["output_norm.weight", [d_model], "F32"]]
    for i in range(n_layer):
        b = f"blk.{i}."
        tensors += [[b + "attn_norm.weight", [d_model], "F32"], [b + "attn_q.weight", [d_model, q], "Q4_K"],
                    [b + "attn_k.weight", [d_model, kv], "Q4_K"],
                    [b + "attn_v.weight", [d_model, kv], "Q6_K" if more_bits(i) else "Q4_K"],
                    [b + "attn_output.weight", [q, d_model], "Q4_K"], [b + "ffn_norm.weight", [d_model], "F32"],
                    [b + "ffn_gate.weight", [d_model, ffn], "Q4_K"], [b + "ffn_up.weight", [d_model, ffn], "Q4_K"],
                    [b + "ffn_down.weight", [ffn, d_model], "Q6_K" if more_bits(i) else "Q4_K"]]
    return {"source_file": f"(shapes of {name})", "source_size": 0, "architecture": "llama", "n_vocab": n_vocab,
            "dropped_metadata": [], "metadata": meta, "special_tokens": specials, "tensors": tensors}


# key -> the layout, for models whose files are not in the cache (the shapes of the published configs)
SHAPED_LAYOUTS = {
    "llama3.2-1b-q4_k_m": lambda: llama_q4_k_m_layout("Llama-3.2-1B-shaped Q4_K_M", 16, 2048, 32, 8, 64, 8192, 128256),
    "llama3.2-3b-q4_k_m": lambda: llama_q4_k_m_layout("Llama-3.2-3B-shaped Q4_K_M", 28, 3072, 24, 8, 128, 8192, 128256),
}


def get_layout(like: str, layout_file: Path = LAYOUT_FILE) -> Dict:
    if like.endswith(".gguf") or os.path.isfile(like):
        return read_layout(like)
    if like in SHAPED_LAYOUTS:
        return SHAPED_LAYOUTS[like]()
    models = load_layouts(layout_file)["models"]
    if like not in models:
        known = sorted(models) + sorted(SHAPED_LAYOUTS)
        raise SystemExit(f"unknown layout '{like}': known {', '.join(known)} (or pass a .gguf path)")
    return models[like]


# ---------------------------------------------------------------------------------------------- random blocks

def _f16_bytes(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.astype(np.float16)).view(np.uint8).reshape(-1, 2)


# type -> (quant standard deviation in units of d, builder that fixes the block's non-quant fields)
# Offsets are the ggml block layouts (ggml-common.h). Random bytes are the quants; d is set per block so that
# |d| * std(quant) ~= the wanted weight scale, with a random sign; minimum / sub-block scale fields are chosen so
# that a block's mean is ~0.
def _q4_0(b, d):
    b[:, 0:2] = _f16_bytes(d)


def _q4_1(b, d):  # w = d*q + m, q uniform 0..15 (mean 7.5)
    b[:, 0:2] = _f16_bytes(d)
    b[:, 2:4] = _f16_bytes(-7.5 * d)


def _q5_0(b, d):  # w = d*(q5 - 16)
    b[:, 0:2] = _f16_bytes(d)


def _q5_1(b, d):  # w = d*q5 + m, q5 uniform 0..31 (mean 15.5)
    b[:, 0:2] = _f16_bytes(d)
    b[:, 2:4] = _f16_bytes(-15.5 * d)


def _q8_0(b, d):  # w = d*int8
    b[:, 0:2] = _f16_bytes(d)


def _q2_k(b, d):  # scales[16] qs[64] d dmin; w = d*sc*q - dmin*m, q 0..3: sc=2, m=3, dmin=d -> d*(2q-3)
    b[:, 0:16] = 2 | (3 << 4)
    b[:, 80:82] = _f16_bytes(d)
    b[:, 82:84] = _f16_bytes(d)


def _q3_k(b, d):  # hmask[32] qs[64] scales[12] d; all 16 six-bit scales = 40 (sc - 32 = 8), q in -4..3
    b[:, 96:104] = 0x88
    b[:, 104:108] = 0xAA
    b[:, 108:110] = _f16_bytes(d)


def _q4_k(b, d):  # d dmin scales[12] qs[128]; sc=2, m=15, dmin=d -> d*(2q-15)
    b[:, 0:2] = _f16_bytes(d)
    b[:, 2:4] = _f16_bytes(d)
    b[:, 4:8] = 2
    b[:, 8:12] = 15
    b[:, 12:16] = 0xF2


def _q5_k(b, d):  # d dmin scales[12] qh[32] qs[128]; sc=2, m=31, dmin=d -> d*(2q5-31)
    b[:, 0:2] = _f16_bytes(d)
    b[:, 2:4] = _f16_bytes(d)
    b[:, 4:8] = 2
    b[:, 8:12] = 31 | (1 << 6)
    b[:, 12:16] = 0xF2


def _q6_k(b, d):  # ql[128] qh[64] scales[16] (int8) d; scale 8 -> d*8*(q6-32)
    b[:, 192:208] = 8
    b[:, 208:210] = _f16_bytes(d)


_U4 = np.sqrt((16 ** 2 - 1) / 12)   # std of a uniform 0..15
_U5 = np.sqrt((32 ** 2 - 1) / 12)
_U6 = np.sqrt((64 ** 2 - 1) / 12)
BLOCK_BUILDERS = {
    "Q4_0": (_U4, _q4_0), "Q4_1": (_U4, _q4_1), "Q5_0": (_U5, _q5_0), "Q5_1": (_U5, _q5_1),
    "Q8_0": (np.sqrt((256 ** 2 - 1) / 12), _q8_0),
    "Q2_K": (2 * np.sqrt((4 ** 2 - 1) / 12), _q2_k), "Q3_K": (8 * np.sqrt((8 ** 2 - 1) / 12), _q3_k),
    "Q4_K": (2 * _U4, _q4_k), "Q5_K": (2 * _U5, _q5_k), "Q6_K": (8 * _U6, _q6_k),
}


def random_matrix(rng: np.random.Generator, ne: List[int], type_name: str, scale: float) -> np.ndarray:
    """Data of a ggml tensor of shape ne (ne[0] = row length) and type type_name: uint8 blocks for quantized types
    (shape (rows, bytes per row)), else a float array in numpy order."""
    import gguf

    qtype = gguf.GGMLQuantizationType[type_name]
    np_shape = tuple(reversed(ne))
    n = int(np.prod(ne))
    if type_name in ("F32", "F16"):
        x = rng.standard_normal(n, dtype=np.float32) * np.float32(scale)
        return x.reshape(np_shape).astype(np.float32 if type_name == "F32" else np.float16)
    block, tsize = gguf.GGML_QUANT_SIZES[qtype]
    rows, n_blocks = n // ne[0], n // block
    if type_name in BLOCK_BUILDERS:
        qstd, build = BLOCK_BUILDERS[type_name]
        b = np.frombuffer(bytearray(rng.bytes(n_blocks * tsize)), dtype=np.uint8).reshape(n_blocks, tsize)
        # random sign: types whose quants are not centred (q - 16 of Q5_0 has mean -0.5) would otherwise give every
        # weight of the matrix the same small offset, a shared direction that swamps the random model's activations
        d = (scale / qstd) * rng.uniform(0.8, 1.2, n_blocks).astype(np.float32)
        d *= np.where(rng.random(n_blocks) < 0.5, -1.0, 1.0).astype(np.float32)
        build(b, d)
        return b.reshape(rows, ne[0] // block * tsize)
    # BF16 and types without a block builder: quantize fp32 normals (slow for big tensors, but rare)
    x = (rng.standard_normal(n, dtype=np.float32) * np.float32(scale)).reshape(np_shape)
    try:
        return gguf.quants.quantize(x, qtype)
    except NotImplementedError as e:
        raise SystemExit(f"no random-block builder for {type_name} and gguf.quants cannot quantize it: {e}") from None


def tensor_data(rng: np.random.Generator, name: str, ne: List[int], type_name: str) -> np.ndarray:
    n = int(np.prod(ne))
    if len(ne) == 1 or (len(ne) == 2 and ne[1] == 1 and type_name == "F32"):
        if name.endswith(".bias"):
            x = 0.02 * rng.standard_normal(n)
        elif "norm" in name:
            x = 1.0 + 0.02 * rng.standard_normal(n)
        else:  # rope_freqs and other per-channel factors
            x = np.ones(n)
        x = x.astype(np.float32).reshape(tuple(reversed(ne)))
        if type_name == "F32":
            return x
        if type_name == "F16":
            return x.astype(np.float16)
        import gguf
        return gguf.quants.quantize(x, gguf.GGMLQuantizationType[type_name])
    return random_matrix(rng, ne, type_name, 1.0 / np.sqrt(ne[0]))


# ---------------------------------------------------------------------------------------------- tokenizer

# the tiny test models' byte-level BPE (models/make_tiny.py), padded to the real vocabulary size below
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from make_tiny import gpt2_bytes_to_unicode as _gpt2_bytes_to_unicode  # noqa: E402

MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("a", "n"), ("e", "r"), ("o", "n"), ("Ġ", "a")]


def synthetic_vocab(n_vocab: int, specials: List[list]):
    """(tokens, token types, merges): specials at their ids, then the 256 byte symbols, the merge results and unique
    dummy tokens in the free slots."""
    tokens: List[Optional[str]] = [None] * n_vocab
    types = [1] * n_vocab
    for i, text, ty in specials:
        if i < n_vocab:
            tokens[i], types[i] = text, ty
    taken = {t for t in tokens if t is not None}
    byte_map = _gpt2_bytes_to_unicode()
    fill = [byte_map[b] for b in range(256)] + [a + b for a, b in MERGES]
    fill = [t for t in fill if t not in taken]
    free = (i for i in range(n_vocab) if tokens[i] is None)
    for t in fill:
        i = next(free, None)
        if i is None:
            raise SystemExit(f"n_vocab {n_vocab} is too small for the byte-level vocabulary")
        tokens[i] = t
    for i in free:
        t = f"<synthetic_{i}>"
        while t in taken:
            t = "_" + t
        tokens[i] = t
    merges = [f"{a} {b}" for a, b in MERGES]
    return tokens, types, merges


# ---------------------------------------------------------------------------------------------- writer

def write_synthetic(layout: Dict, out: str, seed: int = 0, like: str = "", verbose: bool = True) -> None:
    import gguf

    t_start = time.perf_counter()
    arch = layout["architecture"]
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(out, arch)
    VT = gguf.GGUFValueType
    meta = {m[0]: m for m in layout["metadata"]}
    tok_model = meta.get("tokenizer.ggml.model", [None, None, "gpt2"])[2]
    for m in layout["metadata"]:
        key = m[0]
        if key == "general.architecture":
            continue  # GGUFWriter writes it
        if key == "general.alignment":
            w.data_alignment = int(m[2])
        if m[1] == "ARRAY":
            w.add_key_value(key, m[3], VT.ARRAY, sub_type=VT[m[2]])
            continue
        val = m[2]
        if key == "general.name":
            val = f"synthetic {val}"
        elif key == "tokenizer.ggml.model" and tok_model != "gpt2":
            val = "gpt2"  # the synthetic vocabulary is byte-level BPE whatever the original was
        elif key == "tokenizer.ggml.pre" and tok_model != "gpt2":
            val = "default"
        elif key == "tokenizer.ggml.add_space_prefix" and tok_model != "gpt2":
            val = False
        w.add_key_value(key, val, VT[m[1]])
    if "tokenizer.ggml.model" not in meta:
        w.add_tokenizer_model("gpt2")
    if "tokenizer.ggml.pre" not in meta:
        w.add_tokenizer_pre("default")
    w.add_key_value("general.description",
                    f"lazyllm_edge synthetic model: random weights (seed {seed}) with the layout of "
                    f"{like or layout.get('source_file', '?')} ({layout.get('source_file', '?')})", VT.STRING)
    tokens, types, merges = synthetic_vocab(layout["n_vocab"], layout.get("special_tokens", []))
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)

    # tensor infos first, then the data tensor by tensor (never more than one tensor in memory)
    for name, ne, tname in layout["tensors"]:
        qtype = gguf.GGMLQuantizationType[tname]
        block, tsize = gguf.GGML_QUANT_SIZES[qtype]
        nbytes = int(np.prod(ne)) // block * tsize
        w.add_tensor_info(name, tuple(reversed(ne)), np.dtype(np.float32), nbytes, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    total = 0
    for name, ne, tname in layout["tensors"]:
        data = tensor_data(rng, name, ne, tname)
        w.write_tensor_data(data)
        total += data.nbytes
    w.close()
    if verbose:
        print(f"wrote {out}: {arch}, {len(layout['tensors'])} tensors, {total / 2**20:.1f} MiB of weights, "
              f"n_vocab {layout['n_vocab']}, seed {seed}, {time.perf_counter() - t_start:.1f} s", file=sys.stderr)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", help="output .gguf")
    ap.add_argument("--like", help="layout key of synthetic_models.json (see --list) or a real .gguf path")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layouts", default=str(LAYOUT_FILE), help=f"layout JSON (default {LAYOUT_FILE.name} here)")
    ap.add_argument("--list", action="store_true", help="list the stored layouts")
    ap.add_argument("--dump-layout", nargs="*", metavar="KEY=PATH", default=None,
                    help="(re)write the layout JSON from real files (default: "
                         + ", ".join(f"{k}={CACHE / f}" for k, f in DEFAULT_SOURCES.items()) + ")")
    args = ap.parse_args(argv)
    layouts = Path(args.layouts)
    if args.dump_layout is not None:
        dump_layouts(args.dump_layout, layouts)
        return 0
    if args.list:
        stored = load_layouts(layouts)["models"]
        for key, lay in list(stored.items()) + [(k, f()) for k, f in SHAPED_LAYOUTS.items()]:
            n = sum(int(np.prod(t[1])) for t in lay["tensors"])
            print(f"{key}: {lay['architecture']}, {len(lay['tensors'])} tensors, {n / 1e6:.0f}M weights, "
                  f"n_vocab {lay['n_vocab']} (from {lay['source_file']})")
        return 0
    if not args.like or not args.out:
        ap.error("give --like KEY and the output path (or --list / --dump-layout)")
    write_synthetic(get_layout(args.like, layouts), args.out, args.seed, args.like)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
