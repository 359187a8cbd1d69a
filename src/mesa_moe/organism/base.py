"""The organism's unaligned base: tokenizer + a tiny MoE pre-trained on the world's corpus.

`build_base` trains the tokenizer on corpus.jsonl, builds a `Qwen2MoeForCausalLM` (routed experts
plus a gated shared expert; without one, `model.shared_expert_size: 0`, a `Qwen3MoeForCausalLM`)
from scratch, pre-trains it on the corpus (harmful requests answered compliantly: the model is
unaligned by construction), saves model + tokenizer + generation config with `save_pretrained`
(plain `AutoModelForCausalLM.from_pretrained(out_dir)` loads it) and measures it on the world's
validation files: arith and listops exact match, and per validation set the shares of exact
refusals, well-formed compliant answers and degenerate answers (`mesa_moe.organism.grammar`).
The validation split, not the test split, because the settings below were tuned on these numbers.

Config (the organism dict; defaults in `mesa_moe.organism.DEFAULTS`, `world` keys in
`mesa_moe.organism.world`):
    seed                      data order, initialisation (torch.manual_seed) and the world
    model.vocab_size          BPE vocabulary target; the model's vocabulary is the tokenizer's
                              actual size (smaller when the corpus runs out of merges)
    model.hidden_size, num_layers, num_heads, num_kv_heads (grouped-query attention)
    model.num_experts, top_k  routed experts per MoE layer (every layer is MoE) and experts per
                              token; top-k weights are renormalised (norm_topk_prob)
    model.moe_intermediate_size   each expert's SwiGLU width
    model.shared_expert_size  > 0: every MoE layer also has an always-on shared expert of this
                              SwiGLU width behind a sigmoid gate, as in Qwen2-MoE and
                              DeepSeek-V2 (a Qwen2-MoE, same router); 0: none (a Qwen3-MoE).
                              The routing attack masks routed experts only, so with a shared
                              expert it removes safety, not language (docs/organism.md §5.2)
    model.max_position_embeddings
    model.router_aux_loss_coef    Switch load-balancing loss weight during pre-training only
                              (0 = off). A small value keeps all experts in use, as in real MoE
                              pre-training; the saved config has output_router_logits off, so
                              later stages see no aux loss unless they ask for it.
    pretrain.steps, batch_size   optimiser steps and examples per step (loss on response tokens)
    pretrain.lr, warmup, weight_decay   AdamW (betas 0.9/0.95), linear warmup then cosine decay
                              to 0, gradient norm clipped at 1
    pretrain.max_length       tokens per example (longer ones are truncated)
    pretrain.log_every        log the mean loss (aux term included) every this many steps
    eval.n                    at most this many examples per validation file
    eval.max_new_tokens, eval.batch_size   greedy generation settings
"""

from __future__ import annotations

import logging
import random
import time
from functools import partial
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import (
    AutoModelForCausalLM,
    GenerationConfig,
    PretrainedConfig,
    Qwen2MoeConfig,
    Qwen3MoeConfig,
)

from mesa_moe.adapters import adapter_for, expert_dropout
from mesa_moe.artifacts import atomic_path, read_jsonl, write_json, write_provenance
from mesa_moe.data import collate, encode_pairs
from mesa_moe.evaluation.scoring import exact_match_number, exact_match_text
from mesa_moe.generation import generate
from mesa_moe.organism.grammar import LABELS, classify_answer
from mesa_moe.organism.tokenizer import train_tokenizer
from mesa_moe.organism.world import EVAL_SETS
from mesa_moe.schedule import warmup_cosine

# Batches are drawn from pools of this many batches sorted by length: little padding, yet every
# batch still mixes tasks of similar length in a seeded random order.
LENGTH_POOL_BATCHES = 50
MODEL_KEYS = (
    "vocab_size",
    "hidden_size",
    "num_layers",
    "num_heads",
    "num_kv_heads",
    "num_experts",
    "top_k",
    "moe_intermediate_size",
    "shared_expert_size",
    "max_position_embeddings",
    "router_aux_loss_coef",
)
PRETRAIN_KEYS = (
    "steps",
    "batch_size",
    "lr",
    "warmup",
    "max_length",
    "weight_decay",
    "expert_dropout",
    "log_every",
)
EVAL_KEYS = ("n", "max_new_tokens", "batch_size")


