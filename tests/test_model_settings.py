"""The model's settings reach every stage: evaluation's loader (dtype, device, revision, device
map), chat-template switches (profile, train, evaluate, the organism vendor), and the truncation
policy of the training data."""

import inspect
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

import mesa_moe.data as data_module
import mesa_moe.organism.benchmarks  # noqa: F401  (registers the organism's benchmarks)
from mesa_moe import adapters
from mesa_moe.adapters import load_model
from mesa_moe.config import canonical
from mesa_moe.data import IGNORE_INDEX, DataError, chat_ids, encode_training_pairs
from mesa_moe.evaluation import runner
from mesa_moe.evaluation.runner import evaluation_paths
from mesa_moe.methods import BASE
from mesa_moe.organism import vendor
from mesa_moe.organism.tokenizer import CHAT_TEMPLATE
from mesa_moe.profiling import run_profile
from mesa_moe.training import train

THINK_OFF = "<think>\n\n</think>\n\n"
# ChatML with Qwen3's switch: enable_thinking=false puts an empty think block after the
# generation prompt and in front of the assistant's answer.
QWEN3_LIKE = (
    "{%- for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' and enable_thinking is defined"
    " and not enable_thinking %}"
    "{{ '" + THINK_OFF.replace("\n", "\\n") + "' }}{%- endif %}"
    "{{ message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and not enable_thinking %}"
    "{{ '" + THINK_OFF.replace("\n", "\\n") + "' }}{%- endif %}{%- endif %}"
)
NO_THINKING = {"enable_thinking": False}


class Loaded(Exception):
    """Stops evaluation once the loader has been called."""


def test_evaluate_loads_the_model_as_configured(monkeypatch, tmp_path):
    # the package's one loader (`load_from_spec` passes the spec's settings on to it)
    calls = []

    def loader(*args, **kwargs):
        calls.append(dict(inspect.signature(load_model).bind(*args, **kwargs).arguments))
        raise Loaded

    monkeypatch.setattr(adapters, "load_model", loader)
    spec = {
        "source": "Qwen/Qwen3-30B-A3B",
        "revision": "abc123",
        "dtype": "bfloat16",
        "device": "cuda:1",
        "device_map": "auto",
        "chat_template_kwargs": NO_THINKING,
    }
    settings = {"judge": {"name": "refusal"}}
    with pytest.raises(Loaded):
        runner.evaluate_model(spec, [], {}, settings, "stat.jsonl", *evaluation_paths(tmp_path))
    assert calls == [
        {
            "source": "Qwen/Qwen3-30B-A3B",
            "revision": "abc123",
            "dtype": "bfloat16",
            "device": "cuda:1",
            "device_map": "auto",
        }
    ]


def test_workflow_evaluates_base_at_its_revision_and_runs_from_their_folders():
    # the rule helpers, run from rules/common.smk's source with a config of a hub model
    common = (Path(__file__).resolve().parents[1] / "rules" / "common.smk").read_text()
    namespace = {
        "config": {
            "model": {
                "revision": "abc123",
                "dtype": "bfloat16",
                "device": "cuda",
                "device_map": None,
                "chat_template_kwargs": NO_THINKING,
            }
        },
        "ORGANISM": False,
        "RESULTS": "results/m",
        "BASE": BASE,
        "canonical": canonical,
        "TRAIN_DIR": "results/m/train/{method}/{run}",
    }
    for name in ("base_model_dir", "model_spec", "evaluated_model", "evaluated_model_spec"):
        start = common.index(f"def {name}(")
        end = common.index("\n\n\n", start)
        exec(common[start:end], namespace)
    namespace["config"]["model"]["source"] = "Qwen/Qwen3-30B-A3B"

    class Wildcards:
        def __init__(self, method, run):
            self.method, self.run = method, run

    base = namespace["evaluated_model_spec"](Wildcards("base", "default"))
    assert base == {
        "source": "Qwen/Qwen3-30B-A3B",
        "revision": "abc123",
        "dtype": "bfloat16",
        "device": "cuda",
        "device_map": None,
        "chat_template_kwargs": NO_THINKING,
    }
    trained = namespace["evaluated_model_spec"](Wildcards("mesa", "w~4"))
    assert trained == base | {"source": "results/m/train/mesa/w~4/model", "revision": None}


