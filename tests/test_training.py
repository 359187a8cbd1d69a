import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from mesa_moe.adapters import ArchitectureError, adapter_for, load_model
from mesa_moe.data import DataError
from mesa_moe.losses import RouterTap, kl_divergence, routing_loss, safety_target
from mesa_moe.methods import METHODS
from mesa_moe.trainable import SelectionError, make_trainable
from mesa_moe.training import check_launcher_args, launch, save_trained, train

SELECTED = {0: [1, 4], 2: [1, 4]}


EXPERT_KEY = re.compile(r"model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.")


def weights(folder) -> dict[str, torch.Tensor]:
    """The saved tensors (transformers saves fused experts as one tensor per expert)."""
    return load_file(Path(folder) / "model.safetensors")


def test_mesa_trains_only_selected_experts_and_routers(tiny_model_dir, train_spec):
    spec = train_spec("mesa")
    train(spec)
    before, after = weights(tiny_model_dir / "model"), weights(Path(spec["out_dir"]) / "model")
    assert before.keys() == after.keys()
    for name, tensor in before.items():
        if name.endswith("mlp.gate.weight"):
            assert not torch.equal(tensor, after[name]), f"router {name} did not train"
        elif match := EXPERT_KEY.match(name):
            layer, expert = int(match[1]), int(match[2])
            if expert in SELECTED[layer]:
                assert not torch.equal(tensor, after[name]), f"{name} did not train"
            else:
                assert torch.equal(tensor, after[name]), f"{name}: a frozen expert moved"
        else:  # embeddings, attention, norms, the dense layer, lm_head
            assert torch.equal(tensor, after[name]), f"{name} changed"


def test_optimizer_state_holds_only_trainable_tensors(train_spec):
    spec = train_spec("mesa", steps=2)
    summary = train(spec)
    # per MoE layer: 2 selected experts x (gate_up [16, 16] + down [16, 8]) + router [6, 16]
    trainable = 2 * (2 * (16 * 16 + 16 * 8) + 6 * 16)
    assert summary["trainable_parameters"] == trainable
    tensors = 2 * 3  # two MoE layers x (gate_up, down, router)
    adam = 2 * trainable * 4 + tensors * 4  # exp_avg + exp_avg_sq (fp32) + a step counter each
    assert summary["optimizer_state_bytes"] == adam
    full_experts = 2 * 6 * (16 * 16 + 16 * 8) * 2 * 4  # what a [E, ...] state would hold
    assert summary["optimizer_state_bytes"] < full_experts


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_what_it_should(train_spec, method):
    summary = train(train_spec(method, steps=2))
    expert = 16 * 16 + 16 * 8
    router = 6 * 16
    expected = {
        "mesa": 2 * (2 * expert + router),
        "experts_cmax": 2 * (2 * expert + router),
        "experts_cmid": 2 * (2 * expert + router),
        "experts_random": 2 * (2 * expert + router),
        "experts_safe_top": 2 * (2 * expert + router),
        "experts_ot": 2 * 2 * expert,
        "router_only": 2 * router,
        "experts_all": 2 * (6 * expert + router),
    }
    if method == "sft_full":
        model = AutoModelForCausalLM.from_pretrained(Path(train_spec()["model"]["source"]))
        assert summary["trainable_parameters"] == sum(p.numel() for p in model.parameters())
    else:
        assert summary["trainable_parameters"] == expected[method]
    log = pd.read_csv(Path(train_spec(method)["out_dir"]) / "train_log.csv")
    assert (log.ot_safe > 0).all() == METHODS[method].ot_loss
    assert (Path(train_spec(method)["out_dir"]) / "loss_curve.png").stat().st_size > 0


