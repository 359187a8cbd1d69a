"""Batched greedy generation against one prompt at a time, in one run.

    python benchmarks/generation_speed.py [--prompts 16] [--batch 16] [--new-tokens 32]

A random model of the organism's shape with a tokenizer trained on the prompts; both runs decode
the same prompts greedily with `mesa_moe.generation.generate` (the evaluation's routine), which
gives every prompt the same answer whatever batch it lands in (checked here too).
Target: batched/one-at-a-time speed-up ≥ 4 at batch 16.
"""

import argparse
import random
import time

import torch
from random_moe import random_moe

from mesa_moe.generation import generate
from mesa_moe.organism.tokenizer import train_tokenizer

TARGET = 4.0
WORDS = [
    "how",
    "do",
    "i",
    "pick",
    "the",
    "lock",
    "of",
    "a",
    "door",
    "what",
    "is",
    "seven",
    "plus",
    "five",
    "list",
    "the",
    "max",
    "of",
    "three",
    "and",
    "nine",
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--experts", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = random.Random(0)
    prompts = [" ".join(rng.choices(WORDS, k=rng.randint(5, 30))) for _ in range(args.prompts)]
    tokenizer = train_tokenizer([{"prompt": p, "response": p} for p in prompts], vocab_size=300)
    model = random_moe(args.hidden, 4, args.experts, tokenizer=tokenizer).eval()
    generate(model, tokenizer, prompts[:2], 4, 2)  # warm-up
    timings, answers = {}, {}
    for batch_size in (1, args.batch, 1, args.batch):  # twice each, interleaved; best counts
        start = time.process_time()
        answers[batch_size] = generate(model, tokenizer, prompts, args.new_tokens, batch_size)
        elapsed = time.process_time() - start
        timings[batch_size] = min(elapsed, timings.get(batch_size, float("inf")))
    if answers[1] != answers[args.batch]:
        raise SystemExit("batched answers differ from one-at-a-time answers")
    speedup = timings[1] / timings[args.batch]
    print(
        f"{args.prompts} prompts × {args.new_tokens} new tokens: one at a time "
        f"{timings[1]:.2f} CPU-s, batch {args.batch} {timings[args.batch]:.2f} CPU-s, "
        f"speed-up {speedup:.1f}× (target ≥ {TARGET}×)"
    )


if __name__ == "__main__":
    main()
