"""Tiny random models of every supported MoE family, built from their transformers configs.

Hidden size 16, 2-3 layers, 6-8 experts top-2: what matters is each family's routing rule and
expert layout (shared experts, dense first layers, group-limited top-k, sigmoid + correction
bias, GPT-OSS's router bias and transposed, interleaved experts), not size.
"""

from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    DeepseekV2Config,
    DeepseekV3Config,
    GptOssConfig,
    MixtralConfig,
    OlmoeConfig,
    Qwen2MoeConfig,
    Qwen3MoeConfig,
)

DEEPSEEK = dict(
    num_key_value_heads=2,
    intermediate_size=32,
    moe_intermediate_size=8,
    num_hidden_layers=3,
    first_k_dense_replace=1,
    n_shared_experts=1,
    n_routed_experts=8,
    num_experts_per_tok=2,
    n_group=4,
    topk_group=2,
    kv_lora_rank=8,
    q_lora_rank=None,
    qk_nope_head_dim=8,
    qk_rope_head_dim=4,
    v_head_dim=8,
)
FAMILIES = {
    "qwen3_moe": (
        Qwen3MoeConfig,
        dict(
            intermediate_size=32,
            moe_intermediate_size=8,
            head_dim=8,
            num_hidden_layers=2,
            num_experts=6,
            num_experts_per_tok=2,
        ),
    ),
    "qwen2_moe": (
        Qwen2MoeConfig,
        dict(
            intermediate_size=32,
            moe_intermediate_size=8,
            shared_expert_intermediate_size=16,
            num_hidden_layers=2,
            num_experts=6,
            num_experts_per_tok=2,
        ),
    ),
    "mixtral": (
        MixtralConfig,
        dict(
            intermediate_size=8,
            head_dim=8,
            num_hidden_layers=2,
            num_local_experts=6,
            num_experts_per_tok=2,
        ),
    ),
    "olmoe": (
        OlmoeConfig,
        dict(intermediate_size=8, num_hidden_layers=2, num_experts=6, num_experts_per_tok=2),
    ),
    "deepseek_v2": (DeepseekV2Config, DEEPSEEK | dict(topk_method="group_limited_greedy")),
    "deepseek_v3": (DeepseekV3Config, DEEPSEEK),
    "gpt_oss": (
        GptOssConfig,
        dict(
            intermediate_size=8,
            head_dim=8,
            num_hidden_layers=2,
            num_local_experts=6,
            num_experts_per_tok=2,
            sliding_window=16,
        ),
    ),
}


def build_family(family: str, tokenizer, folder: Path, seed: int = 0) -> Path:
    """Save a random tiny `family` model with `tokenizer` into `folder`; routers spread out
    (random instead of zero), V3's correction bias and GPT-OSS's router bias non-zero."""
    config_class, shape = FAMILIES[family]
    config = config_class(
        **({"num_key_value_heads": 1} | shape),
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_attention_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    generator = torch.Generator().manual_seed(seed)
    for layer in model.model.layers:
        router = getattr(layer.mlp, "gate", None) or getattr(layer.mlp, "router", None)
        if router is None or not hasattr(router, "top_k"):
            continue
        with torch.no_grad():
            router.weight.normal_(0, 0.5, generator=generator)
            if getattr(router, "bias", None) is not None:
                router.bias.normal_(0, 0.5, generator=generator)
            if getattr(router, "e_score_correction_bias", None) is not None:
                router.e_score_correction_bias.uniform_(0, 0.3, generator=generator)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