def test_saved_model_reloads_with_plain_transformers(tiny_model_dir, tmp_path):
    model, tokenizer = load_model(str(tiny_model_dir / "model"))
    adapter = adapter_for(model)
    for parameter in make_trainable(adapter, SELECTED, train_routers=True):
        with torch.no_grad():
            parameter.add_(torch.randn_like(parameter) * 0.5)
    input_ids = torch.randint(0, len(tokenizer), (2, 12))
    with torch.no_grad():
        in_memory = model(input_ids).logits
    save_trained(model, tokenizer, adapter, tmp_path / "saved")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "saved")  # no project code
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids).logits, in_memory, rtol=1e-5, atol=1e-5)


def test_safety_target_matches_an_independent_computation():
    rng = np.random.default_rng(0)
    reference = rng.dirichlet(np.ones(6), size=5)
    cost = np.array([0, 1, 1, 0, 1, 1.0])
    epsilon = 0.3
    expected = reference * np.exp(-cost / epsilon)
    expected /= expected.sum(axis=1, keepdims=True)
    got = safety_target(torch.tensor(reference), torch.tensor(cost), epsilon)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)

    # it solves min <π, C> + ε KL(π ‖ P_ref): no random point of the simplex does better
    def objective(pi):
        return (pi * cost).sum(-1) + epsilon * (pi * np.log(pi / reference)).sum(-1)

    for _ in range(200):
        other = rng.dirichlet(np.ones(6), size=5)
        assert np.all(objective(got.numpy()) <= objective(other) + 1e-12)


def test_kl_is_zero_when_router_equals_reference(tiny_model_dir):
    model, tokenizer = load_model(str(tiny_model_dir / "model"))
    adapter = adapter_for(model)
    tap = RouterTap(adapter)
    input_ids = torch.randint(0, len(tokenizer), (2, 10))
    mask = torch.ones_like(input_ids)
    mask[1, 6:] = 0
    model(input_ids=input_ids, attention_mask=mask)
    general = routing_loss(tap, mask, None, None, 0.1)
    no_cost = {layer: torch.zeros(6) for layer in adapter.layer_indices}
    safety = routing_loss(tap, mask, None, no_cost, 0.1)
    assert general.item() == pytest.approx(0.0, abs=1e-6)
    assert safety.item() == pytest.approx(0.0, abs=1e-6)
    with_cost = {layer: torch.tensor([0, 1, 1, 1, 1, 1.0]) for layer in adapter.layer_indices}
    assert routing_loss(tap, mask, None, with_cost, 0.1).item() > 0.01
    p = torch.tensor([[0.5, 0.5, 0.0]])
    assert kl_divergence(p, torch.log(torch.tensor([[0.25, 0.25, 0.5]])))[0] == pytest.approx(
        np.log(2)
    )


@pytest.mark.parametrize("dropout", [0.0, 0.3])  # the drops, too, are a function of the step
def test_interrupted_run_resumes_from_its_last_checkpoint(train_spec, tmp_path, dropout):
    spec = train_spec("mesa", steps=6, checkpoint_every=2, expert_dropout=dropout)
    assert train(spec | {"stop_after": 5}) == {"stopped_at": 5}
    assert sorted(p.name for p in (Path(spec["out_dir"]) / "checkpoints").glob("*.pt")) == [
        "step-2.pt",
        "step-4.pt",
    ]
    assert not (Path(spec["out_dir"]) / "model").exists()
    train(spec)  # picks up at step 4
    log = pd.read_csv(Path(spec["out_dir"]) / "train_log.csv")
    assert log.step.tolist() == [1, 2, 3, 4, 5, 6]
    straight = spec | {"out_dir": str(tmp_path / "straight")}
    train(straight)
    resumed, uninterrupted = (
        weights(Path(spec["out_dir"]) / "model"),
        weights(tmp_path / "straight" / "model"),
    )
    for name in resumed:
        torch.testing.assert_close(resumed[name], uninterrupted[name], rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        log.loss, pd.read_csv(tmp_path / "straight" / "train_log.csv").loss, rtol=1e-5
    )


