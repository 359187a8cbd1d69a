"""Activation profiling (docs/method.md §1): how often safe / gen / mix tokens route to each
expert.

Forward hooks on every router collect, per batch, the top-k indices and the routing distribution
of the real (non-pad) tokens; counts are accumulated on the model's device with bincounts, never per
token in Python.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .adapters import MoEAdapter, adapter_for, load_from_spec, model_identity
from .artifacts import write_jsonl, write_parquet, write_provenance
from .data import collate, encode_pairs, load_pairs, sample_stat

log = logging.getLogger(__name__)
SOURCES = ("safe", "gen")
ACTIVATION_COLUMNS = [
    "layer",
    "expert",
    "source",
    "count",
    "tokens",
    "freq",
    "mean_prob",
    "rank",
    "f",
]
COACTIVATION_COLUMNS = ["layer", "i", "j", "count"]


@dataclass
class LayerCounts:
    """Running sums for one MoE layer; arrays are indexed by source (0 safe, 1 gen)."""

    num_experts: int
    device: torch.device
    count: torch.Tensor = field(init=False)  # [2, E] tokens with e in their top-k
    prob_sum: torch.Tensor = field(init=False)  # [2, E] Σ_t P(t)[e]
    tokens: torch.Tensor = field(init=False)  # [2]
    coactivation: torch.Tensor = field(init=False)  # [E, E] on mix

    def __post_init__(self):
        e = self.num_experts
        self.count = torch.zeros(2, e, dtype=torch.float64, device=self.device)
        self.prob_sum = torch.zeros(2, e, dtype=torch.float64, device=self.device)
        self.tokens = torch.zeros(2, dtype=torch.float64, device=self.device)
        self.coactivation = torch.zeros(e, e, dtype=torch.float64, device=self.device)

    def add(self, top_k_indices: torch.Tensor, probs: torch.Tensor, source: torch.Tensor) -> None:
        """top_k_indices [T, k], probs [T, E], source [T] in {0, 1}, real tokens only.

        Counts are bincounts of (source, expert) and (i, j) slot ids: O(T·k²) work, where a
        multi-hot matmul would be O(T·E²)."""
        e = self.num_experts
        experts = top_k_indices.long()
        source_slots = experts + (source.long() * e)[:, None]  # [T, k] in [0, 2E)
        self.count += torch.bincount(source_slots.reshape(-1), minlength=2 * e).view(2, e)
        src = torch.nn.functional.one_hot(source.long(), 2).to(torch.float64)  # [T, 2]
        self.prob_sum += src.T @ probs.to(torch.float64)
        self.tokens += torch.bincount(source.long(), minlength=2)
        pairs = (experts[:, :, None] * e + experts[:, None, :]).reshape(-1)  # [T·k²]
        self.coactivation += torch.bincount(pairs, minlength=e * e).view(e, e)


class RoutingRecorder:
    """Hooks every router of an adapter's model; `counts[layer]` accumulates what it routes."""

    def __init__(self, adapter: MoEAdapter):
        self.adapter = adapter
        self.counts: dict[int, LayerCounts] = {}
        self._real_tokens: torch.Tensor | None = None  # [T] positions of real tokens in B*S
        self._real_source: torch.Tensor | None = None  # [T] their source
        self._handles = []

    def __enter__(self) -> RoutingRecorder:
        for layer in self.adapter.layers:
            device = layer.router.weight.device
            self.counts[layer.index] = LayerCounts(self.adapter.num_experts, device)
            self._handles.append(layer.router.register_forward_hook(self._hook(layer.index)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def set_batch(self, attention_mask: torch.Tensor, source: torch.Tensor) -> None:
        """attention_mask [B, S], source [B]: which tokens count, and for which source."""
        # Once per batch, not per layer: every router sees the same tokens.
        self._real_tokens = attention_mask.reshape(-1).nonzero().squeeze(1)
        self._real_source = source[:, None].expand_as(attention_mask).reshape(-1)[self._real_tokens]

    def _hook(self, layer_index: int):
        def record(module, inputs, outputs):
            router_logits, _, top_k_indices = outputs
            real = self._real_tokens.to(router_logits.device)
            probs = self.adapter.routing_probs(router_logits.index_select(0, real))
            self.counts[layer_index].add(
                top_k_indices.index_select(0, real),
                probs,
                self._real_source.to(router_logits.device),
            )

        return record


@torch.inference_mode()
def profile_routing(
    model,
    tokenizer,
    adapter: MoEAdapter,
    records: Sequence[dict],
    batch_size: int,
    max_length: int,
    chat_template_kwargs: dict | None = None,
) -> dict[int, LayerCounts]:
    """One forward pass per D_stat record (prompt + response, chat template); counts per layer."""
    unknown = sorted({r.get("source") for r in records} - set(SOURCES))
    if unknown:
        raise ValueError(f"D_stat rows need source in {SOURCES}; found {unknown}")
    encoded = encode_pairs(tokenizer, records, max_length, chat_template_kwargs)
    source = torch.tensor([SOURCES.index(r["source"]) for r in records])
    # Similar lengths in a batch waste less compute on padding.
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]["input_ids"]))
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    backbone = getattr(model, "model", model)  # the lm_head is not needed to route
    with RoutingRecorder(adapter) as recorder:
        for start in tqdm(range(0, len(order), batch_size), desc="profile", unit="batch"):
            rows = order[start : start + batch_size]
            batch = collate([encoded[i] for i in rows], pad_id)
            recorder.set_batch(batch["attention_mask"].to(device), source[rows].to(device))
            backbone(
                input_ids=batch["input_ids"].to(device),
                attention_mask=batch["attention_mask"].to(device),
                use_cache=False,
            )
    return recorder.counts


