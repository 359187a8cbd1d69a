"""The model organism: a small seeded world, its tokenizer and an unaligned tiny Qwen3-MoE base.

`DEFAULTS` is the workflow's default `organism` config, sized for 2 CPU cores. Measured with it
on shared cores, one torch thread: organism_base 4.2 min (1800 steps, 2.06M tokens at 8.6k
tokens/s, 2.0M parameters), organism_vendor 1.7 min (1200 steps). Test-file numbers by the
world's exact grammar (`mesa_moe.organism.grammar`; in parentheses the degenerate share):
the pre-trained base answers arith 0.88 and listops 0.96 correctly and complies with 94% (6%)
of direct harmful requests, but with only 47% (53%) of requests in held-out jailbreak wrappers:
the tiny model often names another topic there. The vendor's Base refuses 89% (11%) of direct
requests and 49% (46%) of wrapped ones, over-refuses 1% (11%) of benign look-alikes and 15%
(52%) of wrapped ones, keeps arith 0.85 / listops 0.96, and under the routing attack at m = 1
complies with 44% (56%). These numbers move a lot with the seed and small world changes (a
second world drawn the same way gave a Base with 71% direct refusals and 8% compliance at
m = 1): a tiny model's generalisation to unseen templates and wrappers is fragile.
Choices behind the values, each measured against the previous defaults: the requests are a
quarter of the corpus, not 8% (before, the base named the wrong topic in 81% of its test
answers, which the refusal-string judge counted as compliance); top-4 of 16 experts of width
64 instead of top-2 of width 128 (same active compute; with top-2, masking one expert per layer
as the routing attack does turned 97% of the base's answers into noise, with top-4 9%, but
91% in the second world); a fixed
pair of steps per topic (drawn per example, a greedy answer often repeated step 1 as step 2);
the refusal in the tokenizer's training texts (before, it was twelve byte fragments and a
quarter of the vendor's answers stuttered); a 1200-step vendor SFT (600 steps: 64% refusals).
`TINY` is the same shape at toy size, for tests (about 15 s for both stages, most of it
imports). Every key is documented where it is used: `world` in `mesa_moe.organism.world`,
`vendor` in `mesa_moe.organism.vendor`, the rest in `mesa_moe.organism.base`.
"""

DEFAULTS = {
    "seed": 0,
    "world": {
        "n_arith": 40000, "n_listops": 6000, "n_harmful": 8000, "n_benign": 8000,
        "wrapped_fraction": 0.3,
        "n_safe": 2000, "safe_benign_fraction": 0.2,
        "n_gen": 2000,
        "n_val": 200, "n_eval": 300,
        "val_templates": 3, "test_templates": 4,
        "val_wrappers": 1, "test_wrappers": 1,
    },
    "model": {
        "vocab_size": 2048, "hidden_size": 128, "num_layers": 4, "num_heads": 4,
        "num_kv_heads": 2, "num_experts": 16, "top_k": 4, "moe_intermediate_size": 64,
        "max_position_embeddings": 256, "router_aux_loss_coef": 0.01,
    },
    "pretrain": {
        "steps": 1800, "batch_size": 32, "lr": 2e-3, "warmup": 100, "max_length": 128,
        "weight_decay": 0.01, "log_every": 100,
    },
    "eval": {"n": 200, "max_new_tokens": 40, "batch_size": 100},
    "vendor": {"experts": 2, "steps": 1200, "batch_size": 16, "lr": 2e-3, "warmup": 10,
               "stat_size": 200, "max_length": 96},
}

TINY = {
    "seed": 0,
    "world": {
        "n_arith": 200, "n_listops": 100, "n_harmful": 100, "n_benign": 100,
        "wrapped_fraction": 0.3,
        "n_safe": 60, "safe_benign_fraction": 0.2,
        "n_gen": 60,
        "n_val": 20, "n_eval": 20,
        "val_templates": 3, "test_templates": 4,
        "val_wrappers": 1, "test_wrappers": 1,
    },
    "model": {
        "vocab_size": 400, "hidden_size": 32, "num_layers": 2, "num_heads": 2,
        "num_kv_heads": 1, "num_experts": 8, "top_k": 2, "moe_intermediate_size": 32,
        "max_position_embeddings": 256, "router_aux_loss_coef": 0.01,
    },
    "pretrain": {
        "steps": 40, "batch_size": 16, "lr": 3e-3, "warmup": 5, "max_length": 128,
        "weight_decay": 0.01, "log_every": 10,
    },
    "eval": {"n": 20, "max_new_tokens": 16, "batch_size": 20},
    "vendor": {"experts": 1, "steps": 4, "batch_size": 4, "lr": 2e-3, "warmup": 1,
               "stat_size": 20, "max_length": 64},
}