def test_base_forward_reference_trains(train_spec):
    summary = train(train_spec("mesa", steps=2, reference="base_forward", online_cost="global"))
    assert summary["final_loss"] > 0


# Each of two processes divides its summed losses by the global token count over 2, so DDP's
# mean of their gradients is the whole batch's: one and two processes agree up to float32
# summation order (a per-process batch is off by 2e-2).
PROCESS_COUNT_ATOL = 1e-6


def test_two_processes_train_the_same_model_as_one_with_the_same_global_batch(train_spec, tmp_path):
    spec = train_spec("mesa", steps=2, batch_size=4)
    one = spec | {"out_dir": str(tmp_path / "one")}
    two = spec | {"out_dir": str(tmp_path / "two")}
    train(one)
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(two))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        # `--cpu` alone starts one process unless MPI is set up; the torchrun path (`--multi_gpu`)
        # starts two and, with no GPU, accelerate runs them on the CPU over gloo.
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "-m",
            "mesa_moe.training",
            str(spec_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["processes"] == 2
    single, double = weights(tmp_path / "one" / "model"), weights(tmp_path / "two" / "model")
    base = weights(Path(spec["model"]["source"]))
    moved = [name for name in base if not torch.equal(base[name], single[name])]
    assert moved  # the comparison below is between trained models, not two copies of the base
    for name in single:
        torch.testing.assert_close(double[name], single[name], rtol=0, atol=PROCESS_COUNT_ATOL)
    # the same global batch, and the log holds the global batch's losses and tokens, not
    # the first process's share
    logs = {n: pd.read_csv(tmp_path / n / "train_log.csv") for n in ("one", "two")}
    np.testing.assert_array_equal(logs["two"].tokens, logs["one"].tokens)
    for column in ("sft", "ot_safe", "ot_gen"):
        np.testing.assert_allclose(logs["two"][column], logs["one"][column], rtol=1e-5)


def test_sharded_training_is_refused_before_anything_runs(train_spec, tmp_path):
    spec = train_spec("mesa") | {"out_dir": str(tmp_path / "run")}
    for args in ("--use_fsdp", "--use_deepspeed --zero_stage 3", "--fsdp_offload_params=true"):
        with pytest.raises(ValueError, match="training.launcher_args: .* asks for sharded"):
            launch(spec, 2, args)
    assert not (tmp_path / "run").exists()
    assert check_launcher_args("--main_process_port 29501") == ["--main_process_port", "29501"]


def test_training_under_a_sharded_accelerate_setup_is_refused(train_spec, monkeypatch):
    """An accelerate config file can ask for FSDP without any flag: train itself refuses it."""
    from accelerate.utils import DistributedType

    monkeypatch.setattr(
        "accelerate.Accelerator.distributed_type", property(lambda self: DistributedType.FSDP)
    )
    with pytest.raises(ValueError, match="training runs under FSDP: sharded training"):
        train(train_spec("mesa", steps=1))


def test_a_global_batch_that_processes_cannot_share_evenly_is_refused(train_spec, monkeypatch):
    monkeypatch.setattr("accelerate.Accelerator.num_processes", property(lambda self: 2))
    with pytest.raises(ValueError, match="training.batch_size=3 is the global batch"):
        train(train_spec("mesa", steps=1, batch_size=3))


def test_bad_inputs_fail_early(train_spec, tiny_model_dir, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    dense = tmp_path / "dense"
    LlamaForCausalLM(
        LlamaConfig(
            vocab_size=300,
            hidden_size=8,
            intermediate_size=16,
            num_hidden_layers=1,
            num_attention_heads=1,
        )
    ).save_pretrained(dense)
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(tiny_model_dir / "model").save_pretrained(dense)
    spec = train_spec("mesa")
    with pytest.raises(ArchitectureError, match="llama"):
        train(spec | {"model": {"source": str(dense)}})

    other = pd.read_parquet(tiny_model_dir / "experts.parquet")
    other = other[other.expert < 4]  # a selection made for a 4-expert model
    other.to_parquet(tmp_path / "other.parquet")
    with pytest.raises(SelectionError, match="another model shape"):
        train(spec | {"selection": str(tmp_path / "other.parquet")})

    (tmp_path / "bad.jsonl").write_text(json.dumps({"question": "hi", "answer": "ho"}) + "\n")
    bad = dict(spec["data"], safe={"kind": "local", "path": str(tmp_path / "bad.jsonl")})
    with pytest.raises(DataError, match="prompt='prompt'.*question"):
        train(spec | {"data": bad})


def test_bf16_model_trains_every_selected_slice_and_router_at_small_lr(train_spec, tiny_model_dir):
    """bfloat16 weights of scale 0.02 barely move under lr 1e-5 AdamW steps; float32 masters do."""
    spec = train_spec("mesa", steps=20, lr=1e-5, weight_decay=0.0, checkpoint_every=20)
    spec["model"] = spec["model"] | {"dtype": "bfloat16"}
    train(spec)
    before = AutoModelForCausalLM.from_pretrained(tiny_model_dir / "model", dtype=torch.bfloat16)
    after = AutoModelForCausalLM.from_pretrained(Path(spec["out_dir"]) / "model")
    assert after.dtype == torch.bfloat16  # saved in the model's own dtype
    moved = changed = 0
    for (name, old), new in zip(before.named_parameters(), after.parameters()):
        layer = int(name.split(".")[2]) if name.startswith("model.layers.") else None
        if name.endswith("mlp.gate.weight"):
            assert not torch.equal(old, new), f"router {name} did not train"
        elif ".mlp.experts." in name:
            for expert in range(old.shape[0]):
                if expert in SELECTED[layer]:
                    assert not torch.equal(old[expert], new[expert]), f"{name}[{expert}] still"
                    moved += int((old[expert] != new[expert]).sum())
                    changed += old[expert].numel()
                else:
                    assert torch.equal(old[expert], new[expert]), f"{name}[{expert}] moved"
        else:
            assert torch.equal(old, new), f"{name} changed"
    assert moved / changed > 0.5  # 86 % here; bfloat16 weights under bfloat16 AdamW: ~15 %


def test_trainable_tensors_are_float32_masters_of_a_bf16_model(tiny_model_dir):
    model, _ = load_model(str(tiny_model_dir / "model"), dtype="bfloat16")
    adapter = adapter_for(model)
    parameters = make_trainable(adapter, SELECTED, train_routers=True)
    assert parameters and all(p.dtype == torch.float32 for p in parameters)
    frozen = {name: p.clone() for name, p in model.named_parameters() if not p.requires_grad}
    assert all(p.dtype == torch.bfloat16 for p in frozen.values())
    start = [p.detach().clone() for p in parameters]
    optimizer = torch.optim.AdamW(parameters, lr=1e-5, weight_decay=0.0)
    input_ids = torch.randint(0, 200, (4, 16), generator=torch.Generator().manual_seed(0))
    for _ in range(20):
        model(input_ids=input_ids, labels=input_ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    for p, p0 in zip(parameters, start):  # every weight of every trainable tensor moved
        assert (p != p0).all(), tuple(p.shape)
    for name, p in model.named_parameters():
        if name in frozen:
            assert torch.equal(p, frozen[name]), name


def test_experts_all_trains_the_fused_tensors_in_place(tiny_model_dir):
    model, _ = load_model(str(tiny_model_dir / "model"))
    adapter = adapter_for(model)
    fused = {id(p) for layer in adapter.layers for p in layer.experts.parameters()}
    everything = {layer: list(range(adapter.num_experts)) for layer in adapter.layer_indices}
    parameters = make_trainable(adapter, everything, train_routers=True)
    routers = {id(layer.router.weight) for layer in adapter.layers}
    assert {id(p) for p in parameters} == fused | routers  # no copy of any expert
    assert all(type(layer.block.experts) is type(layer.experts) for layer in adapter.layers)


def test_experts_all_bytes_match_plain_fused_training(monkeypatch):
    import importlib.util
    from types import SimpleNamespace

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "trainable_memory.py"
    monkeypatch.syspath_prepend(str(path.parent))  # its sibling random_moe, as when run
    spec = importlib.util.spec_from_file_location("trainable_memory", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    shape = SimpleNamespace(experts=8, hidden=64, layers=2, steps=1)
    ratio = benchmark.total_bytes(benchmark.measure(shape, 8)) / benchmark.total_bytes(
        benchmark.plain_fused(shape)
    )
    assert ratio <= 1.05


def test_experts_all_of_a_bf16_model_trains_float32_masters_in_place(tiny_model_dir, tmp_path):
    model, tokenizer = load_model(str(tiny_model_dir / "model"), dtype="bfloat16")
    adapter = adapter_for(model)
    everything = {layer: list(range(adapter.num_experts)) for layer in adapter.layer_indices}
    parameters = make_trainable(adapter, everything, train_routers=True)
    assert all(p.dtype == torch.float32 for p in parameters) and len(parameters) == 3 * 2
    with torch.no_grad():
        for p in parameters:
            p.add_(1e-3)  # below bfloat16's resolution at 1.0, visible at the 0.02 scale
    save_trained(model, tokenizer, adapter, tmp_path / "saved")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    assert reloaded.dtype == torch.bfloat16
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir / "model", dtype=torch.bfloat16)
    assert not torch.equal(
        reloaded.model.layers[0].mlp.experts.gate_up_proj,
        original.model.layers[0].mlp.experts.gate_up_proj,
    )
    torch.testing.assert_close(
        reloaded.model.layers[1].mlp.down_proj.weight,
        original.model.layers[1].mlp.down_proj.weight,
        rtol=0,
        atol=0,
    )


@pytest.mark.parametrize("method", ["sft_full", "experts_all"])
def test_bf16_model_under_bf16_autocast_saves_in_its_dtype(
    train_spec, tiny_model_dir, method, fresh_accelerator_state
):
    spec = train_spec(method, steps=2, mixed_precision="bf16", lr=1e-2)
    spec["model"] = spec["model"] | {"dtype": "bfloat16"}
    train(spec)
    before = AutoModelForCausalLM.from_pretrained(tiny_model_dir / "model", dtype=torch.bfloat16)
    after = AutoModelForCausalLM.from_pretrained(Path(spec["out_dir"]) / "model")
    assert {p.dtype for p in after.parameters()} == {torch.bfloat16}
    embeddings = before.model.embed_tokens.weight, after.model.embed_tokens.weight
    routers = before.model.layers[0].mlp.gate.weight, after.model.layers[0].mlp.gate.weight
    assert not torch.equal(*routers)
    assert torch.equal(*embeddings) == (method != "sft_full")


def test_device_map_loads_a_model_spread_by_accelerate(tiny_model_dir):
    model, tokenizer = load_model(
        str(tiny_model_dir / "model"), dtype="bfloat16", device_map="auto"
    )
    assert model.dtype == torch.bfloat16 and not model.training
    adapter_for(model)
    with torch.no_grad():
        assert model(torch.tensor([[1, 2, 3]])).logits.shape[-1] == model.config.vocab_size


class FirstStepGradients(Exception):
    """Raised by RecordingAdamW at the first optimiser step, carrying the gradients it saw."""


class RecordingAdamW(torch.optim.AdamW):
    def step(self, closure=None):
        raise FirstStepGradients(
            [
                p.grad.clone() if p.grad is not None else torch.zeros_like(p)
                for group in self.param_groups
                for p in group["params"]
            ]
        )


class OffReferenceTap(RouterTap):
    """A tap whose reference routers differ from the starting ones (as after some training), so
    that the general flow has a gradient at the first step."""

    def __init__(self, adapter):
        super().__init__(adapter)
        generator = torch.Generator().manual_seed(0)
        for weights in self.frozen_weights.values():
            for weight in weights:
                weight.add_(0.5 * torch.randn(weight.shape, generator=generator))


def first_step_gradients(monkeypatch, spec) -> list[torch.Tensor]:
    monkeypatch.setattr(torch.optim, "AdamW", RecordingAdamW)
    monkeypatch.setattr("mesa_moe.training.RouterTap", OffReferenceTap)
    with pytest.raises(FirstStepGradients) as recorded:
        train(spec)
    return recorded.value.args[0]


def test_gamma_weighs_both_flows_of_the_routing_loss(train_spec, monkeypatch, tiny_model_dir):
    """The first step's gradient is ∇L_SFT + γ (∇ safety flow + ∇ general flow), linear in γ;
    the general flow's data and the safety flow's online cost change it only through γ."""

    def gradients(gamma, gen="d_gen.jsonl", online_cost="selected"):
        spec = train_spec("mesa", steps=2, gamma=gamma, grad_clip=0, online_cost=online_cost)
        spec["data"]["gen"]["path"] = str(tiny_model_dir / gen)
        return first_step_gradients(monkeypatch, spec)

    def differ(a, b):
        return max((x - y).abs().max() for x, y in zip(a, b)) > 1e-4

    g0, g1, g2 = gradients(0.0), gradients(1.0), gradients(2.0)
    ot_term = [b - a for a, b in zip(g0, g1)]
    assert max(t.abs().max() for t in ot_term) > 1e-3
    for a, c, term in zip(g0, g2, ot_term):
        torch.testing.assert_close(c - a, 2 * term, rtol=1e-4, atol=1e-7)
    assert differ(g1, gradients(1.0, gen="d_safe.jsonl"))  # the general flow is in γ L_OT
    assert differ(g1, gradients(1.0, online_cost="global"))  # so is the safety flow
    # and at γ = 0 neither counts at all
    for other in (gradients(0.0, gen="d_safe.jsonl"), gradients(0.0, online_cost="global")):
        for a, b in zip(g0, other):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_safety_flow_tokens_reach_the_safety_flow(train_spec, monkeypatch):
    """`response` leaves the D_safe prompts out of the safety flow: another first-step gradient."""

    def gradients(tokens):
        spec = train_spec("mesa", steps=2, grad_clip=0, safety_flow_tokens=tokens)
        return first_step_gradients(monkeypatch, spec)

    every, response = gradients("all"), gradients("response")
    assert max((a - b).abs().max() for a, b in zip(every, response)) > 1e-4
    for a, b in zip(every, gradients("all")):  # and nothing else differs between two runs
        torch.testing.assert_close(a, b, rtol=0, atol=0)


ROUTER_KEY = re.compile(r"model\.layers\.\d+\.mlp\.gate\.weight")


@pytest.mark.parametrize("method", ["mesa", "router_only", "experts_all", "sft_full"])
def test_router_lr_scale_scales_the_router_updates_only(tiny_model_dir, train_spec, method):
    """One AdamW step moves a tensor by lr · (its decay + its Adam direction), the direction
    the same in both runs: the routers' change scales with router_lr_scale, nothing else's."""

    def changes(scale):
        spec = train_spec(method, steps=1, router_lr_scale=scale)
        spec["out_dir"] = f"{spec['out_dir']}-{scale}"
        train(spec)
        before, after = weights(tiny_model_dir / "model"), weights(Path(spec["out_dir"]) / "model")
        return {name: after[name] - before[name] for name in before}

    full, tenth = changes(1.0), changes(0.1)
    routers = [name for name in full if ROUTER_KEY.fullmatch(name)]
    assert len(routers) == 2
    for name, change in full.items():
        if name in routers:
            assert change.abs().max() > 1e-3, name
            torch.testing.assert_close(tenth[name], 0.1 * change, rtol=1e-3, atol=1e-6, msg=name)
        else:
            torch.testing.assert_close(tenth[name], change, rtol=1e-5, atol=1e-7, msg=name)
    others_train = any(change.abs().max() > 1e-3 for n, change in full.items() if n not in routers)
    assert others_train == (method != "router_only")


class GroupsSeen(Exception):
    """Raised by GroupRecordingAdamW at the first step, carrying its parameter groups."""


class GroupRecordingAdamW(torch.optim.AdamW):
    def step(self, closure=None):
        raise GroupsSeen([(group["lr"], list(group["params"])) for group in self.param_groups])


def test_router_lr_scale_trains_the_float32_router_masters(
    train_spec, monkeypatch, fresh_accelerator_state
):
    """In a bfloat16 model the routers train as float32 masters: those are the scaled group."""
    monkeypatch.setattr(torch.optim, "AdamW", GroupRecordingAdamW)
    spec = train_spec("mesa", steps=2, mixed_precision="bf16", router_lr_scale=0.25)
    spec["model"] = spec["model"] | {"dtype": "bfloat16"}
    with pytest.raises(GroupsSeen) as seen:
        train(spec)
    (lr, rest), (router_lr, routers) = seen.value.args[0]
    assert lr == pytest.approx(1e-2) and router_lr == pytest.approx(0.25e-2)
    assert [(p.dtype, tuple(p.shape)) for p in routers] == [(torch.float32, (6, 16))] * 2
    assert len(rest) == 2 * 2  # the selected experts' gate_up and down of both MoE layers
    assert all(p.dtype == torch.float32 and p.shape[0] == 2 for p in rest)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("router_lr_scale", 0, "router_lr_scale must be a number > 0, got 0"),
        ("router_lr_scale", "fast", "router_lr_scale must be a number > 0, got 'fast'"),
        ("safety_flow_tokens", "prompt", "safety_flow_tokens must be one of .* got 'prompt'"),
        ("expert_dropout", 1.0, r"expert_dropout must be a number in \[0, 1\), got 1.0"),
        ("expert_dropout", "0.1", r"expert_dropout must be a number in \[0, 1\), got '0.1'"),
    ],
)
def test_bad_training_knob_names_its_key(train_spec, key, value, message):
    with pytest.raises(ValueError, match=message):
        train(train_spec("mesa", **{key: value}))


@pytest.mark.parametrize("method", ["mesa", "experts_all", "sft_full"])
def test_expert_dropout_reroutes_training_tokens_every_method(train_spec, method):
    """With training.expert_dropout the same run trains to other weights (tokens went to other
    experts), and again to the same weights: the drops are seeded."""

    def trained(dropout, name):
        spec = train_spec(method, steps=3, expert_dropout=dropout)
        spec["out_dir"] = f"{spec['out_dir']}-{name}"
        train(spec)
        return weights(Path(spec["out_dir"]) / "model")

    plain, dropped, again = trained(0.0, "plain"), trained(0.3, "a"), trained(0.3, "b")
    assert any(not torch.equal(plain[name], dropped[name]) for name in plain)
    for name in plain:
        torch.testing.assert_close(again[name], dropped[name], rtol=0, atol=0)


def test_expert_dropout_on_another_routing_family_is_refused_before_the_weights_load(
    train_spec, tmp_path
):
    """The family comes from config.json alone: this folder has no weights to load."""
    from transformers import DeepseekV3Config

    DeepseekV3Config(n_routed_experts=8).save_pretrained(tmp_path / "v3")
    spec = train_spec("mesa", expert_dropout=0.1)
    spec["model"] = spec["model"] | {"source": str(tmp_path / "v3")}
    with pytest.raises(
        ArchitectureError, match="config key training.expert_dropout: .*'deepseek_v3'"
    ):
        train(spec)
