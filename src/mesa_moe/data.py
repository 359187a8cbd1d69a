"""Prompt/response data: loading D_safe, D_gen, D_stat from files or the hub, and chat encoding.

Every data set becomes a list of records with at least `prompt` and `response` (D_stat also
`source` ∈ {safe, gen}). A data spec (config `data.<name>`) says where the rows come from:

    kind: local | hub          (the organism's files are `local` paths the workflow fills in)
    path: file path (.jsonl, .json, .csv, .parquet) or hub data set id
    split, revision, subset:   hub only
    columns: {prompt: <column>, response: <column>}; a column holding a chat (a list of
             {role, content} messages, as in UltraFeedback's `chosen`) gives its last message
    keep: {column: value}: only rows with these values (e.g. SafeRLHF's is_response_0_safe: true)
    limit: keep the first N rows (after a seeded shuffle when `shuffle: true`)
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

log = logging.getLogger(__name__)
IGNORE_INDEX = -100
LOCAL_READERS = {
    ".jsonl": lambda p: _jsonl_table(p),
    ".json": pd.read_json,
    ".csv": pd.read_csv,
    ".parquet": pd.read_parquet,
}


class DataError(ValueError):
    """A data set that cannot be used as configured (missing file, column, or too few rows)."""


def _read_table(spec: dict, where: str) -> pd.DataFrame:
    kind = spec.get("kind", "local")
    path = spec["path"]
    if kind == "local":
        return read_local_table(path, where)
    if kind == "hub":
        import datasets

        ds = datasets.load_dataset(
            path,
            spec.get("subset"),
            split=spec.get("split", "train"),
            revision=spec.get("revision"),
        )
        return ds.to_pandas()
    raise DataError(f"{where}.kind: unknown kind {kind!r} (local or hub)")


def _jsonl_table(path: str) -> pd.DataFrame:
    """A JSONL file's objects as rows; the first line that is not a JSON object is named."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path} line {number} is not JSON ({error})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path} line {number} is not a JSON object")
            rows.append(row)
    return pd.DataFrame(rows)


def read_local_table(path: str, where: str = "data") -> pd.DataFrame:
    """A local data file as a table; a missing, empty or unreadable file is a DataError naming
    the config key and the file (for JSONL, the number of the first line that is not JSON)."""
    suffix = Path(path).suffix.lower()
    if suffix not in LOCAL_READERS:
        raise DataError(
            f"{where}.path: unsupported file type {suffix!r} for {path} "
            f"(use one of {sorted(LOCAL_READERS)})"
        )
    if not Path(path).is_file():
        raise DataError(f"{where}.path: file not found: {path}")
    if Path(path).stat().st_size == 0:
        raise DataError(f"{where}.path: {path} is empty")
    try:
        table = LOCAL_READERS[suffix](path)
    except (ValueError, OSError) as error:
        raise DataError(f"{where}.path: cannot read {path}: {error}") from None
    if table.empty:
        raise DataError(f"{where}.path: {path} has no rows")
    return table


def load_pairs(spec: dict, where: str = "data", seed: int = 0) -> list[dict]:
    """Rows of a data spec as records with `prompt` and `response` (other columns kept)."""
    table = _read_table(spec, where)
    columns = {"prompt": "prompt", "response": "response", **(spec.get("columns") or {})}
    missing = [f"{role}={col!r}" for role, col in columns.items() if col not in table.columns]
    if missing:
        raise DataError(
            f"{where}: {spec['path']} lacks column(s) {', '.join(missing)}; "
            f"it has {list(table.columns)} (map them with {where}.columns)"
        )
    for column, value in (spec.get("keep") or {}).items():
        if column not in table.columns:
            raise DataError(f"{where}.keep: {spec['path']} has no column {column!r}")
        table = table[table[column] == value]
    table = table.rename(columns={col: role for role, col in columns.items()})
    records = [
        dict(r, prompt=_text(r["prompt"]), response=_text(r["response"]))
        for r in table.to_dict("records")
    ]
    if spec.get("shuffle"):
        random.Random(seed).shuffle(records)
    if spec.get("limit"):
        records = records[: spec["limit"]]
    if not records:
        raise DataError(f"{where}: {spec['path']} has no rows")
    return records


def _text(value) -> str:
    """A cell as text: a chat (list of {role, content}) becomes its last message's content."""
    if isinstance(value, str):
        return value
    messages = list(value) if hasattr(value, "__len__") else []
    if messages and all(isinstance(m, dict) and "content" in m for m in messages):
        return messages[-1]["content"]
    raise DataError(
        f"expected text or a list of chat messages, got {type(value).__name__}: {value!r:.80}"
    )


