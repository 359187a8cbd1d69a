import copy
import re
from pathlib import Path

import pytest
import yaml

from mesa_moe.config import ConfigError, load_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def config_with(**changes):
    config = copy.deepcopy(DEFAULT)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = config
        for key in parents:
            node = node[key]
        node[leaf] = value
    return config


def test_default_config_is_valid():
    config = load_config(ROOT / "config" / "config.yaml")
    assert config["selection"]["w"] and config["model"]["name"] == "organism"


def test_default_method_lr_is_the_studys_val_choice():
    """config.yaml says its method_lr holds the learning rates the study chose on the val files
    (docs/results.md, "Tuned settings") where they differ from training.lr."""
    results = (ROOT / "docs" / "results.md").read_text()
    tuned = results.split("## Tuned settings")[1].split("\n\n")[1]
    chosen = {
        row.split("|")[1].strip(): float(re.search(r"lr = ([0-9.e-]+)", row).group(1))
        for row in tuned.splitlines()[2:]
    }
    training = DEFAULT["training"]
    expected = {
        method: lr
        for method, lr in chosen.items()
        if method in training["methods"] and lr != training["lr"]
    }
    assert training["method_lr"] == expected


def test_defaults_are_filled():
    config = validate_config(
        {
            "model": {"name": "m", "source": "organism"},
            "data": {"safe": {"path": "a.jsonl"}, "gen": {"path": "b.jsonl"}},
        }
    )
    assert config["selection"]["tau"] == 0.1
    assert config["selection"]["scope"] == "per_layer"
    assert config["data"]["safe"]["kind"] == "local"
    assert config["seed"] == 0


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"config key selection: .*'epsilonn'.*unknown key"):
        validate_config(config_with(selection__epsilonn=[0.1]))


def test_data_columns_map_only_prompt_and_response():
    # D_stat's `source` is set by sampling (half D_safe, half D_gen), never read from a column
    columns = {"prompt": "question", "source": "origin"}
    with pytest.raises(ConfigError, match=r"data.safe.columns: .*'source'.*unknown key"):
        validate_config(config_with(data__safe__columns=columns))


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"config key selection.w.0: .*integer"):
        validate_config(config_with(selection__w=[2.5]))
    with pytest.raises(ConfigError, match=r"config key selection.scope"):
        validate_config(config_with(selection__scope="sideways"))


def test_yaml_string_number_is_explained():
    config = yaml.safe_load("tau: 1e-4\n")
    assert config["tau"] == "1e-4"  # what YAML 1.1 does, and why the schema must catch it
    with pytest.raises(ConfigError, match=r"selection.tau: '1e-4' is not of type 'number'.*1.0e-4"):
        validate_config(config_with(selection__tau="1e-4"))


def test_missing_required_section():
    config = config_with()
    del config["data"]["gen"]
    with pytest.raises(ConfigError, match=r"config key data: 'gen' is a required property"):
        validate_config(config)


def test_every_problem_is_listed():
    with pytest.raises(ConfigError) as error:
        validate_config(config_with(selection__tau=-1, profile__batch_size=0))
    assert "selection.tau" in str(error.value) and "profile.batch_size" in str(error.value)


def test_organism_overrides_merge_into_defaults():
    from mesa_moe.config import merge_defaults

    defaults = {"seed": 0, "model": {"hidden_size": 128, "num_layers": 4}}
    merged = merge_defaults(defaults, {"model": {"num_layers": 2}}, "organism")
    assert merged == {"seed": 0, "model": {"hidden_size": 128, "num_layers": 2}}
    with pytest.raises(ConfigError, match=r"organism.model.hiden_size: unknown key"):
        merge_defaults(defaults, {"model": {"hiden_size": 1}}, "organism")


def test_tiny_test_config_is_valid_and_complete():
    from mesa_moe.organism import DEFAULTS

    tiny = load_config(ROOT / "config" / "test" / "tiny.yaml")
    assert tiny["model"]["source"] == "organism"
    # the tiny world sets every organism key the defaults have: it does not depend on them
    assert {k: set(v) if isinstance(v, dict) else None for k, v in tiny["organism"].items()} == {
        k: set(v) if isinstance(v, dict) else None for k, v in DEFAULTS.items()
    }


