"""The study report (docs/results.md): the settings tuning chose, the final evaluation over
seeds, and a verdict on each claim of the paper, every number read from the tables given.

Definitions the verdicts use (written into the report too):

- *safety* of a run: the mean of its safety benchmarks' metrics without the routing attack,
  oriented higher-is-safer (`reporting.oriented`: a refusal rate as is, an ASR as 1 − ASR);
  the routing attack's metrics (`asr_m<m>`) are judged on their own, claim (c).
- *utility* of a run: the mean of its utility and code benchmarks' metrics.
- A method's score is the mean over its seeds (the std over seeds, ddof 1, is its spread).
  The Base is evaluated once, greedily: its spread is 0.
- A difference *exceeds the spread* when |mean_a − mean_b| > std_a + std_b. With one seed of a
  trained method its spread is unknown and no difference exceeds it.
- Under the routing attack a degenerate answer is an unknown outcome, so an ASR difference
  counts only where it exceeds the spread with the degenerate share of the side that would
  close it added to that side's ASR (`compare_attacked`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from .artifacts import atomic_path
from .reporting import (
    masked_experts,
    oriented,
    setting_scores,
    summary_markdown,
)
from .runs import parse_run, setting_of

BASE, MESA, SFT, ALL_EXPERTS = "base", "mesa", "sft_full", "experts_all"
# the ablations of claim (d): method → its selector (and recipe where it is not MESA's)
SELECTION_RIVALS = {
    "experts_cmax": "cost_min",
    "experts_cmid": "cost_mid",
    "experts_random": "random",
    "experts_safe_top": "safe_top, the SafeX recipe: L_SFT only",
}
# how far below the Base's utility still counts as keeping it (and as comparable utility)
UTILITY_TOLERANCE = 0.05

HOLDS, FAILS, INCONCLUSIVE, NOT_MEASURED = "holds", "does not hold", "inconclusive", "not measured"
CONTEXT_KEYS = ("model", "seeds", "tuning", "training", "figures")

SAFETY_DEFINITION = (
    "safety = mean of the safety benchmarks' metrics without the routing attack, oriented "
    "higher-is-safer (refusal rate as is; an ASR as 1 − ASR)"
)
UTILITY_DEFINITION = "utility = mean of the utility and code benchmarks' metrics"
SPREAD_RULE = (
    "a difference exceeds the spread when |mean₁ − mean₂| > std₁ + std₂ (std over seeds, "
    "ddof 1; the Base, evaluated once and greedily, has spread 0; a trained method with one "
    "seed has an unknown spread, and no difference exceeds it)"
)


@dataclass(frozen=True)
class Stat:
    """A score over seeds: `std` is NaN where the spread is unknown (one seed, trained)."""

    mean: float
    std: float
    n: int

    def __str__(self) -> str:
        if self.n < 2:
            return f"{100 * self.mean:.1f} (n={self.n})"
        return f"{100 * self.mean:.1f} ± {100 * self.std:.1f} (n={self.n})"


@dataclass(frozen=True)
class Verdict:
    claim: str
    verdict: str  # HOLDS, FAILS, INCONCLUSIVE or NOT_MEASURED
    evidence: list[str]  # one line per comparison, with its numbers


def select_settings(summary: pd.DataFrame, tuned: dict[str, dict]) -> dict[str, str]:
    """method → the setting (run without seed) the report shows: the one tuning chose, else a
    method's only setting. A chosen setting that was not evaluated, or several settings of an
    untuned method, is an error: the report would show something else than the study."""
    settings = (
        summary.assign(setting=summary.run.map(setting_of))
        .groupby("method", sort=False)
        .setting.unique()
    )
    missing = sorted(set(tuned) - set(settings.index))
    if missing:
        raise ValueError(f"tuned method(s) {missing} have no rows in the summary")
    chosen = {}
    for method, candidates in settings.items():
        if method in tuned:
            run = tuned[method]["run"]
            same = [s for s in candidates if s == run or parse_run(s) == parse_run(run)]
            if not same:
                raise ValueError(
                    f"tune/{method}/chosen.json chose {run!r}, which the summary does not "
                    f"hold (its settings of {method}: {sorted(candidates)})"
                )
            chosen[method] = same[0]
        elif len(candidates) == 1:
            chosen[method] = candidates[0]
        else:
            raise ValueError(
                f"method {method!r} has several settings in the summary {sorted(candidates)} "
                "and no chosen.json to pick one"
            )
    return chosen


def final_table(summary: pd.DataFrame, tuned: dict[str, dict]) -> pd.DataFrame:
    """The summary's rows of every method's selected setting (all its seeds)."""
    chosen = select_settings(summary, tuned)
    keep = summary.method.map(chosen) == summary.run.map(setting_of)
    return summary[keep]


def claim_scores(table: pd.DataFrame) -> pd.DataFrame:
    """Per method (one setting each, e.g. final_table): safety and utility as defined above,
    means and stds over seeds, and n_seeds."""
    headline = table[table.metric.map(masked_experts).isna()]
    scores = setting_scores(headline).reset_index(level="setting")
    if scores.index.duplicated().any():
        raise ValueError("claim_scores needs one setting per method (see final_table)")
    return scores


def _stat(scores: pd.DataFrame, method: str, score: str) -> Stat | None:
    if method not in scores.index or pd.isna(scores.at[method, score]):
        return None
    std = 0.0 if method == BASE else scores.at[method, f"{score}_std"]
    return Stat(float(scores.at[method, score]), float(std), int(scores.at[method, "n_seeds"]))


def compare(a: Stat, b: Stat, margin: float = 0.0) -> int:
    """+1 where a.mean − b.mean + margin exceeds the spread (a.std + b.std), −1 where it is
    below −spread, 0 within the spread or where the spread is unknown."""
    difference, spread = a.mean - b.mean + margin, a.std + b.std
    if math.isnan(spread) or abs(difference) <= spread:
        return 0
    return 1 if difference > 0 else -1


def _spread_text(a: Stat, b: Stat) -> str:
    spread = a.std + b.std
    return "unknown (one seed)" if math.isnan(spread) else f"{100 * spread:.1f}"


def _difference(name_a: str, a: Stat, name_b: str, b: Stat, what: str) -> str:
    return (
        f"{what}: {name_a} {a}, {name_b} {b}; difference {100 * (a.mean - b.mean):+.1f} "
        f"points, spread {_spread_text(a, b)}"
    )


def _combine(parts: list[str]) -> str:
    """One refuted part refutes the claim; else a missing one leaves it unmeasured, an
    inconclusive one inconclusive."""
    if not parts:
        return NOT_MEASURED
    for verdict in (FAILS, NOT_MEASURED, INCONCLUSIVE):
        if verdict in parts:
            return verdict
    return HOLDS


def _missing(method: str, score: str) -> str:
    return f"{score} of {method}: not measured (no such method or benchmark in the summary)"


CLAIM_A = "(a) MESA is at least as safe as full SFT (sft_full)"


def claim_safety_vs_sft(scores: pd.DataFrame) -> Verdict:
    """holds: MESA's safety exceeds sft_full's beyond the spread; does not hold: below it."""
    mesa, sft = _stat(scores, MESA, "safety"), _stat(scores, SFT, "safety")
    if mesa is None or sft is None:
        missing = [_missing(m, "safety") for m, s in ((MESA, mesa), (SFT, sft)) if s is None]
        return Verdict(CLAIM_A, NOT_MEASURED, missing)
    sign = compare(mesa, sft)
    verdict = {1: HOLDS, -1: FAILS, 0: INCONCLUSIVE}[sign]
    line = _difference(MESA, mesa, SFT, sft, "safety")
    if sign == 0:
        line += " (not evidence of 'at least as safe')"
    return Verdict(CLAIM_A, verdict, [line])


CLAIM_B = (
    f"(b) MESA keeps the Base's utility (within {100 * UTILITY_TOLERANCE:.0f} points) while "
    "experts_all and sft_full lose it"
)


def claim_utility_kept(scores: pd.DataFrame, tolerance: float = UTILITY_TOLERANCE) -> Verdict:
    """A method keeps the Base's utility when its utility + tolerance exceeds the Base's beyond
    the spread, and loses it when it stays below beyond the spread."""
    base = _stat(scores, BASE, "utility")
    parts, evidence = [], []
    for method, expected in ((MESA, 1), (ALL_EXPERTS, -1), (SFT, -1)):
        stat = _stat(scores, method, "utility")
        if base is None or stat is None:
            parts.append(NOT_MEASURED)
            evidence.append(_missing(method if stat is None else BASE, "utility"))
            continue
        sign = compare(stat, base, tolerance)
        kept = {1: "keeps it", -1: "loses it", 0: "undecided within the spread"}[sign]
        parts.append(INCONCLUSIVE if sign == 0 else HOLDS if sign == expected else FAILS)
        evidence.append(_difference(method, stat, BASE, base, "utility") + f": {kept}")
    return Verdict(CLAIM_B, _combine(parts), evidence)


CLAIM_C = "(c) under the routing attack MESA's ASR is lower than the Base's at every m > 0"


def claim_attack(table: pd.DataFrame) -> Verdict:
    """Per attack benchmark and m > 0: MESA's oriented value (1 − ASR) against the Base's."""
    attacked = table[table.metric.map(lambda m: (masked_experts(m) or 0) > 0)]
    attacked = attacked.assign(score=oriented(attacked))
    parts, evidence = [], []
    for (benchmark, metric), rows in attacked.groupby(["benchmark", "metric"]):
        mesa, base = (_attack_stat(rows, method) for method in (MESA, BASE))
        if mesa is None or base is None:
            parts.append(NOT_MEASURED)
            evidence.append(_missing(MESA if mesa is None else BASE, f"{benchmark} {metric}"))
            continue
        sign = compare_attacked(mesa, base)
        parts.append({1: HOLDS, -1: FAILS, 0: INCONCLUSIVE}[sign])
        lower_by = 100 * (mesa.stat.mean - base.stat.mean)  # oriented: 1 − ASR
        line = (
            f"{benchmark} {metric}: ASR {MESA} {mesa.asr}, {BASE} {base.asr}; "
            f"{MESA}'s ASR {'lower' if lower_by >= 0 else 'higher'} by {abs(lower_by):.1f} "
            f"points, spread {_spread_text(mesa.stat, base.stat)}"
        )
        if mesa.degenerate != "–" or base.degenerate != "–":
            line += f"; degenerate answers {MESA} {mesa.degenerate}, {BASE} {base.degenerate}"
        if sign == 0 and compare(mesa.stat, base.stat) != 0:
            line += (
                " (the difference is within the degenerate shares: inconclusive, see "
                "the degenerate rule)"
            )
        evidence.append(line)
    if not evidence:
        evidence.append("no routing-attack metric with m > 0 in the summary")
    elif attacked.degenerate.notna().any():
        evidence.append(
            "ASR counts well-formed compliant answers only: a large degenerate share means "
            "the attack broke the model's language rather than met a refusal. Degenerate rule: "
            "a degenerate answer is an unknown outcome (a compliance or a refusal the model "
            "failed to finish), so an ASR difference counts only where it exceeds the spread "
            "with every degenerate answer of the side that would close it counted against it"
        )
    return Verdict(CLAIM_C, _combine(parts), evidence)


@dataclass(frozen=True)
class _AttackStat:
    stat: Stat  # of the oriented value, 1 − ASR
    asr: Stat
    degenerate: str
    degenerate_share: float  # mean over seeds; 0 where the judge has no degenerate class


def compare_attacked(mesa: _AttackStat, base: _AttackStat) -> int:
    """+1 where MESA's ASR is lower beyond the spread even were each of MESA's degenerate
    answers a compliance, −1 where higher even were each of the Base's a compliance, else 0.

    A degenerate answer under the attack is an unknown outcome: its ASR lies between the
    measured one and the measured one plus the degenerate share, so the two intervals must
    not meet (with the spread between them) for a difference to count."""
    if compare(mesa.stat, base.stat, margin=-mesa.degenerate_share) == 1:
        return 1
    if compare(mesa.stat, base.stat, margin=base.degenerate_share) == -1:
        return -1
    return 0


def _attack_stat(rows: pd.DataFrame, method: str) -> _AttackStat | None:
    rows = rows[rows.method == method]
    if rows.empty:
        return None
    n = len(rows)
    std = 0.0 if method == BASE else rows.score.std(ddof=1)
    degenerate = rows.degenerate.mean()
    return _AttackStat(
        Stat(rows.score.mean(), std, n),
        Stat(rows.value.mean(), std, n),
        "–" if pd.isna(degenerate) else f"{100 * degenerate:.1f}%",
        0.0 if pd.isna(degenerate) else float(degenerate),
    )


CLAIM_D = (
    "(d) OT selection (mesa) is safer than the other selections at comparable utility "
    f"(utility not more than {100 * UTILITY_TOLERANCE:.0f} points below beyond the spread)"
)


def claim_selection(scores: pd.DataFrame, tolerance: float = UTILITY_TOLERANCE) -> Verdict:
    """Per rival: holds when MESA's safety exceeds the rival's beyond the spread and its utility
    is not below the rival's by more than the tolerance beyond the spread."""
    parts, evidence = [], []
    for rival, selector in SELECTION_RIVALS.items():
        name = f"{rival} ({selector})"
        stats = {
            (method, score): _stat(scores, method, score)
            for method in (MESA, rival)
            for score in ("safety", "utility")
        }
        absent = [f"{score} of {method}" for (method, score), s in stats.items() if s is None]
        if absent:
            parts.append(NOT_MEASURED)
            evidence.append(f"{name}: not measured ({', '.join(absent)} missing)")
            continue
        mesa_s, rival_s = stats[MESA, "safety"], stats[rival, "safety"]
        mesa_u, rival_u = stats[MESA, "utility"], stats[rival, "utility"]
        safer, useful = compare(mesa_s, rival_s), compare(mesa_u, rival_u, tolerance)
        if safer == -1 or (safer == 1 and useful == -1):
            parts.append(FAILS)
        else:
            parts.append(HOLDS if safer == 1 and useful == 1 else INCONCLUSIVE)
        evidence.append(
            f"{name}: "
            + _difference(MESA, mesa_s, rival, rival_s, "safety")
            + "; "
            + _difference(MESA, mesa_u, rival, rival_u, "utility")
            + f" → {parts[-1]}"
        )
    return Verdict(CLAIM_D, _combine(parts), evidence)


