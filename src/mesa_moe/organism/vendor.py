"""The organism's vendor alignment: a short safety SFT on the few experts that hold safety now.

This makes the "Base" of every comparison (ORGANISM.md, stage 3). The base model is profiled on
direct harmful requests against general data, the `experts` experts per layer most selected on
the harmful requests are chosen (the `safe_top` selector), and only they and the routers train on
the direct part of D_safe (harmful requests without a jailbreak wrapper → refusal, benign look-
alikes → helpful answer) mixed with as many general examples. The result refuses most direct
requests, but its safety sits in few experts: wrapped requests and the routing attack are where
it can fail, which the evaluation measures.

`params` (the organism config's `vendor` section):
    experts      experts per MoE layer that train (1–2 in ORGANISM.md)
    steps, batch_size, lr, warmup   the SFT's budget (AdamW, L_SFT only)
    stat_size    examples profiled to choose the experts (half harmful, half general)
    max_length   tokens per example
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..adapters import load_model
from ..artifacts import read_jsonl, write_json, write_jsonl
from ..profiling import run_profile
from ..selection import run_selection
from ..training import train
from .base import evaluate_base

VENDOR_KEYS = ("experts", "steps", "batch_size", "lr", "warmup", "stat_size", "max_length")


def direct_safety_rows(d_safe: list[dict]) -> list[dict]:
    """The direct (unwrapped) rows of D_safe: what a vendor's safety pass would have covered."""
    direct = [row for row in d_safe if not row.get("wrapper")]
    if not any(row.get("task") == "harmful" for row in direct):
        raise ValueError("d_safe.jsonl has no direct harmful rows for the vendor's safety SFT")
    return direct


def build_vendor(data_dir: str | Path, base_dir: str | Path, model_dir: str | Path, params: dict,
                 eval_params: dict, seed: int, log: logging.Logger,
                 chat_template_kwargs: dict | None = None) -> dict:
    """Profile, select, train and evaluate; the aligned model lands in `model_dir`.

    chat_template_kwargs: `model.chat_template_kwargs`, applied wherever a chat is rendered.

    Working files (profile, selection, training log) go to model_dir's parent folder.
    """
    missing = [key for key in VENDOR_KEYS if key not in params]
    if missing:
        raise ValueError(f"organism config lacks key(s) {['vendor.' + k for k in missing]}")
    data_dir, work = Path(data_dir), Path(model_dir).parent
    direct = direct_safety_rows(read_jsonl(data_dir / "d_safe.jsonl"))
    # The SFT mixes in as many general rows: without them it costs the base much of its arithmetic.
    write_jsonl(direct, work / "vendor_direct.jsonl")
    write_jsonl(direct + read_jsonl(data_dir / "d_gen.jsonl")[: len(direct)], work / "vendor_sft.jsonl")
    data = {"safe": {"kind": "local", "path": str(work / "vendor_direct.jsonl")},
            "gen": {"kind": "local", "path": str(data_dir / "d_gen.jsonl")},
            "stat": {"size": params["stat_size"]}, "max_length": params["max_length"]}
    model_spec = {"source": str(base_dir), "revision": None, "dtype": "float32", "device": "cpu",
                  "chat_template_kwargs": chat_template_kwargs or {}}
    run_profile(model_spec, data, params["batch_size"], seed,
                str(work / "profile" / "activations.parquet"), str(work / "profile" / "coactivation.parquet"))
    experts = run_selection(str(work / "profile" / "activations.parquet"),
                            str(work / "profile" / "coactivation.parquet"), "safe_top",
                            {"w": params["experts"], "seed": seed}, str(work / "selection"))
    log.info("vendor trains experts %s",
             experts[experts.selected].groupby("layer").expert.apply(list).to_dict())
    train({
        "method": "experts_safe_top", "model": model_spec,
        "selection": str(work / "selection" / "experts.parquet"), "seed": seed,
        "data": data | {"safe": {"kind": "local", "path": str(work / "vendor_sft.jsonl")}},
        "training": {"steps": params["steps"], "batch_size": params["batch_size"], "lr": params["lr"],
                     "weight_decay": 0.0, "warmup": params["warmup"], "grad_clip": 1.0, "gamma": 0.0,
                     "epsilon": 1.0, "reference": "frozen_router", "online_cost": "selected",
                     "checkpoint_every": params["steps"], "log_every": max(1, params["steps"] // 10),
                     "mixed_precision": "no"},
        "out_dir": str(work),
    })
    model, tokenizer = load_model(str(model_dir))
    metrics = evaluate_base(model, tokenizer, data_dir, eval_params, log, chat_template_kwargs)
    log.info("vendor (Base) metrics: %s", metrics)
    write_json(metrics, work / "metrics.json")
    return metrics
