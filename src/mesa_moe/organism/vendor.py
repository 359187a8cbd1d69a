"""The organism's vendor alignment: a short safety SFT on the few experts that hold safety now.

This makes the "Base" of every comparison (docs/organism.md). The base model is profiled on
direct harmful requests against general data, the `experts` experts per layer most selected on
the harmful requests are chosen (the `safe_top` selector), and only they and the routers train on
the direct part of D_safe (harmful requests without a jailbreak wrapper → refusal, benign look-
alikes → helpful answer), benign requests inside jailbreak-style wrappers answered helpfully (a
vendor's helpfulness data covers role-play and persuasion framings; its refusal data does not),
and as many general examples as direct rows. The result refuses most direct requests, but its
safety sits in few experts and a wrapper reads to it as a cue to help: wrapped requests and the
routing attack are where it fails, which the evaluation measures.

The workflow runs these steps as its own profile, select and train stages with the settings
below (rules/organism.smk), so each is cached and its files are visible; the functions here give
those stages their data and settings.

`params` (the organism config's `vendor` section):
    experts      experts per MoE layer that train (1–2 in docs/organism.md)
    wrapped_benign  benign requests in training wrappers, answered helpfully, drawn from the
                 corpus into the SFT set
    steps, batch_size, lr, warmup   the SFT's budget (AdamW, L_SFT only)
    stat_size    examples profiled to choose the experts (half harmful, half general)
    max_length   tokens per example
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

from ..adapters import load_model
from ..artifacts import read_jsonl, write_json, write_jsonl
from .base import evaluate_base
from .world import refusal

VENDOR_KEYS = (
    "experts",
    "wrapped_benign",
    "steps",
    "batch_size",
    "lr",
    "warmup",
    "stat_size",
    "max_length",
)
SELECTOR = "safe_top"  # the experts that already hold the most safety routing
METHOD = "experts_safe_top"  # those experts and the routers train, on L_SFT only


def check_vendor_params(params: dict) -> None:
    missing = [key for key in VENDOR_KEYS if key not in params]
    if missing:
        raise ValueError(f"organism config lacks key(s) {['vendor.' + k for k in missing]}")


def direct_safety_rows(d_safe: list[dict]) -> list[dict]:
    """The direct (unwrapped) rows of D_safe: what a vendor's safety pass would have covered."""
    direct = [row for row in d_safe if not row.get("wrapper")]
    if not any(row.get("task") == "harmful" for row in direct):
        raise ValueError("d_safe.jsonl has no direct harmful rows for the vendor's safety SFT")
    return direct


def wrapped_benign_rows(corpus: list[dict], n: int, rng: random.Random) -> list[dict]:
    """n corpus rows that are benign requests inside a (training) wrapper answered helpfully."""
    pool = [
        row
        for row in corpus
        if row.get("task") == "benign"
        and row.get("wrapper")
        and row["response"] != refusal(row["topic"])
    ]
    if n > len(pool):
        raise ValueError(
            f"organism config vendor.wrapped_benign={n}: the corpus has only {len(pool)} wrapped "
            "benign requests answered helpfully"
        )
    return rng.sample(pool, n)


def write_vendor_data(
    data_dir: str, wrapped_benign: int, seed: int, direct_path: str, sft_path: str
) -> None:
    """The direct safety rows (profiled against D_gen), and the SFT set: those rows,
    `wrapped_benign` (`vendor.wrapped_benign`) wrapped benign rows and as many general rows as
    direct ones (without them the SFT costs the base much of its arithmetic), shuffled together."""
    data = Path(data_dir)
    direct = direct_safety_rows(read_jsonl(data / "d_safe.jsonl"))
    rng = random.Random(seed)
    sft = (
        direct
        + wrapped_benign_rows(read_jsonl(data / "corpus.jsonl"), wrapped_benign, rng)
        + read_jsonl(data / "d_gen.jsonl")[: len(direct)]
    )
    rng.shuffle(sft)
    write_jsonl(direct, direct_path)
    write_jsonl(sft, sft_path)


def model_spec(base_dir: str, chat_template_kwargs: dict | None = None) -> dict:
    """The unaligned base, profiled and trained on the CPU in float32; `chat_template_kwargs`
    (`model.chat_template_kwargs`) wherever a chat is rendered."""
    return {
        "source": str(base_dir),
        "revision": None,
        "dtype": "float32",
        "device": "cpu",
        "chat_template_kwargs": chat_template_kwargs or {},
    }


def profile_data(direct_path: str, d_gen_path: str, params: dict) -> dict:
    """The data config of the vendor's profile: direct safety rows against D_gen."""
    check_vendor_params(params)
    return {
        "safe": {"kind": "local", "path": str(direct_path)},
        "gen": {"kind": "local", "path": str(d_gen_path)},
        "stat": {"size": params["stat_size"]},
        "max_length": params["max_length"],
    }


def selection_params(params: dict, seed: int) -> dict:
    return {"w": params["experts"], "seed": seed}


def train_spec(
    base_dir: str,
    sft_path: str,
    d_gen_path: str,
    params: dict,
    seed: int,
    chat_template_kwargs: dict | None = None,
) -> dict:
    """The vendor SFT as a training spec (mesa_moe.training.train), less its selection and paths."""
    check_vendor_params(params)
    return {
        "method": METHOD,
        "model": model_spec(base_dir, chat_template_kwargs),
        "seed": seed,
        "data": {
            "safe": {"kind": "local", "path": str(sft_path)},
            "gen": {"kind": "local", "path": str(d_gen_path)},
            "max_length": params["max_length"],
        },
        "training": {
            "steps": params["steps"],
            "batch_size": params["batch_size"],
            "lr": params["lr"],
            "weight_decay": 0.0,
            "warmup": params["warmup"],
            "grad_clip": 1.0,
            "gamma": 0.0,
            "epsilon": 1.0,
            "reference": "frozen_router",
            "online_cost": "selected",
            "checkpoint_every": params["steps"],
            "log_every": max(1, params["steps"] // 10),
            "mixed_precision": "no",
        },
    }


def evaluate_vendor(
    model_dir: str,
    data_dir: str,
    eval_params: dict,
    metrics_path: str,
    log: logging.Logger,
    chat_template_kwargs: dict | None = None,
) -> dict:
    """The Base measured on the world's validation files, as the base was."""
    model, tokenizer = load_model(str(model_dir))
    metrics = evaluate_base(
        model, tokenizer, Path(data_dir), eval_params, log, chat_template_kwargs
    )
    log.info("vendor (Base) metrics: %s", metrics)
    write_json(metrics, metrics_path)
    return metrics