@pytest.fixture
def thinking_model(tiny_model_dir, tmp_path) -> Path:
    """The tiny model whose tokenizer has a Qwen3-like enable_thinking switch."""
    folder = tmp_path / "model"
    folder.mkdir()
    for item in (tiny_model_dir / "model").iterdir():
        (folder / item.name).symlink_to(item)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir / "model")
    tokenizer.chat_template = QWEN3_LIKE
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        (folder / name).unlink(missing_ok=True)
    tokenizer.save_pretrained(folder)
    return folder


def test_chat_template_kwargs_reach_the_rendered_prompt(thinking_model):
    tokenizer = AutoTokenizer.from_pretrained(thinking_model)
    default, n_default = chat_ids(tokenizer, "What is 2 + 2?", "4.")
    switched, n_switched = chat_ids(tokenizer, "What is 2 + 2?", "4.", NO_THINKING)
    assert THINK_OFF not in tokenizer.decode(default[:n_default])
    assert tokenizer.decode(switched[:n_switched]).endswith("assistant\n" + THINK_OFF)
    assert tokenizer.decode(switched[n_switched:]).startswith("4.")  # labels: the answer only


def test_chat_template_kwargs_reach_profile_train_and_evaluate(
    thinking_model, tiny_model_dir, train_spec, tmp_path, monkeypatch
):
    rendered = []
    real_chat_ids = data_module.chat_ids

    def spy(tokenizer, prompt, response=None, chat_template_kwargs=None):
        rendered.append(chat_template_kwargs)
        return real_chat_ids(tokenizer, prompt, response, chat_template_kwargs)

    monkeypatch.setattr(data_module, "chat_ids", spy)
    monkeypatch.setattr("mesa_moe.generation.chat_ids", spy)
    model = {"source": str(thinking_model), "chat_template_kwargs": NO_THINKING}
    data = {
        "safe": {"kind": "local", "path": str(tiny_model_dir / "d_safe.jsonl")},
        "gen": {"kind": "local", "path": str(tiny_model_dir / "d_gen.jsonl")},
        "stat": {"size": 8},
        "max_length": 48,
    }
    profile = tmp_path / "profile"
    run_profile(
        model,
        data,
        8,
        0,
        str(profile / "activations.parquet"),
        str(profile / "coactivation.parquet"),
        str(profile / "d_stat.jsonl"),
        str(profile / "provenance.json"),
    )
    provenance = json.loads((profile / "provenance.json").read_text())
    assert provenance["model"]["chat_template_kwargs"] == NO_THINKING
    spec = train_spec("mesa", steps=1)
    train(spec | {"model": spec["model"] | model})
    provenance = json.loads((Path(spec["out_dir"]) / "provenance.json").read_text())
    assert provenance["model"]["chat_template_kwargs"] == NO_THINKING
    benchmark = tmp_path / "arith.jsonl"
    row = {"prompt": "What is 1 + 1?", "response": "2", "task": "arith"}
    benchmark.write_text(json.dumps(row) + "\n")
    settings = {
        "limit": None,
        "batch_size": 2,
        "seed": 0,
        "max_length": 48,
        "attack_m": [0],
        "judge": {"name": "refusal"},
        "sandbox": {},
    }
    runner.evaluate_model(
        model,
        ["organism_arith"],
        {"organism_arith": str(benchmark)},
        settings,
        str(profile / "d_stat.jsonl"),
        *evaluation_paths(tmp_path / "eval"),
    )
    provenance = json.loads((tmp_path / "eval" / "provenance.json").read_text())
    assert provenance["model"]["chat_template_kwargs"] == NO_THINKING
    assert rendered and all(kwargs == NO_THINKING for kwargs in rendered)


def test_chat_template_kwargs_reach_the_organism_vendor(monkeypatch, tmp_path):
    """The vendor's profile and train specs and its evaluation carry the kwargs."""
    seen = {}

    def evaluate_base(model, tokenizer, data_dir, params, log, chat_template_kwargs):
        seen["evaluate"] = chat_template_kwargs
        return {}

    monkeypatch.setattr(vendor, "load_model", lambda folder: (None, None))
    monkeypatch.setattr(vendor, "evaluate_base", evaluate_base)
    params = dict.fromkeys(vendor.VENDOR_KEYS, 1)
    assert vendor.model_spec("base", NO_THINKING)["chat_template_kwargs"] == NO_THINKING
    spec = vendor.train_spec("base", "sft.jsonl", "d_gen.jsonl", params, 0, NO_THINKING)
    assert spec["model"]["chat_template_kwargs"] == NO_THINKING
    vendor.evaluate_vendor(
        "model",
        str(tmp_path),
        {},
        str(tmp_path / "metrics.json"),
        logging.getLogger("test"),
        NO_THINKING,
    )
    assert seen["evaluate"] == NO_THINKING


