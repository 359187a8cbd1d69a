"""Artifact writing: nothing half-written ever looks complete, and every folder says what made it.

Files are written to a temporary sibling and renamed into place (rename is atomic on POSIX), so an
interrupted job leaves either the old artifact or none. Folders get a `provenance.json` with the
resolved parameters, seed, package versions and the base model's id and revision. Every
function takes the paths it writes; none derives a file name from another.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

PACKAGES = (
    "mesa-moe",
    "torch",
    "transformers",
    "tokenizers",
    "datasets",
    "accelerate",
    "pot",
    "scipy",
    "pandas",
    "pyarrow",
    "numpy",
    "snakemake",
)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    Works for files and folders alike (the block decides which it creates).
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    staged = tmp / final.name
    try:
        yield staged
        if final.is_dir():
            shutil.rmtree(final)
        os.replace(staged, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_parquet(df: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_jsonl(records: list[dict], path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def provenance(
    stage: str, params: dict, seed: int | None = None, model: dict | None = None
) -> dict:
    """What made an artifact: enough to re-create it, or to tell two of them apart."""
    return {
        "stage": stage,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "params": params,
        "seed": seed,
        "model": model,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
    }


def write_provenance(
    path: str | os.PathLike,
    stage: str,
    params: dict,
    seed: int | None = None,
    model: dict | None = None,
) -> Path:
    """Write `provenance(...)` to `path` (conventionally `provenance.json` beside the artifact)."""
    write_json(provenance(stage, params, seed, model), path)
    return Path(path)
