"""Gradient + AdamW memory and step time of selected-expert training, as ratios to training all E
experts, measured in one run on the organism's default shape (random weights); and the bytes of
`experts_all` (every expert selected) against plain fused training (requires_grad on the fused
tensors, no project code).

    python benchmarks/trainable_memory.py [--experts 16] [--hidden 128] [--layers 4] [--steps 5]

Target: gradient and optimiser bytes grow with w (≈ w/E of the all-experts figure, plus the
routers), while the step time stays within a small factor of the all-experts step; experts_all
holds at most 1.05× the parameter + gradient + optimiser bytes of plain fused training.
"""

import argparse
import time

import torch
from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

from mesa_moe.adapters import adapter_for
from mesa_moe.trainable import make_trainable
from mesa_moe.training import optimizer_state_bytes


def tiny_model(args) -> Qwen3MoeForCausalLM:
    torch.manual_seed(0)
    config = Qwen3MoeConfig(vocab_size=1000, hidden_size=args.hidden, intermediate_size=args.hidden,
                            moe_intermediate_size=args.hidden, num_hidden_layers=args.layers,
                            num_attention_heads=4, num_key_value_heads=2, num_experts=args.experts,
                            num_experts_per_tok=2, experts_implementation="grouped_mm")
    return Qwen3MoeForCausalLM(config)


def run_steps(model, parameters: list, steps: int) -> dict:
    """AdamW steps on random tokens; bytes of parameters (all, unique), gradients, AdamW state."""
    optimizer = torch.optim.AdamW(parameters, lr=1e-3, weight_decay=0.01)
    input_ids = torch.randint(0, 1000, (16, 64), generator=torch.Generator().manual_seed(0))
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model(input_ids=input_ids, labels=input_ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)
        times.append(time.perf_counter() - start)
    return {"param_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
            "grad_bytes": sum(p.grad.numel() * p.grad.element_size()
                              for p in parameters if p.grad is not None),
            "adam_bytes": optimizer_state_bytes(optimizer),
            "step_s": sorted(times)[len(times) // 2]}


def measure(args, w: int) -> dict:
    """make_trainable with the first w experts of every MoE layer and the routers."""
    model = tiny_model(args)
    adapter = adapter_for(model)
    chosen = {layer: list(range(w)) for layer in adapter.layer_indices}
    parameters = make_trainable(adapter, chosen, train_routers=True)
    return {"w": w} | run_steps(model, parameters, args.steps)


def plain_fused(args) -> dict:
    """Every expert and router trained the plain way: requires_grad on the fused tensors."""
    model = tiny_model(args)
    model.requires_grad_(False)
    for layer in model.model.layers:
        layer.mlp.requires_grad_(True)  # the fused experts and the router
    return run_steps(model, [p for p in model.parameters() if p.requires_grad], args.steps)


def total_bytes(row: dict) -> int:
    return row["param_bytes"] + row["grad_bytes"] + row["adam_bytes"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experts", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    full = measure(args, args.experts)
    print(f"{'w':>3} {'grad MB':>8} {'adam MB':>8} {'grad/all':>8} {'adam/all':>8} {'step/all':>8}")
    for w in sorted({1, 2, 4, args.experts // 2, args.experts}):
        row = full if w == args.experts else measure(args, w)
        print(f"{w:>3} {row['grad_bytes'] / 2**20:8.2f} {row['adam_bytes'] / 2**20:8.2f} "
              f"{row['grad_bytes'] / full['grad_bytes']:8.3f} {row['adam_bytes'] / full['adam_bytes']:8.3f} "
              f"{row['step_s'] / full['step_s']:8.2f}")
    plain = plain_fused(args)
    print(f"experts_all / plain fused training: parameter + gradient + AdamW bytes "
          f"{total_bytes(full) / total_bytes(plain):.3f} ({total_bytes(full) / 2**20:.2f} MB vs "
          f"{total_bytes(plain) / 2**20:.2f} MB), step time {full['step_s'] / plain['step_s']:.2f}")


if __name__ == "__main__":
    main()