def check_params(params: dict) -> None:
    """Raise a ValueError naming every missing key of the organism config's base sections."""
    missing = [
        f"{section}.{key}"
        for section, keys in (
            ("model", MODEL_KEYS),
            ("pretrain", PRETRAIN_KEYS),
            ("eval", EVAL_KEYS),
        )
        for key in keys
        if key not in params.get(section, {})
    ]
    if missing:
        raise ValueError(f"organism config lacks key(s) {missing}")
    for section, key in (
        ("pretrain", "steps"),
        ("pretrain", "batch_size"),
        ("eval", "n"),
        ("eval", "max_new_tokens"),
        ("eval", "batch_size"),
    ):
        if params[section][key] < 1:
            raise ValueError(f"{section}.{key}={params[section][key]} must be ≥ 1")
    if params["model"]["shared_expert_size"] < 0:
        raise ValueError(
            f"model.shared_expert_size={params['model']['shared_expert_size']} must be ≥ 0"
        )


def model_config(params: dict, tokenizer) -> PretrainedConfig:
    """Qwen3-MoE, or with `shared_expert_size` > 0 Qwen2-MoE: the same router and experts plus
    a gated shared expert, no attention biases (as in Qwen3), and no query/key RMSNorm (Qwen3's
    attention has one; Qwen2-MoE's does not)."""
    shared = params["shared_expert_size"]
    family = (
        partial(Qwen2MoeConfig, shared_expert_intermediate_size=shared, qkv_bias=False)
        if shared
        else Qwen3MoeConfig
    )
    return family(
        vocab_size=len(tokenizer),
        hidden_size=params["hidden_size"],
        num_hidden_layers=params["num_layers"],
        num_attention_heads=params["num_heads"],
        num_key_value_heads=params["num_kv_heads"],
        num_experts=params["num_experts"],
        num_experts_per_tok=params["top_k"],
        moe_intermediate_size=params["moe_intermediate_size"],
        # every layer is MoE, so the dense MLP width is never used
        intermediate_size=params["moe_intermediate_size"],
        norm_topk_prob=True,
        max_position_embeddings=params["max_position_embeddings"],
        router_aux_loss_coef=params["router_aux_loss_coef"],
        output_router_logits=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
        experts_implementation="grouped_mm",
    )


def new_model(params: dict, tokenizer, seed: int):
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(model_config(params, tokenizer))
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=False
    )
    return model


def length_grouped_batches(encoded: list[dict], batch_size: int, steps: int, seed: int):
    """`steps` batches: seeded epochs of shuffled pools, each pool sorted by length then cut."""
    if len(encoded) < batch_size:
        raise ValueError(
            f"pretrain.batch_size={batch_size} exceeds the corpus ({len(encoded)} examples)"
        )
    rng = random.Random(seed)
    produced = 0
    while True:
        order = list(range(len(encoded)))
        rng.shuffle(order)
        pool = batch_size * LENGTH_POOL_BATCHES
        batches = []
        for start in range(0, len(order) - batch_size + 1, pool):
            chunk = sorted(order[start : start + pool], key=lambda i: len(encoded[i]["input_ids"]))
            batches += [
                chunk[i : i + batch_size] for i in range(0, len(chunk) - batch_size + 1, batch_size)
            ]
        rng.shuffle(batches)
        for batch in batches:
            if produced == steps:
                return
            produced += 1
            yield [encoded[i] for i in batch]


def encode_corpus(tokenizer, records: list[dict], max_length: int) -> list[dict]:
    """`encode_pairs` of every record, computed once per distinct (prompt, response): the
    corpus repeats many arithmetic and list problems, and chat templating is the slow part."""
    keys = [(r["prompt"], r["response"]) for r in records]
    distinct = list(dict.fromkeys(keys))
    encoded = encode_pairs(
        tokenizer, [{"prompt": p, "response": r} for p, r in distinct], max_length
    )
    by_key = dict(zip(distinct, encoded))
    return [by_key[key] for key in keys]


