"""Synthetic routing profiles of any shape (L MoE layers × E experts), for timing selection.

Tokens come from a few topics, each with its own Dirichlet expert popularity; safety tokens favour
a handful of "head" experts. Co-activation counts are Poisson around what top-k routing of such
tokens implies, so the matrices are dense, symmetric and structured like real ones.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mesa_moe.profiling import ACTIVATION_COLUMNS, COACTIVATION_COLUMNS, rank_experts


def synthetic_profile(
    layers: int,
    experts: int,
    top_k: int = 8,
    topics: int = 16,
    tokens: int = 200_000,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(activations, coactivation) tables in the profile stage's long form."""
    rng = np.random.default_rng(seed)
    activation_frames, coactivation_frames = [], []
    i, j = (a.ravel() for a in np.meshgrid(np.arange(experts), np.arange(experts), indexing="ij"))
    for layer in range(layers):
        popularity = rng.dirichlet(np.full(experts, 0.3), size=topics)  # [topics, E]
        weights = rng.dirichlet(np.ones(topics))
        mix = weights @ popularity
        heads = rng.choice(experts, size=4, replace=False)
        safe = 0.5 * mix.copy()
        safe[heads] += 0.5 / len(heads)
        pair_rate = tokens * top_k * (top_k - 1) * (popularity.T * weights) @ popularity
        coactivation = np.triu(rng.poisson(pair_rate), 1)
        coactivation = coactivation + coactivation.T
        np.fill_diagonal(coactivation, np.rint(tokens * top_k * mix).astype(np.int64))
        coactivation_frames.append(
            pd.DataFrame({"layer": layer, "i": i, "j": j, "count": coactivation.ravel()})
        )
        for source, freq in (("safe", safe), ("gen", mix), ("mix", mix)):
            count = np.rint(freq * tokens * top_k).astype(np.int64)
            rank = rank_experts(count, freq)
            activation_frames.append(
                pd.DataFrame(
                    {
                        "layer": layer,
                        "expert": np.arange(experts),
                        "source": source,
                        "count": count,
                        "tokens": tokens,
                        "freq": freq,
                        "mean_prob": freq,
                        "rank": rank,
                        "f": 100.0 * (rank - 1) / experts,
                    }
                )
            )
    return (
        pd.concat(activation_frames, ignore_index=True)[ACTIVATION_COLUMNS],
        pd.concat(coactivation_frames, ignore_index=True)[COACTIVATION_COLUMNS],
    )
