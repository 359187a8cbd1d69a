"""Synthetic profile tables with a known structure, for selection tests."""

import numpy as np
import pandas as pd

from mesa_moe.profiling import ACTIVATION_COLUMNS, COACTIVATION_COLUMNS

HEADS = (0, 1)  # carry the safety routing now
NEIGHBOURS = (10, 11)  # co-activate with the heads
NUM_EXPERTS = 16


def layer_tables(layer: int, num_experts: int = NUM_EXPERTS, top_k: int = 2):
    """Expert e sits at R_mix rank e (f = 100 e / E); safety on HEADS; HEADS[n] co-activates
    with NEIGHBOURS[n]; the co-activation diagonal is what top-2 routing implies (row sum)."""
    f = 100.0 * np.arange(num_experts) / num_experts
    safe = np.full(num_experts, 0.1 / (num_experts - 2))
    safe[list(HEADS)] = 0.45
    coactivation = np.ones((num_experts, num_experts))
    for head, neighbour in zip(HEADS, NEIGHBOURS):
        coactivation[head, neighbour] = coactivation[neighbour, head] = 50.0
    np.fill_diagonal(coactivation, 0.0)
    np.fill_diagonal(coactivation, coactivation.sum(axis=1) / (top_k - 1))
    rows = []
    for source, freq, rank in (
        ("safe", safe, np.argsort(np.argsort(-safe)) + 1),
        ("gen", np.full(num_experts, 1 / num_experts), np.arange(1, num_experts + 1)),
        ("mix", np.full(num_experts, 1 / num_experts), np.arange(1, num_experts + 1)),
    ):
        rows.append(
            pd.DataFrame(
                {
                    "layer": layer,
                    "expert": np.arange(num_experts),
                    "source": source,
                    "count": (freq * 2000).astype(int),
                    "tokens": 1000,
                    "freq": freq,
                    "mean_prob": freq,
                    "rank": rank,
                    "f": 100.0 * (rank - 1) / num_experts,
                }
            )
        )
    activations = pd.concat(rows, ignore_index=True)[ACTIVATION_COLUMNS]
    i, j = np.meshgrid(np.arange(num_experts), np.arange(num_experts), indexing="ij")
    coact = pd.DataFrame(
        {"layer": layer, "i": i.ravel(), "j": j.ravel(), "count": coactivation.ravel().astype(int)}
    )[COACTIVATION_COLUMNS]
    assert np.allclose(f, activations[activations.source == "mix"].f)
    return activations, coact


def model_tables(layers=(0, 1, 2)):
    parts = [layer_tables(layer) for layer in layers]
    return (
        pd.concat([a for a, _ in parts], ignore_index=True),
        pd.concat([c for _, c in parts], ignore_index=True),
    )
