"""Training step time: `mesa` (L_SFT + γ·L_OT, frozen-router reference) over plain SFT of the same
trainable set (`experts_safe_top` given the same experts.parquet: the same w experts per layer +
routers, L_SFT only), both through `mesa_moe.training.train`, in one run.

    python benchmarks/training_step.py [--steps 8] [--w 4] [--reference frozen_router]

A random model of the organism's shape; data: safe/general chat pairs of equal length. Step time
is CPU time per step: (CPU of a 2S-step run − CPU of an S-step run) / S, so loading and saving
cancel. Target: mesa/SFT ≤ 1.25. Also printed: mesa over SFT on a batch twice as large, which
sends as many tokens through forward and backward as mesa's D_safe + D_gen batches: what is left
above 1 there is the cost of the routing losses themselves.
"""

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from random_moe import random_moe

from mesa_moe.organism.tokenizer import train_tokenizer
from mesa_moe.training import train

TARGET = 1.25
os.environ.setdefault("TQDM_DISABLE", "1")


def pairs(rng: random.Random, n: int, kind: str) -> list[dict]:
    """Safe and general pairs of the same length distribution (so both batches cost alike)."""
    rows = []
    for _ in range(n):
        words = " ".join(
            rng.choices(
                ["lock", "door", "key", "open", "seven", "plus", "nine"], k=rng.randint(8, 30)
            )
        )
        if kind == "safe":
            rows.append({"prompt": f"How do I {words}?", "response": "I can't help with that."})
        else:
            rows.append({"prompt": f"What is {words}?", "response": "It is seven plus nine."})
    return rows


def build(root: Path, args) -> dict:
    rng = random.Random(0)
    safe, gen = pairs(rng, 256, "safe"), pairs(rng, 256, "gen")
    for name, rows in (("d_safe", safe), ("d_gen", gen)):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tokenizer = train_tokenizer(safe + gen, vocab_size=512)
    model = random_moe(args.hidden, args.layers, args.experts, tokenizer=tokenizer)
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    pd.DataFrame(
        [
            {
                "layer": layer,
                "expert": e,
                "f_mix": 100 * e / args.experts,
                "cost": 0.5,
                "p_safe": 1 / args.experts,
                "score": float("nan"),
                "selected": e < args.w,
            }
            for layer in range(args.layers)
            for e in range(args.experts)
        ]
    ).to_parquet(root / "experts.parquet")
    return {
        "model": {"source": str(root / "model"), "revision": None, "dtype": "float32"},
        "selection": str(root / "experts.parquet"),
        "data": {
            "safe": {"kind": "local", "path": str(root / "d_safe.jsonl")},
            "gen": {"kind": "local", "path": str(root / "d_gen.jsonl")},
            "max_length": 96,
        },
        "training": {
            "batch_size": args.batch,
            "lr": 1e-3,
            "weight_decay": 0.0,
            "warmup": 1,
            "grad_clip": 1.0,
            "gamma": 1.0,
            "epsilon": 0.05,
            "reference": args.reference,
            "online_cost": "selected",
            "checkpoint_every": 10**6,
            "log_every": 10**6,
            "mixed_precision": "no",
        },
        "seed": 0,
    }


def cpu_seconds(spec: dict, method: str, steps: int, out: Path) -> float:
    start = time.process_time()
    train(
        spec
        | {
            "method": method,
            "out_dir": str(out / f"{method}-{steps}"),
            "training": spec["training"] | {"steps": steps},
        }
    )
    return time.process_time() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--w", type=int, default=4)
    parser.add_argument("--experts", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--reference", default="frozen_router")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spec = build(root, args)
        double = spec | {"training": spec["training"] | {"batch_size": 2 * args.batch}}
        per_step = {}
        for name, method, run_spec in (
            ("sft", "experts_safe_top", spec),
            ("mesa", "mesa", spec),
            ("sft_2b", "experts_safe_top", double),
        ):
            short = cpu_seconds(run_spec, method, args.steps, root / name)
            long = cpu_seconds(run_spec, method, 2 * args.steps, root / name)
            per_step[name] = (long - short) / args.steps
    ratio = per_step["mesa"] / per_step["sft"]
    print(
        f"E={args.experts} w={args.w} batch={args.batch} reference={args.reference}: "
        f"SFT {per_step['sft']:.3f} CPU-s/step, mesa {per_step['mesa']:.3f} CPU-s/step, "
        f"ratio {ratio:.2f} (target ≤ {TARGET}); SFT at batch {2 * args.batch} "
        f"{per_step['sft_2b']:.3f} CPU-s/step, "
        f"mesa/that {per_step['mesa'] / per_step['sft_2b']:.2f}"
    )


if __name__ == "__main__":
    main()
