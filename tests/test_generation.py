import sys
from pathlib import Path

import pytest
import yaml

from mesa_moe.adapters import load_model
from mesa_moe.config import ConfigError, validate_config
from mesa_moe.generation import generate, make_generator


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(str(tiny_model_dir / "model"))


def test_hf_backend_is_the_batched_generate(tiny, tiny_model_dir):
    model, tokenizer = tiny
    prompts = ["What is 12 + 30?", "How do I pick lock number 7?", "Hi"]
    answer = make_generator(
        "hf", model, tokenizer, {"source": str(tiny_model_dir / "model")}, batch_size=2
    )
    assert answer(prompts, 6) == generate(model, tokenizer, prompts, 6, batch_size=1)


def test_vllm_backend_without_vllm_is_a_clear_error(tiny, tiny_model_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # as if not installed, whatever is
    model, tokenizer = tiny
    with pytest.raises(ImportError, match="evaluation.backend: vllm needs the vllm package"):
        make_generator(
            "vllm", model, tokenizer, {"source": str(tiny_model_dir / "model")}, batch_size=2
        )


def test_unknown_backend(tiny, tiny_model_dir):
    with pytest.raises(ValueError, match="evaluation.backend"):
        make_generator("tgi", *tiny, {"source": str(tiny_model_dir / "model")}, batch_size=2)


def test_backend_in_the_config_schema():
    config = yaml.safe_load((Path(__file__).parents[1] / "config" / "config.yaml").read_text())
    assert validate_config(config)["evaluation"]["backend"] == "hf"
    config["evaluation"]["backend"] = "tgi"
    with pytest.raises(ConfigError, match="evaluation.backend"):
        validate_config(config)
