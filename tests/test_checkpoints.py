"""Resuming training: a damaged checkpoint falls back to an older one; another run's are dropped."""

import logging
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file

from mesa_moe.training import train


def checkpoint_names(spec) -> list[str]:
    return sorted(path.name for path in (Path(spec["out_dir"]) / "checkpoints").iterdir())


def trained_weights(spec) -> dict[str, torch.Tensor]:
    return load_file(Path(spec["out_dir"]) / "model" / "model.safetensors")


def assert_same_weights(spec, other):
    ours, theirs = trained_weights(spec), trained_weights(other)
    assert ours.keys() == theirs.keys()
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], rtol=0, atol=1e-6)


def test_a_corrupt_checkpoint_falls_back_to_the_newest_that_loads(train_spec, tmp_path, caplog):
    spec = train_spec("mesa", steps=6, checkpoint_every=2)
    train(spec | {"stop_after": 5})
    folder = Path(spec["out_dir"]) / "checkpoints"
    newest = folder / "step-4.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # a write cut short
    with caplog.at_level(logging.INFO, logger="mesa_moe.training"):
        train(spec | {"stop_after": 5})
    assert f"checkpoint {newest} does not load" in caplog.text
    assert f"resuming from {folder / 'step-2.pt'} at step 2" in caplog.text
    assert "step-4.pt.corrupt" in checkpoint_names(spec)
    train(spec)
    assert not folder.exists()  # a finished run keeps no resume state
    log = pd.read_csv(Path(spec["out_dir"]) / "train_log.csv")
    assert log.step.tolist() == [1, 2, 3, 4, 5, 6]
    straight = spec | {"out_dir": str(tmp_path / "straight")}
    train(straight)
    assert_same_weights(spec, straight)


def test_when_no_checkpoint_loads_the_run_starts_afresh(train_spec, caplog):
    spec = train_spec("mesa", steps=4, checkpoint_every=2)
    train(spec | {"stop_after": 3})
    folder = Path(spec["out_dir"]) / "checkpoints"
    (folder / "step-2.pt").write_bytes(b"not a checkpoint")
    with caplog.at_level(logging.INFO, logger="mesa_moe.training"):
        train(spec)
    assert f"checkpoint {folder / 'step-2.pt'} does not load" in caplog.text
    assert "resuming" not in caplog.text
    assert pd.read_csv(Path(spec["out_dir"]) / "train_log.csv").step.tolist() == [1, 2, 3, 4]


def test_a_rerun_with_new_settings_drops_the_old_checkpoints_and_starts_afresh(
    train_spec, tmp_path, caplog
):
    spec = train_spec("mesa", steps=6, checkpoint_every=2)
    train(spec | {"stop_after": 4})
    assert checkpoint_names(spec) == ["step-2.pt", "step-4.pt"]
    rerun = spec | {"training": spec["training"] | {"lr": 5e-3}}
    with caplog.at_level(logging.INFO, logger="mesa_moe.training"):
        train(rerun | {"stop_after": 3})
    assert "holds checkpoints of another run" in caplog.text and "step-4.pt" in caplog.text
    assert "resuming" not in caplog.text
    assert checkpoint_names(rerun) == ["step-2.pt"]  # the new run's: none of the old is left
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mesa_moe.training"):
        train(rerun)
    assert "resuming from" in caplog.text and "another run" not in caplog.text
    assert pd.read_csv(Path(rerun["out_dir"]) / "train_log.csv").step.tolist() == [1, 2, 3, 4, 5, 6]
    fresh = rerun | {"out_dir": str(tmp_path / "fresh")}
    train(fresh)
    assert_same_weights(rerun, fresh)