def sample_stat(safe: Sequence[dict], gen: Sequence[dict], size: int, seed: int) -> list[dict]:
    """D_stat: `size` examples, half from D_safe and half from D_gen, tagged with `source`."""
    half = size // 2
    for name, rows in (("safe", safe), ("gen", gen)):
        if len(rows) < half:
            raise DataError(
                f"data.stat.size={size} needs {half} rows of D_{name}, it has {len(rows)}"
            )
    rng = random.Random(seed)
    picked = [dict(r, source="safe") for r in rng.sample(list(safe), half)]
    picked += [dict(r, source="gen") for r in rng.sample(list(gen), size - half)]
    return picked


def chat_ids(
    tokenizer, prompt: str, response: str | None = None, chat_template_kwargs: dict | None = None
) -> tuple[list[int], int]:
    """Token ids of a chat (user prompt, optional assistant response) and the prompt's length.

    The prompt part ends with the generation prompt, so ids[:n_prompt] is exactly what a model
    sees before it starts to answer. chat_template_kwargs (config `model.chat_template_kwargs`,
    e.g. Qwen3's {enable_thinking: false}) go to the template.
    """
    extra = chat_template_kwargs or {}
    user = [{"role": "user", "content": prompt}]
    prompt_ids = tokenizer.apply_chat_template(
        user, add_generation_prompt=True, tokenize=True, return_dict=False, **extra
    )
    if response is None:
        return list(prompt_ids), len(prompt_ids)
    full = tokenizer.apply_chat_template(
        user + [{"role": "assistant", "content": response}],
        tokenize=True,
        return_dict=False,
        **extra,
    )
    full = list(full)
    if full[: len(prompt_ids)] != list(prompt_ids):
        raise DataError(
            "the tokenizer's chat template does not extend the prompt with the "
            "response; response-only labels cannot be derived"
        )
    return full, len(prompt_ids)


def encode_pairs(
    tokenizer, records: Sequence[dict], max_length: int, chat_template_kwargs: dict | None = None
) -> list[dict]:
    """input_ids and labels (prompt tokens set to IGNORE_INDEX) per record, truncated."""
    encoded = []
    for record in records:
        ids, n_prompt = chat_ids(
            tokenizer, record["prompt"], record["response"], chat_template_kwargs
        )
        ids = ids[:max_length]
        labels = [IGNORE_INDEX] * min(n_prompt, len(ids)) + ids[n_prompt:]
        encoded.append({"input_ids": ids, "labels": labels})
    return encoded


def encode_training_pairs(
    tokenizer,
    records: Sequence[dict],
    max_length: int,
    where: str,
    max_dropped_share: float,
    chat_template_kwargs: dict | None = None,
) -> tuple[list[dict], int]:
    """encode_pairs, less the examples truncation left without a response token; and how many.

    Such an example adds nothing to L_SFT yet would still enter the routing losses. More than
    `max_dropped_share` of a data set dropped means max_length does not fit it: an error.
    """
    encoded = encode_pairs(tokenizer, records, max_length, chat_template_kwargs)
    kept = [item for item in encoded if any(label != IGNORE_INDEX for label in item["labels"])]
    dropped = len(encoded) - len(kept)
    if dropped > max_dropped_share * len(encoded) or not kept:
        raise DataError(
            f"{where}: {dropped} of {len(encoded)} examples keep no response token "
            f"within data.max_length={max_length} (more than data.max_dropped_share="
            f"{max_dropped_share}); raise data.max_length or shorten the prompts"
        )
    if dropped:
        log.warning(
            "%s: %d of %d examples dropped: their prompt fills data.max_length=%d",
            where,
            dropped,
            len(encoded),
            max_length,
        )
    return kept, dropped


def collate(batch: Sequence[dict], pad_id: int, padding_side: str = "right") -> dict:
    """Pad a list of encoded records into input_ids, attention_mask and labels tensors."""
    width = max(len(item["input_ids"]) for item in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    for row, item in enumerate(batch):
        n = len(item["input_ids"])
        cols = slice(width - n, width) if padding_side == "left" else slice(0, n)
        input_ids[row, cols] = torch.tensor(item["input_ids"])
        attention_mask[row, cols] = 1
        if "labels" in item:
            labels[row, cols] = torch.tensor(item["labels"])
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
