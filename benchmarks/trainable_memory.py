"""Gradient + AdamW memory of selected-expert training (`mesa`: w experts per layer + routers)
against `experts_all` (all E experts + routers) on the same model, and each one's peak process
memory, in one run (each configuration in its own fresh process, so peaks do not mix).

    python benchmarks/trainable_memory.py [--experts 16] [--hidden 128] [--layers 4] [--steps 3]

Trainable sets come from `mesa_moe.training.METHODS` and `make_trainable`, as the train stage
builds them; a few AdamW steps on random tokens fill the gradients and optimiser state.
Target: mesa's gradient + optimiser bytes ≤ 1.2 · (w/E) · experts_all's expert bytes + the
routers' bytes. Also printed: the ratio for w = 1, 2, 4, E/2 (how bytes grow with w).
"""

import argparse
import multiprocessing
import resource
import time

import torch
from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

from mesa_moe.adapters import adapter_for
from mesa_moe.trainable import make_trainable
from mesa_moe.training import optimizer_state_bytes

TARGET_FACTOR = 1.2


def measure(args, w: int) -> dict:
    """One configuration in this process: w experts per layer (w = E: experts_all) + routers."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = Qwen3MoeConfig(vocab_size=1000, hidden_size=args.hidden, intermediate_size=args.hidden,
                            moe_intermediate_size=args.hidden, num_hidden_layers=args.layers,
                            num_attention_heads=4, num_key_value_heads=2, num_experts=args.experts,
                            num_experts_per_tok=2, experts_implementation="grouped_mm")
    model = Qwen3MoeForCausalLM(config)
    adapter = adapter_for(model)
    chosen = {layer: list(range(w)) for layer in adapter.layer_indices}
    parameters = make_trainable(adapter, chosen, train_routers=True)
    routers = {id(layer.router.weight) for layer in adapter.layers}
    optimizer = torch.optim.AdamW(parameters, lr=1e-3, weight_decay=0.01)
    input_ids = torch.randint(0, 1000, (16, 64))
    times = []
    for _ in range(args.steps):
        start = time.process_time()
        model(input_ids=input_ids, labels=input_ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)
        times.append(time.process_time() - start)
    grads = {id(p): p.grad.numel() * p.grad.element_size() for p in parameters}
    router_grads = sum(b for key, b in grads.items() if key in routers)
    router_adam = sum(t.numel() * t.element_size() for p, state in optimizer.state.items()
                      if id(p) in routers for t in state.values() if torch.is_tensor(t))
    return {"w": w, "bytes": sum(grads.values()) + optimizer_state_bytes(optimizer),
            "router_bytes": router_grads + router_adam,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "step_s": sorted(times)[len(times) // 2]}


def in_fresh_process(args, w: int) -> dict:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(measure, (args, w))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experts", type=int, default=16)
    parser.add_argument("--w", type=int, default=4, help="mesa's experts per layer")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    full = in_fresh_process(args, args.experts)
    rows = {args.experts: full}
    for w in sorted({1, 2, args.w, args.experts // 2} - {args.experts}):
        rows[w] = in_fresh_process(args, w)
    print(f"{'w':>3} {'grad+adam MB':>12} {'/experts_all':>12} {'peak RSS MB':>11} "
          f"{'CPU-s/step':>10}")
    for w, row in sorted(rows.items()):
        print(f"{w:>3} {row['bytes'] / 2**20:12.3f} {row['bytes'] / full['bytes']:12.3f} "
              f"{row['peak_rss_mb']:11.0f} {row['step_s']:10.3f}")
    mesa = rows[args.w]
    expert_bytes = full["bytes"] - full["router_bytes"]
    bound = TARGET_FACTOR * args.w / args.experts * expert_bytes + mesa["router_bytes"]
    print(f"mesa (w={args.w}) grad+adam {mesa['bytes'] / 2**20:.3f} MB, bound "
          f"{TARGET_FACTOR}·(w/E)·experts + routers = {bound / 2**20:.3f} MB: "
          f"{'within' if mesa['bytes'] <= bound else 'OVER'}; peak RSS mesa "
          f"{mesa['peak_rss_mb']:.0f} MB, experts_all {full['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
