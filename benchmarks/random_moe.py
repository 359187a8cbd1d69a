"""The random Qwen3-MoE every benchmark times: the organism's routed shape by default (4 layers,
hidden 128, 16 experts; without the organism's shared expert, which no method's selection or
routing touches), seeded, with the grouped_mm expert kernel the CPU path uses."""

from __future__ import annotations

import torch
from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM


def random_moe(
    hidden: int = 128,
    layers: int = 4,
    experts: int = 16,
    top_k: int = 2,
    vocab_size: int = 2048,
    tokenizer=None,
    seed: int = 0,
) -> Qwen3MoeForCausalLM:
    """A seeded random model; with `tokenizer`, its vocabulary size and pad/eos ids."""
    special = {}
    if tokenizer is not None:
        vocab_size = len(tokenizer)
        special = {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    torch.manual_seed(seed)
    config = Qwen3MoeConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden,
        moe_intermediate_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_experts=experts,
        num_experts_per_tok=top_k,
        experts_implementation="grouped_mm",
        **special,
    )
    return Qwen3MoeForCausalLM(config)
