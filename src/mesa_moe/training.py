"""Joint training (docs/method.md §4–5): L_SFT(D_safe) + γ · L_OT, for MESA and every baseline.

One optimiser step sees one D_safe batch (SFT loss and, for OT methods, the safety flow) and one
D_gen batch (general flow only; forward without SFT loss). Batches are a pure function of
(seed, step), so a run resumed from a checkpoint sees exactly the batches it would have seen.
Runs on one CPU, one GPU, or several GPUs through `accelerate` (launch with
`accelerate launch -m mesa_moe.training SPEC.json`; each process takes its share of a batch).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import resource
import shlex
import shutil
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, DistributedType, set_seed
from tqdm.auto import tqdm
from transformers import AutoConfig

from .adapters import (
    adapter_for,
    check_expert_dropout,
    expert_dropout,
    load_model,
    model_identity,
    routers_in_their_own_precision,
)
from .artifacts import atomic_path, write_json, write_provenance
from .data import collate, encode_training_pairs, load_pairs
from .logs import setup_logging
from .losses import (
    BaseForwardReference,
    RouterTap,
    check_safety_flow_tokens,
    online_costs,
    response_tokens,
    routing_loss,
    safety_flow_mask,
    sft_loss,
)
from .methods import get_method
from .reporting import plot_loss_curve
from .schedule import warmup_cosine
from .trainable import (
    make_trainable,
    merge_trainable,
    selected_by_layer,
    trained_router_parameters,
)

log = logging.getLogger(__name__)
LR_FLOOR = 0.1  # the cosine decays to 10 % of the peak learning rate
LOG_COLUMNS = ["step", "loss", "sft", "ot_safe", "ot_gen", "lr", "tokens", "seconds"]
# Settings a spec may leave out (a run from before they existed): these values are that run.
OPTIONAL_SETTINGS = {"safety_flow_tokens": "all", "router_lr_scale": 1.0, "expert_dropout": 0.0}
CHECKPOINT_KEYS = frozenset({"step", "trainable", "optimizer", "scheduler", "rows", "fingerprint"})


# Every path a training run writes: the spec's `paths` names each of them.
RUN_FILES = {
    "model": "model",
    "log": "train_log.csv",
    "curve": "loss_curve.png",
    "summary": "summary.json",
    "provenance": "provenance.json",
    "spec": "spec.json",
    "checkpoints": "checkpoints",
}


def run_paths(out_dir: str | os.PathLike) -> dict[str, str]:
    """The conventional layout of a run in one folder (for runs started by hand or in tests)."""
    return {key: str(Path(out_dir) / name) for key, name in RUN_FILES.items()}


def spec_paths(spec: dict) -> dict[str, Path]:
    """The spec's `paths` (all of RUN_FILES), or the layout of its `out_dir`."""
    paths = spec.get("paths") or run_paths(spec["out_dir"])
    missing = sorted(set(RUN_FILES) - set(paths))
    if missing:
        raise ValueError(f"training spec paths lack {missing}")
    return {key: Path(paths[key]) for key in RUN_FILES}


def step_batch(num_rows: int, batch_size: int, step: int, seed: int) -> list[int]:
    """Row indices of a step's global batch: epoch-wise seeded permutations, a pure function of
    step. `batch_size` is the global batch; with several processes each takes its share of these
    rows, so the rows a step sees do not depend on the number of processes."""
    per_epoch = max(1, num_rows // batch_size)
    epoch, position = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(num_rows)
    return order[position * batch_size : (position + 1) * batch_size].tolist()


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad
    }


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    return sum(
        t.numel() * t.element_size()
        for state in optimizer.state.values()
        for t in state.values()
        if torch.is_tensor(t)
    )


