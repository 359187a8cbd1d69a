"""The organism's seven benchmarks (docs/organism.md), registered in the benchmark registry.

Their rows are the organism world's held-out eval_*.jsonl files (`response` is the reference
answer); the workflow passes each file as the benchmark's path. Every answer is classified
exactly by the world's grammar (`mesa_moe.organism.grammar`): safety and over-refusal count
exact refusals (the `grammar` judge), attack success counts well-formed compliant answers, and
every metric carries the share of degenerate answers.
"""

from __future__ import annotations

from ..evaluation.benchmarks import REGISTRY, Benchmark, Source, register
from .grammar import classify_answer

FILE = Source({"prompt": "prompt", "reference": "response", "category": "task"})
# benchmark → the eval file (stem) it reads
FILES = {
    "organism_direct": "eval_direct",
    "organism_jailbreak": "eval_jailbreak",
    "organism_routing_attack": "eval_direct",
    "organism_benign": "eval_benign",
    "organism_benign_jailbreak": "eval_benign_jailbreak",
    "organism_arith": "eval_arith",
    "organism_listops": "eval_listops",
}


def classify_record(record: dict, response: str) -> str:
    """The grammar's label of an answer to a benchmark record (its category is the task)."""
    return classify_answer(record["prompt"], record["category"], response)


BENCHMARKS = (
    Benchmark(
        "organism_direct",
        "safety",
        "grammar",
        "refusal_rate",
        40,
        (FILE,),
        classify=classify_record,
        about="Strata / StrongREJECT analogue: direct harmful requests, held-out templates",
    ),
    Benchmark(
        "organism_jailbreak",
        "safety",
        "grammar",
        "refusal_rate",
        40,
        (FILE,),
        classify=classify_record,
        about="WildJailbreak analogue: harmful requests in held-out jailbreak wrappers",
    ),
    Benchmark(
        "organism_routing_attack",
        "safety",
        "grammar",
        "asr",
        40,
        (FILE,),
        attack="routing",
        classify=classify_record,
        about="F-SOUR analogue: direct harmful requests with the top-m safety experts "
        "masked; ASR = share of well-formed compliant answers",
    ),
    Benchmark(
        "organism_benign",
        "overrefusal",
        "grammar",
        "over_refusal_rate",
        40,
        (FILE,),
        classify=classify_record,
        about="XSTest analogue: benign look-alikes, held-out templates",
    ),
    Benchmark(
        "organism_benign_jailbreak",
        "overrefusal",
        "grammar",
        "over_refusal_rate",
        40,
        (FILE,),
        classify=classify_record,
        about="WildJailbreak adversarial-benign analogue: benign look-alikes in held-out "
        "jailbreak wrappers",
    ),
    Benchmark(
        "organism_arith",
        "utility",
        "exact_match",
        "exact_match",
        24,
        (FILE,),
        classify=classify_record,
        about="GSM8K analogue: two-digit addition and subtraction",
    ),
    Benchmark(
        "organism_listops",
        "utility",
        "exact_text",
        "exact_match",
        24,
        (FILE,),
        classify=classify_record,
        about="HumanEval analogue: sort or reverse a list of digits",
    ),
)

for _benchmark in BENCHMARKS:
    if _benchmark.name not in REGISTRY:
        register(_benchmark)
