"""Config validation against the JSON schema, with defaults filled in and errors that name the key.

Validation happens before any rule runs: an unknown key, a wrong type, or a number that YAML read
as a string (`1e-4` without a dot is a string in YAML 1.1) stops the workflow with the key's path.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """The config does not satisfy the schema."""


def _with_defaults(validator_class):
    """A validator that also fills each missing property's schema `default` (jsonschema recipe)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _describe(error: jsonschema.ValidationError) -> str:
    key = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    message = error.message
    if (
        error.validator == "type"
        and isinstance(error.instance, str)
        and error.validator_value in ("number", "integer", ["number", "null"], ["integer", "null"])
    ):
        try:
            float(error.instance)
            message += " (YAML reads numbers like 1e-4 as strings: write 1.0e-4)"
        except ValueError:
            pass
    if error.validator == "additionalProperties":
        message += " (unknown key: check its spelling against config/config.yaml)"
    return f"config key {key}: {message}"


def load_schema(path: str | os.PathLike = SCHEMA_PATH) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def validate_config(config: dict, schema_path: str | os.PathLike = SCHEMA_PATH) -> dict:
    """Validate `config` in place (filling defaults) and return it; ConfigError lists every
    problem."""
    schema = load_schema(schema_path)
    validator_class = _with_defaults(jsonschema.validators.validator_for(schema))
    errors = sorted(
        validator_class(schema).iter_errors(config), key=lambda e: list(e.absolute_path)
    )
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(_describe(e) for e in errors))
    return config


def load_config(path: str | os.PathLike, schema_path: str | os.PathLike = SCHEMA_PATH) -> dict:
    with open(path) as f:
        return validate_config(yaml.safe_load(f) or {}, schema_path)


def merge_defaults(defaults: dict, overrides: dict, where: str) -> dict:
    """`defaults` updated by `overrides`, recursively; a key the defaults lack is a ConfigError."""
    merged = copy.deepcopy(defaults)
    for key, value in (overrides or {}).items():
        if key not in defaults:
            raise ConfigError(
                f"invalid config:\n  config key {where}.{key}: unknown key "
                f"(known: {sorted(defaults)})"
            )
        if isinstance(defaults[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"invalid config:\n  config key {where}.{key}: must be a mapping")
            merged[key] = merge_defaults(defaults[key], value, f"{where}.{key}")
        else:
            merged[key] = value
    return merged


def canonical(value):
    """`value` with every mapping's keys sorted, recursively: equal settings, equal repr.

    Snakemake records a rule's params by repr; without this, the same config with its keys in
    another order would look changed and re-run every job after it.
    """
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [canonical(item) for item in value]
    return value


# config.json keys that hold the number of routed experts per MoE layer, by family
EXPERT_COUNT_KEYS = ("num_experts", "num_local_experts", "n_routed_experts")


def looks_like_path(source: str) -> bool:
    """True when `source` can only be a local path: a hub id is `name` or `owner/name`."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if source.startswith(("/", ".", "~")) or source.count("/") > 1:
        return True
    if "/" in source and Path(source.split("/")[0]).is_dir():
        return True  # its first part is a local folder: a path whose model folder is missing
    try:
        validate_repo_id(source)
    except HFValidationError:
        return True
    return False


def model_architecture(
    source: str, revision: str | None = None, where: str = "model.source"
) -> dict | None:
    """{model_type, num_experts} from a model's config.json alone (no weights, no network).

    A local folder must exist and hold a config.json of a supported MoE family; a hub id is
    checked when its config.json is in the local cache, else None (the profile job checks it).
    """
    from .adapters import check_architecture

    if Path(source).is_dir():
        config_path = Path(source) / "config.json"
        if not config_path.is_file():
            raise ConfigError(
                f"config key {where}: {source} is a folder without config.json "
                "(not a transformers model folder)"
            )
    elif looks_like_path(source):
        raise ConfigError(
            f"config key {where}: no model folder at {source} (and {source!r} is "
            "not a hub id either)"
        )
    else:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(source, "config.json", revision=revision)
        if not isinstance(cached, str):
            return None
        config_path = Path(cached)
    model_config = json.loads(config_path.read_text())
    model_type = model_config.get("model_type")
    try:
        check_architecture(model_type)
    except ValueError as error:
        raise ConfigError(f"config key {where}: {config_path}: {error}") from None
    counts = [model_config[key] for key in EXPERT_COUNT_KEYS if model_config.get(key)]
    return {"model_type": model_type, "num_experts": counts[0] if counts else None}


def import_plugins(
    modules: list[str], search_dir: str | os.PathLike, where: str = "evaluation.plugins"
) -> None:
    """Import each module (they register benchmarks); `search_dir` is searched first."""
    import importlib
    import sys

    if str(search_dir) not in sys.path:
        sys.path.insert(0, str(search_dir))
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ConfigError(
                f"config key {where}: cannot import {module!r} ({error}); put it "
                f"in {search_dir} or on PYTHONPATH"
            ) from None
