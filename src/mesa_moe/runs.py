"""Run names: the readable `key~value_key~value` folder names of a parameter setting.

Values are written as the config wrote them (`str` of the YAML value: 0.05 stays "0.05"), and
read back with the type the key needs, so a path names its parameters and nothing else does.
"""

from __future__ import annotations

# Keys hold no "_": it separates them.
# seed: the training seed of one run of a setting (`seeds`); lr: a learning rate set by the run
# (a tuning trial) instead of `training.lr`.
RUN_KEYS: dict[str, type] = {
    "w": int,
    "eps": float,
    "gamma": float,
    "p": float,
    "lr": float,
    "seed": int,
}
NO_PARAMS = "default"  # the run name of a setting without parameters (e.g. every expert)


def format_run(**params) -> str:
    unknown = set(params) - set(RUN_KEYS)
    if unknown:
        raise ValueError(f"no run key(s) {sorted(unknown)}; known: {sorted(RUN_KEYS)}")
    return "_".join(f"{key}~{value}" for key, value in params.items()) or NO_PARAMS


def parse_run(name: str) -> dict:
    """Inverse of format_run: 'w~4_eps~0.05' → {'w': 4, 'eps': 0.05}."""
    if name == NO_PARAMS:
        return {}
    params = {}
    for part in name.split("_"):
        key, sep, value = part.partition("~")
        if not sep or key not in RUN_KEYS:
            raise ValueError(
                f"run name {name!r}: cannot read {part!r} (expected key~value with "
                f"key in {sorted(RUN_KEYS)})"
            )
        params[key] = RUN_KEYS[key](value)
    return params


def setting_of(run: str) -> str:
    """The run name without its training seed: the setting of which the run is one seed
    ('w~4_eps~0.05_seed~1' → 'w~4_eps~0.05', 'seed~0' → 'default')."""
    parse_run(run)  # a malformed name is an error here, not a silently separate setting
    kept = [part for part in run.split("_") if not part.startswith("seed~")]
    return "_".join(kept) if kept else NO_PARAMS


def with_seed(run: str, seed: int) -> str:
    """A setting's run name trained with `seed` (the name its value strings keep)."""
    return f"seed~{seed}" if run == NO_PARAMS else f"{run}_{format_run(seed=seed)}"


def seed_of(run: str) -> float:
    """A run name's training seed (NaN for a run without one, e.g. the Base)."""
    return float(parse_run(run).get("seed", float("nan")))