def test_organism_section_is_typed_by_the_schema():
    from mesa_moe.organism import DEFAULTS

    validate_config(config_with(organism=copy.deepcopy(DEFAULTS)))  # the defaults fit the schema
    with pytest.raises(ConfigError, match=r"config key organism.model.num_experts: '8'"):
        validate_config(config_with(organism={"model": {"num_experts": "8"}}))
    with pytest.raises(ConfigError, match=r"config key organism.vendor: .*'expert'.*unknown key"):
        validate_config(config_with(organism={"vendor": {"expert": 1}}))


def test_schema_lists_the_library_methods():
    from mesa_moe.config import load_schema
    from mesa_moe.methods import METHODS

    training = load_schema()["properties"]["training"]["properties"]["methods"]
    assert training["items"]["enum"] == list(METHODS)
    # the default run leaves experts_random to the study (config/study.yaml): its budget
    assert training["default"] == [name for name in METHODS if name != "experts_random"]
    assert training["minItems"] == 1


def test_method_run_keys():
    from mesa_moe.methods import METHODS

    assert {name: method.run_keys for name, method in METHODS.items()} == {
        "mesa": ("w", "eps", "gamma"),
        "experts_ot": ("w", "eps"),
        "router_only": ("w", "eps", "gamma"),
        "experts_all": (),
        "experts_cmax": ("w", "eps", "gamma"),
        "experts_cmid": ("w", "eps", "gamma"),
        "experts_random": ("w", "eps", "gamma"),
        "experts_safe_top": ("w",),
        "sft_full": (),
    }


def test_canonical_sorts_every_mapping():
    from mesa_moe.config import canonical

    a = canonical({"b": 1, "a": {"d": [{"y": 1, "x": 2}], "c": None}})
    b = canonical({"a": {"c": None, "d": [{"x": 2, "y": 1}]}, "b": 1})
    assert repr(a) == repr(b) == "{'a': {'c': None, 'd': [{'x': 2, 'y': 1}]}, 'b': 1}"


def test_model_source_is_checked_from_config_json_alone(tmp_path, monkeypatch):
    import json

    from mesa_moe.config import model_architecture

    monkeypatch.chdir(tmp_path)
    (tmp_path / "moe").mkdir()
    (tmp_path / "moe" / "config.json").write_text(
        json.dumps({"model_type": "mixtral", "num_local_experts": 8})
    )
    assert model_architecture("moe") == {"model_type": "mixtral", "num_experts": 8}
    (tmp_path / "dense").mkdir()
    (tmp_path / "dense" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ConfigError, match=r"model.source: .*'llama' is not supported"):
        model_architecture("dense")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"without config.json"):
        model_architecture("empty")
    for path in ("./missing", "../x/y", "models/a/b", "/abs/model", "empty/model"):
        with pytest.raises(ConfigError, match=r"not a hub id either"):
            model_architecture(path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert model_architecture("Qwen/Qwen3-30B-A3B") is None  # a hub id not in the cache


def test_data_files_are_checked_by_the_loader_itself(tmp_path):
    """The DAG-build check and data.load_pairs share read_local_table: same errors, same lines."""
    from mesa_moe.data import DataError, load_pairs, read_local_table

    path = tmp_path / "safe.jsonl"
    path.write_text(
        '{"prompt": "a", "response": "b"}\n\n{"prompt": "c", "response": "d"}\n'
        '{"prompt": "e", "response": \n'
    )
    for check in (
        lambda: read_local_table(str(path), "data.safe"),
        lambda: load_pairs({"kind": "local", "path": str(path)}, "data.safe"),
    ):
        with pytest.raises(DataError, match=r"data.safe.path: .*safe.jsonl line 4 is not JSON"):
            check()
    path.write_text('["a list"]\n')
    with pytest.raises(DataError, match=r"line 1 is not a JSON object"):
        read_local_table(str(path), "data.safe")
    path.write_text("")
    with pytest.raises(DataError, match=r"data.safe.path: .*safe.jsonl is empty"):
        load_pairs({"kind": "local", "path": str(path)}, "data.safe")
    path.write_text('{"prompt": "a", "response": "b"}\n')
    assert load_pairs({"kind": "local", "path": str(path)}) == [{"prompt": "a", "response": "b"}]
