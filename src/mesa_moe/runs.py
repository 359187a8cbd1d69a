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