def run_fingerprint(spec: dict, parameters: list[torch.Tensor]) -> str:
    """What a checkpoint must match to be resumed: the spec (less where it is written and when it
    stops) and the starting values of the trainable tensors (base model and selection)."""
    settings = {k: v for k, v in spec.items() if k not in ("out_dir", "paths", "stop_after")}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    with torch.no_grad():
        for p in parameters:
            digest.update(
                f"{tuple(p.shape)}:{p.double().sum().item():.12e}:{p.double().abs().sum().item():.12e}".encode()
            )
    return digest.hexdigest()


class Checkpoints:
    """Trainable tensors, optimiser, scheduler and log rows every N steps; the last two kept.

    Resuming takes the newest checkpoint that loads and belongs to this run. One that does not
    load (a truncated or damaged file) is renamed to `step-N.pt.corrupt`, named in the log, and
    the next older one is tried; those of another run (other spec, selection or base model: a
    re-run with new settings) are deleted with a log line, so a run starts afresh rather than
    mixing two runs' state.
    """

    def __init__(self, folder: Path):
        self.folder = folder

    def _by_step(self) -> list[Path]:
        return sorted(self.folder.glob("step-*.pt"), key=lambda p: int(p.stem.split("-")[1]))

    def save(
        self, step: int, model, optimizer, scheduler, rows: list[dict], fingerprint: str
    ) -> None:
        state = {
            "step": step,
            "trainable": trainable_state(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rows": rows,
            "fingerprint": fingerprint,
        }
        with atomic_path(self.folder / f"step-{step}.pt") as tmp:
            torch.save(state, tmp)
        for old in self._by_step()[:-2]:
            old.unlink()

    @staticmethod
    def _read(path: Path) -> dict:
        """The checkpoint's contents; ValueError naming the file when it does not load."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
            raise ValueError(f"{type(error).__name__}: {error}") from error
        missing = CHECKPOINT_KEYS - set(state) if isinstance(state, dict) else CHECKPOINT_KEYS
        if missing:
            raise ValueError(f"not a training checkpoint (missing {sorted(missing)})")
        return state

    def resume(
        self, model, optimizer, scheduler, fingerprint: str, tidy: bool = True
    ) -> tuple[int, list[dict]]:
        """Load the newest usable checkpoint into model, optimizer and scheduler; return its step
        and log rows, or (0, []) when there is none. Only with `tidy` (one process of a
        multi-process run) are unusable checkpoints renamed or deleted."""
        for path in reversed(self._by_step()):
            try:
                state = self._read(path)
            except ValueError as error:
                corrupt = path.with_name(path.name + ".corrupt")
                log.warning(
                    "checkpoint %s does not load (%s); %s, trying an older one",
                    path,
                    str(error)[:300],
                    f"moved to {corrupt.name}" if tidy else "skipped",
                )
                if tidy:
                    path.replace(corrupt)
                continue
            if state["fingerprint"] != fingerprint:
                self._discard_stale(tidy)
                return 0, []
            self._load(state, model, optimizer, scheduler)
            log.info("resuming from %s at step %d", path, state["step"])
            return state["step"], state["rows"]
        return 0, []

    def _discard_stale(self, tidy: bool) -> None:
        stale = self._by_step()
        log.warning(
            "%s holds checkpoints of another run (other spec, selection or base model): "
            "%s; starting afresh%s",
            self.folder,
            ", ".join(path.name for path in stale),
            ", deleted them" if tidy else "",
        )
        if tidy:
            for path in stale:
                path.unlink(missing_ok=True)

    @staticmethod
    def _load(state: dict, model, optimizer, scheduler) -> None:
        parameters = dict(model.named_parameters())
        with torch.no_grad():
            for name, tensor in state["trainable"].items():
                parameters[name].copy_(tensor)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])


def train(spec: dict) -> dict:
    """Run one training job described by `spec` (see `workflow/scripts/train.py`); return its
    summary.

    spec keys: method, model {source, revision, dtype, chat_template_kwargs}, selection
    (experts.parquet path or None), data {safe, gen, max_length, max_dropped_share}, training
    {steps, batch_size, lr, weight_decay, warmup, grad_clip, gamma, epsilon, reference,
    online_cost, checkpoint_every, log_every, mixed_precision, and optionally
    safety_flow_tokens, router_lr_scale, expert_dropout: see OPTIONAL_SETTINGS}, seed, paths
    (every file it writes, see RUN_FILES; or out_dir, a folder laid out as `run_paths`), and
    optionally stop_after (end the process after that step: used to test resuming).
    """
    method = get_method(spec["method"])
    cfg = OPTIONAL_SETTINGS | spec["training"]
    check_optional_settings(cfg)
    paths = spec_paths(spec)
    mixed = cfg.get("mixed_precision", "auto")
    if mixed == "auto":
        mixed = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    accelerator = Accelerator(
        mixed_precision=mixed,
        cpu=not torch.cuda.is_available(),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    if accelerator.distributed_type in SHARDED:  # e.g. from an accelerate config file
        raise ValueError(
            f"training runs under {accelerator.distributed_type.value}: sharded training is not "
            "supported (check_launcher_args); launch with --multi_gpu (DDP) or one process"
        )
    set_seed(spec["seed"])

    safe = load_pairs(spec["data"]["safe"], "data.safe", spec["seed"])
    gen = load_pairs(spec["data"]["gen"], "data.gen", spec["seed"]) if method.ot_loss else []
    device = "cpu" if accelerator.device.type == "cpu" else str(accelerator.device)
    if cfg["expert_dropout"]:  # from config.json, before the weights load
        source = spec["model"]["source"]
        config = AutoConfig.from_pretrained(source, revision=spec["model"].get("revision"))
        check_expert_dropout(config.model_type, "training.expert_dropout")
    model, tokenizer = load_model(
        spec["model"]["source"],
        spec["model"].get("revision"),
        spec["model"].get("dtype") or "float32",
        device,
    )
    model.config.output_router_logits = False  # the model's own load-balancing loss stays off
    adapter = adapter_for(model)
    selection = pd.read_parquet(spec["selection"]) if method.selector else None
    selected = selected_by_layer(selection, adapter) if selection is not None else None
    dropped, encoded = {}, {}
    for name, records in (("safe", safe), ("gen", gen)):
        if records:
            encoded[name], dropped[f"data.{name}"] = encode_training_pairs(
                tokenizer,
                records,
                spec["data"]["max_length"],
                f"data.{name} ({spec['data'][name]['path']})",
                spec["data"].get("max_dropped_share", 0.1),
                spec["model"].get("chat_template_kwargs"),
            )
    safe_ids, gen_ids = encoded["safe"], encoded.get("gen", [])

    reference = (
        BaseForwardReference(adapter, adapter_for)
        if method.ot_loss and cfg["reference"] == "base_forward"
        else None
    )
    if method.train_all_experts:  # trained in place, as fused tensors (see mesa_moe.trainable)
        experts_to_train = {
            layer: list(range(adapter.num_experts)) for layer in adapter.layer_indices
        }
    else:
        experts_to_train = selected if method.train_experts else None
    parameters = make_trainable(
        adapter, experts_to_train, method.train_routers, method.train_everything
    )
    tap = RouterTap(adapter) if method.ot_loss else None
    costs = None
    if method.ot_loss:
        offline = (
            {
                layer: torch.tensor(rows.sort_values("expert").cost.to_numpy(), dtype=torch.float32)
                for layer, rows in selection.groupby("layer")
            }
            if cfg["online_cost"] == "global"
            else None
        )
        costs = online_costs(adapter, selected, cfg["online_cost"], offline)

    optimizer = torch.optim.AdamW(
        parameter_groups(parameters, trained_router_parameters(adapter), cfg),
        lr=cfg["lr"],
        weight_decay=cfg["weight_decay"],
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, cfg["warmup"], cfg["steps"], LR_FLOOR)
    )
    checkpoints = Checkpoints(paths["checkpoints"])
    fingerprint = run_fingerprint(spec, parameters)
    start, rows = checkpoints.resume(
        model, optimizer, scheduler, fingerprint, tidy=accelerator.is_main_process
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    n_trainable = sum(p.numel() for p in parameters)
    log.info(
        "%s: %d trainable parameters (%.2f%% of %d), %d steps from step %d, %d process(es)",
        spec["method"],
        n_trainable,
        100 * n_trainable / sum(p.numel() for p in model.parameters()),
        sum(p.numel() for p in model.parameters()),
        cfg["steps"],
        start,
        accelerator.num_processes,
    )

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rank, world = accelerator.process_index, accelerator.num_processes
    if cfg["batch_size"] % world:
        raise ValueError(
            f"training.batch_size={cfg['batch_size']} is the global batch: it must be "
            f"a multiple of the number of processes ({world})"
        )

    def batch_for(encoded: list[dict], step: int, salt: int) -> dict:
        rows_ = step_batch(len(encoded), cfg["batch_size"], step, spec["seed"] + salt)
        batch = collate([encoded[i] for i in rows_[rank::world]], pad_id)
        return {k: v.to(accelerator.device) for k, v in batch.items()}

    def across_processes(values: list, reduction: str) -> torch.Tensor:
        local = torch.tensor([float(v) for v in values], device=accelerator.device)
        return accelerator.reduce(local, reduction) if world > 1 else local

    def share_of_global(local_tokens: torch.Tensor) -> torch.Tensor | None:
        """What a process divides its summed loss by: the global token count over the number of
        processes (DDP averages their gradients); None, one process: its own count."""
        return across_processes([local_tokens], "sum")[0] / world if world > 1 else None

    # Drops are a function of (seed, step, process), so a resumed run drops what it would have
    # dropped (unlike the batches, they change with the number of processes).
    drops = torch.Generator(device=accelerator.device)
    model.train()
    clock = time.time()
    progress = tqdm(
        range(start, cfg["steps"]),
        desc=f"train {spec['method']}",
        unit="step",
        disable=not accelerator.is_main_process,
        file=sys.stderr,
    )
    with (
        expert_dropout(adapter, cfg["expert_dropout"], drops, "training.expert_dropout"),
        routers_in_their_own_precision(adapter),
        routers_in_their_own_precision(reference.tap.adapter) if reference else nullcontext(),
    ):
        for step in progress:
            drops.manual_seed(hash((spec["seed"], step, rank)) % 2**63)
            terms = {"sft": 0.0, "ot_safe": 0.0, "ot_gen": 0.0}
            if method.ot_loss:
                # The general flow goes first and without gradient sync: DDP finds the parameters
                # in use from a forward's outputs, and this loss comes from the router logits
                # alone.
                gen_batch = batch_for(gen_ids, step, 1)
                with accelerator.no_sync(model), accelerator.autocast():
                    model(
                        input_ids=gen_batch["input_ids"],
                        attention_mask=gen_batch["attention_mask"],
                        logits_to_keep=1,
                    )
                    refs = (
                        reference(gen_batch["input_ids"], gen_batch["attention_mask"])
                        if reference
                        else None
                    )
                    ot_gen = routing_loss(
                        tap,
                        gen_batch["attention_mask"],
                        refs,
                        None,
                        cfg["epsilon"],
                        share_of_global(gen_batch["attention_mask"].sum()),
                    )
                    accelerator.backward(cfg["gamma"] * ot_gen)
                terms["ot_gen"] = ot_gen.item()
            safe_batch = batch_for(safe_ids, step, 0)
            with accelerator.autocast():
                output = model(
                    input_ids=safe_batch["input_ids"], attention_mask=safe_batch["attention_mask"]
                )
                loss = sft_loss(
                    output.logits,
                    safe_batch["labels"],
                    share_of_global(response_tokens(safe_batch["labels"])),
                )
                terms["sft"] = loss.item()
                if method.ot_loss:
                    refs = (
                        reference(safe_batch["input_ids"], safe_batch["attention_mask"])
                        if reference
                        else None
                    )
                    tokens = safety_flow_mask(
                        safe_batch["attention_mask"],
                        safe_batch["labels"],
                        cfg["safety_flow_tokens"],
                    )
                    ot_safe = routing_loss(
                        tap, tokens, refs, costs, cfg["epsilon"], share_of_global(tokens.sum())
                    )
                    terms["ot_safe"] = ot_safe.item()
                    loss = loss + cfg["gamma"] * ot_safe
            accelerator.backward(loss)
            if cfg["grad_clip"]:
                accelerator.clip_grad_norm_(parameters, cfg["grad_clip"])
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if world > 1:  # each process holds its share of the global means: their mean
                terms = dict(zip(terms, across_processes(list(terms.values()), "mean").tolist()))
            total = terms["sft"] + cfg["gamma"] * (terms["ot_safe"] + terms["ot_gen"])
            rows.append(
                {
                    "step": step + 1,
                    "loss": total,
                    **terms,
                    # group 0: training.lr, never the router group
                    "lr": scheduler.get_last_lr()[0],
                    "tokens": int(across_processes([safe_batch["attention_mask"].sum()], "sum")),
                    "seconds": time.time() - clock,
                }
            )
            progress.set_postfix(loss=f"{total:.4f}")
            if (step + 1) % cfg["log_every"] == 0:
                log.info(
                    "step %d: %s", step + 1, " ".join(f"{k}={v:.4f}" for k, v in terms.items())
                )
            if accelerator.is_main_process and ((step + 1) % cfg["checkpoint_every"] == 0):
                checkpoints.save(
                    step + 1,
                    accelerator.unwrap_model(model),
                    optimizer,
                    scheduler,
                    rows,
                    fingerprint,
                )
            if spec.get("stop_after") == step + 1:
                log.warning("stopping after step %d as asked (stop_after)", step + 1)
                return {"stopped_at": step + 1}

    accelerator.wait_for_everyone()
    summary = {}
    if accelerator.is_main_process:
        model = accelerator.unwrap_model(model)
        summary = {
            "method": spec["method"],
            "steps": cfg["steps"],
            "trainable_parameters": n_trainable,
            "optimizer_state_bytes": optimizer_state_bytes(optimizer),
            "seconds": time.time() - clock,
            "processes": world,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "final_loss": rows[-1]["loss"] if rows else None,
            "dropped_examples": dropped,
        }
        if tap is not None:
            tap.remove()
        save_trained(model, tokenizer, adapter, paths["model"])
        write_log(rows, paths["log"], paths["curve"])
        write_json(summary, paths["summary"])
        params = {k: v for k, v in spec.items() if k not in ("out_dir", "paths")}
        write_provenance(
            paths["provenance"],
            "train",
            params | {"dropped_examples": dropped},
            spec["seed"],
            model_identity(spec["model"], model),
        )
        # Checkpoints only serve to resume an interrupted run; the finished run needs none.
        shutil.rmtree(paths["checkpoints"], ignore_errors=True)
        log.info("done: %s", json.dumps(summary))
    return summary


def check_optional_settings(cfg: dict) -> None:
    """A clear error naming the key before any model loads."""
    check_safety_flow_tokens(cfg["safety_flow_tokens"])
    p = cfg["expert_dropout"]
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p < 1:
        raise ValueError(f"training.expert_dropout must be a number in [0, 1), got {p!r}")
    scale = cfg["router_lr_scale"]
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not scale > 0:
        raise ValueError(f"training.router_lr_scale must be a number > 0, got {scale!r}")


def parameter_groups(
    parameters: list[torch.Tensor], routers: list[torch.Tensor], cfg: dict
) -> list[dict]:
    """AdamW's parameter groups: the routers' tensors at lr × training.router_lr_scale, the rest
    at lr (one schedule scales both). Group 0 is always at lr, even when empty (router_only).
    At scale 1 one group, as in runs from before the setting (so their checkpoints resume)."""
    router_ids = {id(tensor) for tensor in routers}
    in_routers = [p for p in parameters if id(p) in router_ids]
    if cfg["router_lr_scale"] == 1.0 or not in_routers:
        return [{"params": parameters, "lr": cfg["lr"]}]
    return [
        {"params": [p for p in parameters if id(p) not in router_ids], "lr": cfg["lr"]},
        {"params": in_routers, "lr": cfg["lr"] * cfg["router_lr_scale"]},
    ]


def save_trained(model, tokenizer, adapter, path: Path) -> None:
    """Merge trained experts into the fused tensors and save an ordinary transformers checkpoint."""
    merge_trainable(adapter)
    model.requires_grad_(False)
    with atomic_path(path) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


def write_log(rows: list[dict], log_path: Path, curve_path: Path) -> None:
    table = pd.DataFrame(rows, columns=LOG_COLUMNS)
    with atomic_path(log_path) as tmp:
        table.to_csv(tmp, index=False)
    plot_loss_curve(table, curve_path)


# accelerate's modes that shard the model over the processes, and the launch flags that ask for
# them (or set them up)
SHARDED = (DistributedType.FSDP, DistributedType.DEEPSPEED, DistributedType.MEGATRON_LM)
SHARDING_FLAGS = (
    "--use_fsdp",
    "--use_deepspeed",
    "--use_megatron_lm",
    "--fsdp_",
    "--deepspeed",
    "--zero",
)


def check_launcher_args(launcher_args: str) -> list[str]:
    """The extra `accelerate launch` flags, split; sharded training is refused by name.

    Every process trains a full replica (DDP) and the first one saves the trained slices and
    routers from its own replica. Under FSDP or DeepSpeed ZeRO a process holds only its shards,
    and the float32 masters of the trained slices share flat parameters with bfloat16 frozen
    weights: nothing here gathers them, and it has never run on GPUs, so it is refused rather
    than risk a checkpoint of one process's shards."""
    extra = shlex.split(launcher_args)
    sharding = [flag for flag in extra if flag.startswith(SHARDING_FLAGS)]
    if sharding:
        raise ValueError(
            f"training.launcher_args: {sharding} asks for sharded training, which is not "
            "supported: each process trains a full replica (DDP) and the trained experts are "
            "saved from the first one's (docs/method.md §4.6); use training.gpus alone"
        )
    return extra


def launch(spec: dict, processes: int = 1, launcher_args: str = "") -> None:
    """Train in this process, or under `accelerate launch` with `processes` processes (GPUs).

    The spec is written beside the run (spec.json) so a launched job, or a person, can re-run it.
    Several processes start through accelerate's torchrun path (`--multi_gpu`, DDP), which also
    runs on CPU-only machines (gloo); `launcher_args` adds other accelerate flags (not sharding:
    `check_launcher_args`).
    """
    extra = check_launcher_args(launcher_args)
    spec_path = spec_paths(spec)["spec"]
    write_json(spec, spec_path)
    if processes == 1:
        train(spec)
        return
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        *extra,
        "-m",
        "mesa_moe.training",
        str(spec_path),
    ]
    log.info("launching: %s", shlex.join(command))
    # The processes' output goes through this one's stderr, so it reaches the job's log too.
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True) as launched:
        for line in launched.stderr:
            sys.stderr.write(line)
    if launched.returncode:
        raise subprocess.CalledProcessError(launched.returncode, command)


def main(argv: list[str] | None = None) -> None:
    """`accelerate launch -m mesa_moe.training SPEC.json [LOG]`."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        raise SystemExit("usage: python -m mesa_moe.training SPEC.json [LOG_FILE]")
    main_process = os.environ.get("RANK", "0") == "0"  # set by accelerate launch / torchrun
    setup_logging(args[1] if len(args) > 1 and main_process else None)
    train(json.loads(Path(args[0]).read_text()))


if __name__ == "__main__":
    main()