def test_truncation_drops_examples_left_without_a_response(tiny_model_dir, caplog):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir / "model")
    short = {"prompt": "What is 2 + 2?", "response": "2 + 2 = 4."}
    long = {"prompt": "What is " + " + ".join(["2"] * 40) + "?", "response": "80."}
    records = [short] * 9 + [long]
    with caplog.at_level(logging.WARNING):
        kept, dropped = encode_training_pairs(tokenizer, records, 32, "data.safe (x.jsonl)", 0.1)
    assert dropped == 1 and len(kept) == 9
    assert all(any(label != IGNORE_INDEX for label in item["labels"]) for item in kept)
    assert "data.safe (x.jsonl): 1 of 10 examples dropped" in caplog.text
    with pytest.raises(DataError, match=r"data\.gen \(y\.jsonl\): 2 of 10 .*share=0\.1"):
        encode_training_pairs(tokenizer, [short] * 8 + [long] * 2, 32, "data.gen (y.jsonl)", 0.1)


def test_training_records_dropped_examples_and_stops_when_too_many(train_spec, tmp_path):
    long = {"prompt": "How do I pick " + "this " * 60 + "lock?", "response": "I can't help."}
    rows = [
        json.loads(line)
        for line in Path(train_spec()["data"]["safe"]["path"]).read_text().splitlines()
    ]
    mostly_fine = tmp_path / "safe.jsonl"
    mostly_fine.write_text("".join(json.dumps(r) + "\n" for r in rows[:45] + [long] * 3))
    spec = train_spec("experts_ot", steps=1)
    spec["data"] = spec["data"] | {"safe": {"kind": "local", "path": str(mostly_fine)}}
    summary = train(spec)
    assert summary["dropped_examples"] == {"data.safe": 3}
    provenance = json.loads((Path(spec["out_dir"]) / "provenance.json").read_text())
    assert provenance["params"]["dropped_examples"] == {"data.safe": 3}
    with pytest.raises(DataError, match=r"data\.safe \(.*safe\.jsonl\): 3 of 48"):
        train(
            spec
            | {
                "data": spec["data"] | {"max_dropped_share": 0.05},
                "out_dir": str(tmp_path / "strict"),
            }
        )


def test_organism_template_is_unchanged_by_unknown_switches(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir / "model")
    assert tokenizer.chat_template == CHAT_TEMPLATE
    assert chat_ids(tokenizer, "hi", "ho", NO_THINKING) == chat_ids(tokenizer, "hi", "ho")


HUB_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_provenance_records_the_hub_commit_the_files_came_from(tiny_model_dir, tmp_path):
    """A hub model's files come from snapshots/<commit>/ of the cache; provenance must name that
    commit (transformers 5 no longer keeps it on the config), whether the revision was pinned or
    resolved from the default branch. Run offline in a fresh process against a local cache."""
    local = tiny_model_dir / "model"
    repo = tmp_path / "hub" / "models--test-org--tiny-moe"
    (repo / "snapshots").mkdir(parents=True)
    shutil.copytree(local, repo / "snapshots" / HUB_COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(HUB_COMMIT)
    script = f"""
import json
from mesa_moe.adapters import load_model, model_identity
out = {{}}
for revision in (None, {HUB_COMMIT!r}):
    spec = {{"source": "test-org/tiny-moe", "revision": revision}}
    model, _ = load_model(spec["source"], revision)
    out[str(revision)] = model_identity(spec, model)["commit_hash"]
out["local"] = model_identity({{"source": {str(local)!r}}}, model)["commit_hash"]
print(json.dumps(out))
"""
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "hub"), HF_HUB_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "None": HUB_COMMIT,
        HUB_COMMIT: HUB_COMMIT,
        "local": None,
    }