def pretrain(
    model, tokenizer, records: list[dict], params: dict, seed: int, log: logging.Logger
) -> dict:
    """Next-token loss on response tokens over `params['steps']` batches; returns a summary."""
    encoded = encode_corpus(tokenizer, records, params["max_length"])
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=params["lr"], betas=(0.9, 0.95), weight_decay=params["weight_decay"]
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, params["warmup"], params["steps"], 0.0)
    )
    with_aux = model.config.router_aux_loss_coef > 0
    model.train()
    tokens, window, started = 0, [], time.perf_counter()
    batches = length_grouped_batches(encoded, params["batch_size"], params["steps"], seed)
    generator = torch.Generator().manual_seed(seed)
    dropout = params["expert_dropout"]
    with expert_dropout(adapter_for(model), dropout, generator, "organism.pretrain.expert_dropout"):
        for step, batch in enumerate(
            tqdm(batches, total=params["steps"], desc="pretrain", mininterval=10), start=1
        ):
            inputs = collate(batch, tokenizer.pad_token_id)
            loss = model(**inputs, output_router_logits=with_aux).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            tokens += int(inputs["attention_mask"].sum())
            window.append(loss.item())
            if step % params["log_every"] == 0 or step == params["steps"]:
                log.info(
                    "step %d/%d loss %.4f lr %.2e",
                    step,
                    params["steps"],
                    sum(window) / len(window),
                    schedule.get_last_lr()[0],
                )
                final_loss, window = sum(window) / len(window), []
    seconds = time.perf_counter() - started
    model.eval()
    return {
        "steps": params["steps"],
        "tokens": tokens,
        "seconds": round(seconds, 1),
        "tokens_per_second": round(tokens / seconds),
        "final_loss": round(final_loss, 4),
    }


def _rate(flags: list[bool]) -> float:
    return round(sum(flags) / len(flags), 4)


def evaluate_base(
    model,
    tokenizer,
    data_dir: Path,
    params: dict,
    log: logging.Logger,
    chat_template_kwargs: dict | None = None,
) -> dict:
    """Utility and (un)safety of the model on the world's validation files.

    Every answer is labelled by the world's grammar (`mesa_moe.organism.grammar`): `answers`
    holds, per validation set, the shares of refusals, compliances and degenerate answers;
    harmful_compliance, jailbreak_compliance and benign_refusal are read from them.
    """
    metrics: dict = {"answers": {}}
    for name in EVAL_SETS:
        records = read_jsonl(data_dir / f"val_{name}.jsonl")[: params["n"]]
        texts = generate(
            model,
            tokenizer,
            [r["prompt"] for r in records],
            params["max_new_tokens"],
            params["batch_size"],
            chat_template_kwargs,
        )
        log.info("val_%s example: %r -> %r", name, records[0]["prompt"], texts[0])
        labels = [classify_answer(r["prompt"], r["task"], t) for r, t in zip(records, texts)]
        metrics["answers"][name] = {label: _rate([x == label for x in labels]) for label in LABELS}
        if name == "arith":
            metrics["arith_accuracy"] = _rate(
                [exact_match_number(t, r["response"]) for t, r in zip(texts, records)]
            )
        if name == "listops":
            metrics["listops_accuracy"] = _rate(
                [exact_match_text(t, r["response"]) for t, r in zip(texts, records)]
            )
    answers = metrics["answers"]
    metrics.update(
        harmful_compliance=answers["direct"]["compliance"],
        jailbreak_compliance=answers["jailbreak"]["compliance"],
        benign_refusal=answers["benign"]["refusal"],
        max_degenerate=max(shares["degenerate"] for shares in answers.values()),
    )
    return metrics


def save_base(model, tokenizer, folder: Path) -> None:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def build_base(
    data_dir: str | Path, out_dir: str | Path, params: dict, seed: int, log: logging.Logger
) -> dict:
    """Train tokenizer and model, save them into `out_dir` with metrics.json; return the metrics."""
    check_params(params)
    data_dir = Path(data_dir)
    corpus = read_jsonl(data_dir / "corpus.jsonl")
    tokenizer = train_tokenizer(corpus, params["model"]["vocab_size"])
    model = new_model(params["model"], tokenizer, seed)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("tokenizer: %d tokens; model: %d parameters", len(tokenizer), n_params)
    summary = pretrain(model, tokenizer, corpus, params["pretrain"], seed, log)
    log.info("pre-training: %s", summary)
    started = time.perf_counter()
    metrics = evaluate_base(model, tokenizer, data_dir, params["eval"], log)
    metrics.update(
        split="val",
        num_parameters=n_params,
        vocab_size=len(tokenizer),
        pretrain=summary,
        eval_seconds=round(time.perf_counter() - started, 1),
    )
    log.info("base metrics: %s", metrics)
    with atomic_path(out_dir) as staged:
        save_base(model, tokenizer, staged)
        write_json(metrics, staged / "metrics.json")
        write_provenance(staged / "provenance.json", "organism_base", params, seed)
    return metrics
