"""OT selection time on synthetic profiles, against POT's own per-layer Sinkhorn.

    python benchmarks/selection_speed.py [--shapes 48x128 58x256 64x1024] [--tau 0.1] [--pot]

For each shape (MoE layers × experts) prints the wall time of the whole
`select_experts(..., "ot")` (tables in, experts and plans out), and with --pot the time of
`ot.unbalanced.sinkhorn_unbalanced` alone, one layer at a time, as the plain counterpart.
Targets on the reference machine (2 CPU cores): 58×256 under 0.3 s, 64×1024 under 3 s. Wall
and CPU seconds are both printed (one thread; on a shared machine CPU time is the steadier one);
the POT column is CPU time.
"""

import argparse
import time

import numpy as np
import ot
from synthetic_profile import synthetic_profile

from mesa_moe.selection import coactivation_arrays, expert_table, select_experts
from mesa_moe.transport import reference_from_coactivation

TARGETS_S = {(58, 256): 0.3, (64, 1024): 3.0}


def pot_loop_seconds(activations, coactivation, epsilon, tau) -> float:
    """CPU seconds of POT's solver per layer (inputs prepared beforehand, not timed)."""
    table = expert_table(activations, 1.0)
    layers = np.unique(table.layer)
    experts = len(table) // len(layers)
    references = reference_from_coactivation(coactivation_arrays(coactivation, layers, experts))
    start = time.process_time()
    for layer, reference in zip(layers, references):
        rows = table[table.layer == layer]
        r = rows.p_safe.to_numpy() / rows.p_safe.sum()
        cost = np.tile(rows.cost.to_numpy(), (experts, 1))
        ot.unbalanced.sinkhorn_unbalanced(
            r,
            np.full(experts, 1 / experts),
            cost,
            epsilon,
            (float("inf"), tau),
            method="sinkhorn",
            reg_type="kl",
            c=reference,
            numItermax=10_000,
            stopThr=1e-9,
        )
    return time.process_time() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["48x128", "58x256", "64x1024"])
    parser.add_argument("--epsilon", type=float, default=0.05)
    parser.add_argument("--tau", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pot", action="store_true", help="also time POT per layer")
    args = parser.parse_args()
    print(f"ε={args.epsilon} τ={args.tau}; best of {args.repeats}")
    print(
        f"{'shape':>9} {'select s':>9} {'CPU s':>7} {'target s':>9} {'POT CPU s':>10} "
        f"{'POT/select CPU':>14}"
    )
    for shape in args.shapes:
        layers, experts = map(int, shape.split("x"))
        activations, coactivation = synthetic_profile(layers, experts)
        times, cpu_times = [], []
        for _ in range(args.repeats):
            start, cpu_start = time.perf_counter(), time.process_time()
            select_experts(activations, coactivation, "ot", w=8, epsilon=args.epsilon, tau=args.tau)
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
        best = min(times)
        target = TARGETS_S.get((layers, experts))
        pot = (
            pot_loop_seconds(activations, coactivation, args.epsilon, args.tau)
            if args.pot
            else float("nan")
        )
        cpu = min(cpu_times)
        print(
            f"{shape:>9} {best:9.3f} {cpu:7.3f} {target if target else '-':>9} {pot:10.3f} "
            f"{pot / cpu:14.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
