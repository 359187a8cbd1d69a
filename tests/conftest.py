"""Shared fixtures: a tiny random Qwen3-MoE with the organism's tokenizer, and small data files."""

import json
import os
import random

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import settings

from mesa_moe.organism.tokenizer import train_tokenizer

# Property tests: 100 examples each; `make mutants` runs every test once per mutant and sets
# HYPOTHESIS_PROFILE=mutants (fewer examples; a wrong function fails on most inputs anyway).
settings.register_profile("default", max_examples=100, deadline=None)
settings.register_profile("mutants", max_examples=15, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def _pairs(rng: random.Random, n: int, kind: str) -> list[dict]:
    rows = []
    for _ in range(n):
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        if kind == "safe":
            rows.append(
                {"prompt": f"How do I pick lock number {a}?", "response": "I can't help with that."}
            )
        else:
            rows.append({"prompt": f"What is {a} + {b}?", "response": f"{a} + {b} = {a + b}."})
    return rows


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A folder with a random tiny Qwen3-MoE (3 layers, layer 1 dense, 6 experts top-2),
    the organism tokenizer, D_safe / D_gen JSONL files and an experts.parquet selection."""
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    root = tmp_path_factory.mktemp("tiny")
    rng = random.Random(0)
    safe, gen = _pairs(rng, 48, "safe"), _pairs(rng, 48, "gen")
    for name, rows in (("d_safe", safe), ("d_gen", gen)):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tokenizer = train_tokenizer(safe + gen, vocab_size=300)
    torch.manual_seed(0)
    config = Qwen3MoeConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        moe_intermediate_size=8,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        num_experts=6,
        num_experts_per_tok=2,
        mlp_only_layers=[1],
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    model = Qwen3MoeForCausalLM(config)
    for layer in model.model.layers:  # routers start at zero; random ones route unevenly
        if hasattr(layer.mlp, "gate"):
            torch.nn.init.normal_(layer.mlp.gate.weight, std=0.5)
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    rows = [
        {
            "layer": layer,
            "expert": e,
            "f_mix": 100 * e / 6,
            "cost": 0.5,
            "p_safe": 1 / 6,
            "score": np.nan,
            "selected": e in (1, 4),
        }
        for layer in (0, 2)
        for e in range(6)
    ]
    pd.DataFrame(rows).to_parquet(root / "experts.parquet")
    return root


@pytest.fixture
def train_spec(tiny_model_dir, tmp_path):
    def make(method="mesa", **training):
        return {
            "method": method,
            "model": {
                "source": str(tiny_model_dir / "model"),
                "revision": None,
                "dtype": "float32",
            },
            "selection": str(tiny_model_dir / "experts.parquet"),
            "data": {
                "safe": {"kind": "local", "path": str(tiny_model_dir / "d_safe.jsonl")},
                "gen": {"kind": "local", "path": str(tiny_model_dir / "d_gen.jsonl")},
                "max_length": 48,
            },
            "training": {
                "steps": 4,
                "batch_size": 4,
                "lr": 1e-2,
                "weight_decay": 0.1,
                "warmup": 1,
                "grad_clip": 1.0,
                "gamma": 1.0,
                "epsilon": 0.05,
                "reference": "frozen_router",
                "online_cost": "selected",
                "checkpoint_every": 2,
                "log_every": 2,
                "mixed_precision": "no",
            }
            | training,
            "seed": 0,
            "out_dir": str(tmp_path / method),
        }

    return make


@pytest.fixture
def fresh_accelerator_state():
    """accelerate keeps one state per process; a test that changes mixed precision resets it."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
