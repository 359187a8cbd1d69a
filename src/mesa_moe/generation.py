"""Batched greedy generation with the chat template: the one decoding routine of every benchmark.

Prompts are sorted by length before batching (less padding), left-padded (so every row's last
column is its generation prompt) and decoded greedily until a stop token (`stop_token_ids`) or
`max_new_tokens`. In float32 on the CPU, greedy decoding with an attention mask gives each prompt
the same answer whatever batch it lands in (checked in tests/test_organism.py); bfloat16 GPU
kernels are not batch-invariant, so there a near-tie between two tokens may resolve differently
with another batch size or prompt order.

`evaluation.backend: vllm` hands the benchmark prompts of a real model to vLLM instead (an
optional dependency, imported only when chosen): greedy, the same chat template, the model
folder loaded by vLLM itself. Expert masking (the routing attack) hooks the HF model, so the
routing attack's prompts always decode with `generate`, at every m.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from mesa_moe.data import chat_ids, collate


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    max_new_tokens: int,
    batch_size: int,
    chat_template_kwargs: dict | None = None,
) -> list[str]:
    """The model's greedy answer to each user prompt, in the order of `prompts`."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos token; generation could not stop")
    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError(f"batch_size={batch_size} and max_new_tokens={max_new_tokens} must be ≥ 1")
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    encoded = [
        {"input_ids": chat_ids(tokenizer, prompt, None, chat_template_kwargs)[0]}
        for prompt in prompts
    ]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]["input_ids"]))
    answers: list[str] = [""] * len(prompts)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = collate([encoded[i] for i in rows], pad_id, padding_side="left")
            device = model.device
            output = model.generate(
                input_ids=batch["input_ids"].to(device),
                attention_mask=batch["attention_mask"].to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=stop_token_ids(model, tokenizer),
                pad_token_id=pad_id,
            )
            new_tokens = output[:, batch["input_ids"].shape[1] :]
            for row, ids in zip(rows, new_tokens.tolist()):
                answers[row] = tokenizer.decode(ids, skip_special_tokens=True).strip()
    finally:
        model.train(was_training)
    return answers


def stop_token_ids(model, tokenizer) -> list[int]:
    """The tokenizer's eos, then every stop token of the model's generation config: passed alone,
    the tokenizer's eos would replace the config's list (Qwen3 stops on <|im_end|> and
    <|endoftext|>)."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if configured is None:
        configured = []
    elif isinstance(configured, int):
        configured = [configured]
    return list(dict.fromkeys([tokenizer.eos_token_id, *configured]))


BACKENDS = ("hf", "vllm")
Generator = Callable[[Sequence[str], int], list[str]]


def make_generator(backend: str, model, tokenizer, model_spec: dict, batch_size: int) -> Generator:
    """prompts, max_new_tokens → answers, decoded by `backend` (hf: `generate` on `model`).

    model_spec: the evaluated model's {source, revision, chat_template_kwargs, ...}."""
    chat = model_spec.get("chat_template_kwargs")
    if backend == "hf":
        return lambda prompts, max_new_tokens: generate(
            model, tokenizer, prompts, max_new_tokens, batch_size, chat
        )
    if backend == "vllm":
        return vllm_generator(
            model_spec["source"],
            model_spec.get("revision"),
            model_spec.get("dtype") or "auto",
            chat,
        )
    raise ValueError(f"evaluation.backend must be one of {BACKENDS}, got {backend!r}")


def vllm_generator(
    source: str | Path,
    revision: str | None = None,
    dtype: str = "auto",
    chat_template_kwargs: dict | None = None,
) -> Generator:
    """Greedy chat decoding with vLLM on the model folder or hub id (vLLM batches by itself)."""
    try:
        import vllm
    except ImportError as error:
        raise ImportError(
            "evaluation.backend: vllm needs the vllm package, which is not installed "
            "(pip install vllm, on a CUDA machine); or set evaluation.backend: hf"
        ) from error
    engine = vllm.LLM(model=str(source), revision=revision, dtype=dtype, seed=0)

    def answer(prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        params = vllm.SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
        outputs = engine.chat(
            [[{"role": "user", "content": p}] for p in prompts],
            params,
            use_tqdm=False,
            chat_template_kwargs=chat_template_kwargs or None,
        )
        return [output.outputs[0].text.strip() for output in outputs]

    return answer
