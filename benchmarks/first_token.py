"""The first reply token of a pruned prefill against the dense engine's: argmax agreement and KL(dense || lazy)
at the prompt's last position, per schedule (prefill pruning only; no decode step runs). The first token is
the one whose latency LazyLLM shortens, and the only one a prefill-only schedule computes without the tokens it
dropped, so a schedule that keeps too few tokens shows here first (keeping only the last token after layer 12
turns SmolLM2's "The" into "\\n").

    python benchmarks/first_token.py --min-tokens 1536 "off|12:0.1;16:0.2|12:0.1;16:0.02"

Passkey tasks (with --variants as in passkey_sweep.py) go through the chat template; fidelity documents are
cut to their last --fidelity-tokens tokens. The first schedule is the reference, so start with off.
"""
import argparse
from pathlib import Path

import numpy as np

from lazyllm_edge import LazyConfig
from lazyllm_edge.eval import dev_set_path, load_tasks, log_softmax, passkey_prompt_ids
from passkey_sweep import add_sweep_arguments, sweep_setup


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_sweep_arguments(ap)
    ap.add_argument("--fidelity-tokens", type=int, default=3000, help="0: no fidelity documents")
    args = ap.parse_args()
    gen, tasks, names, configs = sweep_setup(args)
    prompts = [(t["id"], passkey_prompt_ids(gen, t)) for t in tasks]
    if args.fidelity_tokens > 0:
        path = Path(args.tasks) if args.tasks else dev_set_path()
        for t in load_tasks(path, kinds=("fidelity",)):
            prompts.append((t["id"], gen.tokenize(t["user"], add_special=True)[-args.fidelity_tokens:]))
    agree = {n: 0 for n in names}
    kl = {n: [] for n in names}
    for pid, ids in prompts:
        rows = []
        for n in names:
            c = configs[n]
            gen.set_lazy(LazyConfig(schedule=c.schedule, prune_decode=False))
            gen.reset()
            rows.append(log_softmax(np.asarray(gen.append(ids))))
        ref = rows[0]
        top = int(ref.argmax())
        line = [pid, repr(gen.detokenize([top]))]
        for n, lp in zip(names, rows):
            same = int(lp.argmax()) == top
            k = float((np.exp(ref) * (ref - lp)).sum())
            agree[n] += same
            kl[n].append(k)
            line.append(f"{n}={'=' if same else repr(gen.detokenize([int(lp.argmax())]))}/{k:.2f}")
        print(" ".join(line), flush=True)
    for n in names:
        print(f"{n:28s} first-token agreement {agree[n]}/{len(prompts)}  mean KL {np.mean(kl[n]):.3f}  "
              f"max KL {np.max(kl[n]):.2f}")


if __name__ == "__main__":
    main()