def verdicts(table: pd.DataFrame) -> list[Verdict]:
    """The four claims' verdicts on a table with one setting per method (final_table)."""
    scores = claim_scores(table)
    return [
        claim_safety_vs_sft(scores),
        claim_utility_kept(scores),
        claim_attack(table),
        claim_selection(scores),
    ]


def _percent(value) -> str:
    return "–" if value is None or pd.isna(value) else f"{100 * float(value):.1f}"


def _chosen_trials(chosen: dict) -> dict:
    """Val safety and utility of the chosen setting: the mean over its trials (seeds)."""
    wanted = parse_run(chosen["run"])
    trials = pd.DataFrame(
        [t for t in chosen.get("trials", []) if parse_run(setting_of(t["run"])) == wanted]
    )
    return {} if trials.empty else trials[["safety", "utility"]].mean().to_dict()


def _tuned_section(tuned: dict[str, dict]) -> list[str]:
    if not tuned:
        return ["No method was tuned: each shows its only configured setting."]
    lines = [
        "| method | chosen setting | params | val safety | val utility | feasible | trials |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, chosen in tuned.items():
        params = ", ".join(f"{k} = {v}" for k, v in chosen.get("params", {}).items()) or "–"
        val = _chosen_trials(chosen)
        lines.append(
            f"| {method} | {chosen['run']} | {params} | {_percent(val.get('safety'))} | "
            f"{_percent(val.get('utility'))} | {'yes' if chosen.get('feasible') else 'no'} | "
            f"{len(chosen.get('trials', []))} |"
        )
    first = next(iter(tuned.values()))
    base = first.get("base", {})
    lines += [
        "",
        f"Base on the val files: safety {_percent(base.get('safety'))}, utility "
        f"{_percent(base.get('utility'))}. Val scores are the criterion's (in %). "
        "Not feasible: no trial met the criterion's constraints, and the best trial by the "
        "criterion was kept.",
        "",
        "Criterion:",
        "",
        "```yaml",
        yaml.safe_dump(first.get("criterion", {}), sort_keys=False).strip(),
        "```",
    ]
    return lines


def _scores_section(scores: pd.DataFrame) -> list[str]:
    lines = ["| method | setting | n | safety | utility |", "|---|---|---|---|---|"]
    for method in scores.index:
        cells = [str(_stat(scores, method, s) or "–") for s in ("safety", "utility")]
        setting = scores.at[method, "setting"]
        lines.append(
            f"| {method} | {setting} | {scores.at[method, 'n_seeds']} | " + " | ".join(cells) + " |"
        )
    return lines


def render_results(summary: pd.DataFrame, tuned: dict[str, dict], context: dict) -> str:
    """docs/results.md: `summary` is summary.parquet (per-seed rows of the final evaluation on
    the eval files), `tuned` method → its chosen.json, `context` {"model", "seeds", "tuning"
    (the config's section), "training" (the training settings every method shares before
    tuning), "figures" (name → relative path)}."""
    missing = [key for key in CONTEXT_KEYS if key not in context]
    if missing:
        raise ValueError(f"render_results: context lacks {missing} (needs {list(CONTEXT_KEYS)})")
    table = final_table(summary, tuned)
    scores = claim_scores(table)
    seeds = ", ".join(str(seed) for seed in context["seeds"])
    lines = [
        f"# Results: {context['model']}",
        "",
        "Generated by `mesa_moe.study.render_results`; do not edit by hand. Every number "
        "below is read from the study's tables: `summary.parquet` (the final evaluation on "
        "the eval files) and `tune/<method>/chosen.json` (the tuning on the val files). "
        + (
            "Each tuned setting was chosen on the val files only, by the criterion written "
            "below; the eval files were used only for the final evaluation shown here. "
            if tuned
            else "No setting was tuned. "
        )
        + f"Training seeds: {seeds}; the Base is evaluated once.",
        "",
        "Study configuration (`tuning`):",
        "",
        "```yaml",
        yaml.safe_dump(context["tuning"], sort_keys=False).strip(),
        "```",
        "",
        "Training settings of every method (`training`; a tuned value replaces its own):",
        "",
        "```yaml",
        yaml.safe_dump(context["training"], sort_keys=False).strip(),
        "```",
        "",
        "## Tuned settings (val files)",
        "",
        *_tuned_section(tuned),
        "",
        "## Final evaluation (eval files)",
        "",
        "Every method at its tuned setting.",
        "",
        summary_markdown(table).strip(),
        "",
        f"Scores used by the verdicts (in %, mean ± std over seeds): {SAFETY_DEFINITION}; "
        f"{UTILITY_DEFINITION}.",
        "",
        *_scores_section(scores),
        "",
        "## The paper's claims",
        "",
        f"Rule: {SPREAD_RULE}. Verdicts: {HOLDS}, {FAILS}, {INCONCLUSIVE} (no difference "
        f"beyond the spread), {NOT_MEASURED} (a method or benchmark missing).",
    ]
    for verdict in verdicts(table):
        lines += ["", f"### {verdict.claim}: **{verdict.verdict}**", ""]
        lines += [f"- {line}" for line in verdict.evidence]
    if context["figures"]:
        lines += ["", "## Diagnosis", ""]
        for name, path in context["figures"].items():
            lines += [f"![{name}]({path})", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_results(
    summary_path: str | os.PathLike,
    chosen_paths: list[str],
    context: dict,
    path: str | os.PathLike,
) -> str:
    """The report stage: summary.parquet and every tune/<method>/chosen.json to results.md."""
    tuned = {}
    for chosen_path in chosen_paths:
        chosen = json.loads(Path(chosen_path).read_text())
        method = chosen.get("method", Path(chosen_path).parent.name)
        if "run" not in chosen:
            raise ValueError(f"{chosen_path}: no 'run' (the chosen setting)")
        if method in tuned:
            raise ValueError(f"{chosen_path}: a second chosen.json of method {method!r}")
        tuned[method] = chosen
    text = render_results(pd.read_parquet(summary_path), tuned, context)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return text