def rank_experts(count: np.ndarray, mean_prob: np.ndarray) -> np.ndarray:
    """Rank 1 = most selected; ties broken by mean routing probability, then expert id."""
    order = np.lexsort((np.arange(len(count)), -mean_prob, -count))
    ranks = np.empty(len(count), dtype=np.int64)
    ranks[order] = np.arange(1, len(count) + 1)
    return ranks


def activation_table(counts: dict[int, LayerCounts], top_k: int) -> pd.DataFrame:
    """One row per (layer, expert, source ∈ safe, gen, mix): the columns of ACTIVATION_COLUMNS."""
    frames = []
    for layer, c in sorted(counts.items()):
        count = c.count.cpu().numpy()
        prob_sum = c.prob_sum.cpu().numpy()
        tokens = c.tokens.cpu().numpy()
        per_source = {
            "safe": (count[0], prob_sum[0], tokens[0]),
            "gen": (count[1], prob_sum[1], tokens[1]),
            "mix": (count.sum(0), prob_sum.sum(0), tokens.sum()),
        }
        for source, (n, p, t) in per_source.items():
            if t == 0:
                raise ValueError(
                    f"no {source} tokens reached layer {layer}; D_stat needs both sources"
                )
            mean_prob = p / t
            rank = rank_experts(n, mean_prob)
            experts = len(n)
            frames.append(
                pd.DataFrame(
                    {
                        "layer": layer,
                        "expert": np.arange(experts),
                        "source": source,
                        "count": n.astype(np.int64),
                        "tokens": int(t),
                        "freq": n / (t * top_k),
                        "mean_prob": mean_prob,
                        "rank": rank,
                        "f": 100.0 * (rank - 1) / experts,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)[ACTIVATION_COLUMNS]


def coactivation_table(counts: dict[int, LayerCounts]) -> pd.DataFrame:
    """One row per (layer, i, j), diagonal included (A[i, i] = tokens that selected i)."""
    frames = []
    for layer, c in sorted(counts.items()):
        matrix = c.coactivation.cpu().numpy()
        i, j = np.meshgrid(np.arange(len(matrix)), np.arange(len(matrix)), indexing="ij")
        frames.append(
            pd.DataFrame(
                {
                    "layer": layer,
                    "i": i.ravel(),
                    "j": j.ravel(),
                    "count": matrix.ravel().astype(np.int64),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)[COACTIVATION_COLUMNS]


def run_profile(
    model_spec: dict,
    data: dict,
    batch_size: int,
    seed: int,
    activations_path: str,
    coactivation_path: str,
    stat_path: str,
    provenance_path: str,
) -> pd.DataFrame:
    """The `profile` stage: D_stat from D_safe and D_gen, forward passes, both tables + provenance.

    model_spec: {source, revision, dtype, device, device_map, chat_template_kwargs}; data: the
    validated `data` config with each spec's path resolved.
    """
    safe = load_pairs(data["safe"], "data.safe", seed)
    gen = load_pairs(data["gen"], "data.gen", seed)
    stat = sample_stat(safe, gen, data["stat"]["size"], seed)
    model, tokenizer = load_from_spec(model_spec)
    adapter = adapter_for(model)
    log.info(
        "%s (%s): %d MoE layers %s, %d experts, top-%d; D_stat %d examples",
        model_spec["source"],
        adapter.model_type,
        len(adapter.layers),
        adapter.layer_indices,
        adapter.num_experts,
        adapter.top_k,
        len(stat),
    )
    counts = profile_routing(
        model,
        tokenizer,
        adapter,
        stat,
        batch_size,
        data["max_length"],
        model_spec.get("chat_template_kwargs"),
    )
    activations = activation_table(counts, adapter.top_k)
    write_jsonl(stat, stat_path)
    write_parquet(coactivation_table(counts), coactivation_path)
    write_parquet(activations, activations_path)
    write_provenance(
        provenance_path,
        "profile",
        {
            "data": data,
            "batch_size": batch_size,
            "num_experts": adapter.num_experts,
            "top_k": adapter.top_k,
            "moe_layers": adapter.layer_indices,
        },
        seed,
        model_identity(model_spec, model),
    )
    return activations
