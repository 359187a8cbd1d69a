import sys
from pathlib import Path

import pytest
import torch
import yaml

from mesa_moe.adapters import load_model
from mesa_moe.config import ConfigError, validate_config
from mesa_moe.data import chat_ids
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


def test_generation_stops_on_every_stop_token_of_the_generation_config(tiny):
    """A model's generation config may list several stop tokens (Qwen3: <|im_end|> and
    <|endoftext|>); the tokenizer's eos must not replace them."""
    model, tokenizer = tiny
    prompt = ["What is 2 + 3?"]
    with torch.no_grad():  # the greedy answer's first token
        first = int(model(torch.tensor([chat_ids(tokenizer, prompt[0])[0]])).logits[0, -1].argmax())
    free = generate(model, tokenizer, prompt, 12, 1)[0]
    assert first != tokenizer.eos_token_id and free != tokenizer.decode([first]).strip()
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, first]
    try:
        stopped = generate(model, tokenizer, prompt, 12, 1)[0]
    finally:
        model.generation_config.eos_token_id = tokenizer.eos_token_id
    assert stopped == tokenizer.decode([first]).strip()
