"""Gradient + AdamW memory of selected-expert training (`mesa`: w experts per layer + routers)
against `experts_all` (all E experts + routers) on the same model, and each one's peak process
memory, in one run (each configuration in its own fresh process, so peaks do not mix).

    python benchmarks/trainable_memory.py [--experts 16] [--hidden 128] [--layers 4] [--steps 3]

Trainable sets come from `make_trainable`, as the train stage builds them; a few AdamW steps on
random tokens fill the gradients and optimiser state.
Targets: mesa's gradient + optimiser bytes ≤ 1.2 · (w/E) · experts_all's expert bytes + the
routers' bytes; experts_all's parameter + gradient + optimiser bytes ≤ 1.05 × plain fused
training (requires_grad on the fused tensors, no project code). Also printed: the ratio for
w = 1, 2, 4, E/2 (how bytes grow with w).
"""

import argparse
import multiprocessing
import resource
import time

import torch
from random_moe import random_moe

from mesa_moe.adapters import adapter_for
from mesa_moe.trainable import make_trainable
from mesa_moe.training import optimizer_state_bytes

TARGET_FACTOR = 1.2
EXPERTS_ALL_TARGET = 1.05


def tiny_model(args):
    torch.set_num_threads(1)
    return random_moe(args.hidden, args.layers, args.experts, vocab_size=1000)


def run_steps(model, parameters: list, steps: int, routers: set[int] = frozenset()) -> dict:
    """AdamW steps on random tokens; bytes of parameters, gradients and AdamW state (those of the
    parameters whose id is in `routers` also apart), median CPU seconds per step, peak RSS."""
    optimizer = torch.optim.AdamW(parameters, lr=1e-3, weight_decay=0.01)
    input_ids = torch.randint(0, 1000, (16, 64), generator=torch.Generator().manual_seed(0))
    times = []
    for _ in range(steps):
        start = time.process_time()
        model(input_ids=input_ids, labels=input_ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)
        times.append(time.process_time() - start)
    grads = {id(p): p.grad.numel() * p.grad.element_size() for p in parameters}
    router_adam = sum(
        t.numel() * t.element_size()
        for p, state in optimizer.state.items()
        if id(p) in routers
        for t in state.values()
        if torch.is_tensor(t)
    )
    return {
        "param_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
        "bytes": sum(grads.values()) + optimizer_state_bytes(optimizer),
        "router_bytes": sum(b for key, b in grads.items() if key in routers) + router_adam,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "step_s": sorted(times)[len(times) // 2],
    }


def measure(args, w: int) -> dict:
    """One configuration in this process: w experts per layer (w = E: experts_all) + routers."""
    model = tiny_model(args)
    adapter = adapter_for(model)
    chosen = {layer: list(range(w)) for layer in adapter.layer_indices}
    parameters = make_trainable(adapter, chosen, train_routers=True)
    routers = {id(layer.router.weight) for layer in adapter.layers}
    return {"w": w} | run_steps(model, parameters, args.steps, routers)


def plain_fused(args) -> dict:
    """Every expert and router trained the plain way: requires_grad on the fused tensors."""
    model = tiny_model(args)
    model.requires_grad_(False)
    for layer in model.model.layers:
        layer.mlp.requires_grad_(True)  # the fused experts and the router
    return run_steps(model, [p for p in model.parameters() if p.requires_grad], args.steps)


def total_bytes(row: dict) -> int:
    return row["param_bytes"] + row["bytes"]


def in_fresh_process(function, *args) -> dict:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experts", type=int, default=16)
    parser.add_argument("--w", type=int, default=4, help="mesa's experts per layer")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    full = in_fresh_process(measure, args, args.experts)
    rows = {args.experts: full}
    for w in sorted({1, 2, args.w, args.experts // 2} - {args.experts}):
        rows[w] = in_fresh_process(measure, args, w)
    print(
        f"{'w':>3} {'grad+adam MB':>12} {'/experts_all':>12} {'peak RSS MB':>11} {'CPU-s/step':>10}"
    )
    for w, row in sorted(rows.items()):
        print(
            f"{w:>3} {row['bytes'] / 2**20:12.3f} {row['bytes'] / full['bytes']:12.3f} "
            f"{row['peak_rss_mb']:11.0f} {row['step_s']:10.3f}"
        )
    mesa = rows[args.w]
    expert_bytes = full["bytes"] - full["router_bytes"]
    bound = TARGET_FACTOR * args.w / args.experts * expert_bytes + mesa["router_bytes"]
    print(
        f"mesa (w={args.w}) grad+adam {mesa['bytes'] / 2**20:.3f} MB, bound "
        f"{TARGET_FACTOR}·(w/E)·experts + routers = {bound / 2**20:.3f} MB: "
        f"{'within' if mesa['bytes'] <= bound else 'OVER'}; peak RSS mesa "
        f"{mesa['peak_rss_mb']:.0f} MB, experts_all {full['peak_rss_mb']:.0f} MB"
    )
    plain = in_fresh_process(plain_fused, args)
    ratio = total_bytes(full) / total_bytes(plain)
    print(
        f"experts_all / plain fused training: parameter + gradient + AdamW bytes {ratio:.3f} "
        f"(target ≤ {EXPERTS_ALL_TARGET}: {'met' if ratio <= EXPERTS_ALL_TARGET else 'MISSED'}; "
        f"{total_bytes(full) / 2**20:.2f} MB vs {total_bytes(plain) / 2**20:.2f} MB)"
    )


if __name__ == "__main__":
    main()
