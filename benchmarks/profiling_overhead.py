"""Routing capture overhead of the profile stage: tokens/s of the batched backbone forward with
the RoutingRecorder's hooks, over the same forward without them, in one run.

    python benchmarks/profiling_overhead.py [--experts 16] [--top-k 2] [--hidden 128] [--layers 4]

Default shape: the organism's (random weights); `--experts 64 --top-k 8` is closer to real MoEs.
Target: capture/plain ≥ 0.95. Times are the process's CPU time (one thread), which other jobs
on a shared machine disturb far less than wall time; rounds alternate plain and capture.
"""

import argparse
import time

import torch
from random_moe import random_moe

from mesa_moe.adapters import adapter_for
from mesa_moe.profiling import RoutingRecorder

TARGET = 0.95


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experts", type=int, default=16)
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = random_moe(args.hidden, args.layers, args.experts, args.top_k).eval()
    adapter = adapter_for(model)
    input_ids = torch.randint(0, 2048, (args.batch, args.length))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[: args.batch // 2, -args.length // 4 :] = 0  # some padding, as in real batches
    source = torch.arange(args.batch) % 2
    tokens = int(attention_mask.sum())

    def forward():
        model.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)

    plain, capture = [], []
    with torch.inference_mode():
        forward()  # warm-up
        for _ in range(args.rounds):  # interleaved, so load changes hit both alike
            start = time.process_time()
            forward()
            plain.append(time.process_time() - start)
            with RoutingRecorder(adapter) as recorder:
                start = time.process_time()
                recorder.set_batch(attention_mask, source)
                forward()
                capture.append(time.process_time() - start)
    plain_tps, capture_tps = tokens / min(plain), tokens / min(capture)
    print(
        f"E={args.experts} top-{args.top_k} hidden={args.hidden} layers={args.layers} "
        f"batch={args.batch}×{args.length}: plain {plain_tps:,.0f} tokens/CPU-s, "
        f"capture {capture_tps:,.0f} tokens/CPU-s, ratio {capture_tps / plain_tps:.3f} "
        f"(target ≥ {TARGET})"
    )


if __name__ == "__main__":
    main()
