"""Train only the selected experts of fused MoE layers, with memory that scales with w, not E.

transformers ≥ 5 stores a layer's E routed experts as 3-D tensors ([E, 2I, H], [E, H, I]), so
`requires_grad` cannot be set per expert, and a gradient mask on the full tensor would still
allocate [E, …] gradients and Adam moments (and AdamW's weight decay would move frozen experts).
Instead each MoE layer's experts module is wrapped:

    out = frozen(h, top_k, weights with selected slots zeroed)       # the original [E, …] tensors
        + trainable(h[pairs], remapped index, selected slot weights)  # w-expert copy, [w, …] params

The trainable copy is the same experts class (so the configured kernel, e.g. grouped_mm, runs
it), holding only the w selected experts' parameters. On save they are written back into the
fused tensors and the wrapper is removed: the checkpoint is an ordinary transformers model.
A layer whose every expert trains is not wrapped: its fused tensors train in place (no copy, no
frozen pass).

Precision: every trainable tensor is float32 (master weights). In a model loaded in a lower
precision (bfloat16) a trainable tensor becomes a float32 parameter seen through a cast to the
model's dtype, so the forward computes as the frozen model does while AdamW's small updates
accumulate in float32 (in bfloat16, lr 1e-5 steps on weights of scale 0.02 mostly round away).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import pandas as pd
import torch
from torch import nn
from torch.nn.utils import parametrize

from .adapters import MoEAdapter


class SelectionError(ValueError):
    """An expert selection that does not fit the model it is applied to."""


class SelectedExperts(nn.Module):
    """Stands in for one layer's fused experts module: frozen [E, …] + trainable [w, …]."""

    def __init__(self, experts: nn.Module, selected: Iterable[int]):
        super().__init__()
        num_experts = int(experts.num_experts)
        selected = sorted(int(e) for e in selected)
        if not selected or selected[0] < 0 or selected[-1] >= num_experts:
            raise SelectionError(f"selected experts {selected} out of range 0..{num_experts - 1}")
        self.frozen = experts
        for parameter in experts.parameters():
            parameter.requires_grad_(False)
        self.trainable = _expert_subset(experts, selected)
        for name, _ in experts.named_parameters(recurse=False):
            train_in_float32(self.trainable, name)
        self.register_buffer("selected", torch.tensor(selected), persistent=False)
        position = torch.full((num_experts,), -1, dtype=torch.long)
        position[self.selected] = torch.arange(len(selected))
        self.register_buffer("position", position, persistent=False)

    def forward(
        self, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor
    ) -> torch.Tensor:
        """hidden_states [T, H], top_k_index [T, k], top_k_weights [T, k] → [T, H]."""
        slot_position = self.position[top_k_index]  # [T, k], -1 if frozen
        is_trainable = slot_position >= 0
        out = self.frozen(hidden_states, top_k_index, top_k_weights.masked_fill(is_trainable, 0.0))
        token, slot = is_trainable.nonzero(as_tuple=True)  # the (token, slot) pairs
        if token.numel() == 0:
            return out
        routed = self.trainable(
            hidden_states[token], slot_position[token, slot, None], top_k_weights[token, slot, None]
        )  # [P, H]
        return out.index_add(0, token, routed.to(out.dtype))

    @torch.no_grad()
    def merged(self) -> nn.Module:
        """The original experts module with the trained experts written back into it."""
        for name, fused in self.frozen.named_parameters(recurse=False):
            fused[self.selected] = getattr(self.trainable, name).to(fused.dtype)
        return self.frozen


def _expert_subset(experts: nn.Module, selected: list[int]) -> nn.Module:
    """A module of the experts' class holding copies of the selected experts' parameters only."""
    subset = copy.copy(experts)  # shares submodules (activation) and config, not parameters
    subset._parameters = {}
    subset._buffers = dict(experts._buffers)
    subset._modules = dict(experts._modules)
    index = torch.tensor(selected, device=next(experts.parameters()).device)
    for name, parameter in experts.named_parameters(recurse=False):
        if parameter.shape[0] != experts.num_experts:
            raise SelectionError(
                f"{type(experts).__name__}.{name} is not indexed by expert "
                f"(shape {tuple(parameter.shape)}); cannot slice it"
            )
        subset.register_parameter(name, nn.Parameter(parameter.detach()[index].clone()))
    subset.num_experts = len(selected)
    return subset


class CastTo(nn.Module):
    """Parametrization: a float32 master tensor, seen by the model in the dtype it computes in."""

    def __init__(self, dtype: torch.dtype):
        super().__init__()
        self.dtype = dtype

    def forward(self, master: torch.Tensor) -> torch.Tensor:
        return master.to(self.dtype)


def train_in_float32(module: nn.Module, name: str, masters: dict | None = None) -> nn.Parameter:
    """Make `module.<name>` trainable with a float32 master; returns the parameter that trains.

    masters: {id(parameter): (parameter, master)} shared across calls, so a tensor that several
    modules hold (tied embeddings) gets one master and stays tied.
    """
    parameter = getattr(module, name)
    if parameter.dtype != torch.float32:
        masters = {} if masters is None else masters
        if id(parameter) not in masters:
            masters[id(parameter)] = (parameter, nn.Parameter(parameter.detach().float()))
        setattr(module, name, masters[id(parameter)][1])
        parametrize.register_parametrization(module, name, CastTo(parameter.dtype), unsafe=True)
        parameter = module.parametrizations[name].original
    parameter.requires_grad_(True)
    return parameter


def drop_float32_masters(model: nn.Module) -> None:
    """Every float32 master becomes a plain parameter again, in the dtype the model computes in."""
    for module in model.modules():
        if not parametrize.is_parametrized(module):
            continue
        for name in list(module.parametrizations):
            value = getattr(module, name).detach()
            parametrize.remove_parametrizations(module, name, leave_parametrized=False)
            setattr(module, name, nn.Parameter(value, requires_grad=False))


def selected_by_layer(experts: pd.DataFrame, adapter: MoEAdapter) -> dict[int, list[int]]:
    """{layer: [expert, …]} from an experts.parquet table, checked against the model's shape."""
    missing = {"layer", "expert", "selected"} - set(experts.columns)
    if missing:
        raise SelectionError(f"selection table lacks columns {sorted(missing)}")
    shape = experts.groupby("layer").expert.agg(["count", "max"])
    model_layers = set(adapter.layer_indices)
    if (
        set(shape.index) != model_layers
        or (shape["count"] != adapter.num_experts).any()
        or (shape["max"] >= adapter.num_experts).any()
    ):
        raise SelectionError(
            f"selection is for another model shape: layers {sorted(shape.index)} with up to "
            f"{int(shape['count'].max())} experts, but {adapter.model_type} has MoE layers "
            f"{sorted(model_layers)} with {adapter.num_experts} experts"
        )
    chosen = experts[experts.selected]
    return {
        layer: sorted(chosen[chosen.layer == layer].expert.astype(int).tolist())
        for layer in adapter.layer_indices
    }


def make_trainable(
    adapter: MoEAdapter,
    selected: dict[int, list[int]] | None,
    train_routers: bool,
    train_everything: bool = False,
) -> list[nn.Parameter]:
    """Freeze the model, then open what trains; returns the trainable parameters.

    selected: {layer: experts} to train in each MoE layer (None or empty lists: no experts).
    train_everything: every parameter trains (the full-SFT baseline); no wrapping.
    """
    model = adapter.model
    if train_everything:
        masters: dict = {}
        for module in list(model.modules()):
            for name, parameter in list(module._parameters.items()):
                if parameter is not None:
                    train_in_float32(module, name, masters)
        return list(model.parameters())
    model.requires_grad_(False)
    for layer in adapter.layers:
        if train_routers:
            for name in adapter.router_parameters:
                train_in_float32(layer.router, name)
        chosen = sorted(set((selected or {}).get(layer.index, [])))
        if chosen == list(range(adapter.num_experts)):
            for name in [name for name, _ in layer.experts.named_parameters(recurse=False)]:
                train_in_float32(layer.experts, name)
        elif chosen:
            layer.block.experts = SelectedExperts(layer.experts, chosen)
    return [p for p in model.parameters() if p.requires_grad]


def trained_router_parameters(adapter: MoEAdapter) -> list[nn.Parameter]:
    """The routers' tensors that train (their float32 masters where the model computes in a lower
    precision); empty when the routers are frozen."""
    found = []
    for layer in adapter.layers:
        for name in adapter.router_parameters:
            if parametrize.is_parametrized(layer.router, name):
                tensor = layer.router.parametrizations[name].original
            else:
                tensor = getattr(layer.router, name)
            if tensor.requires_grad:
                found.append(tensor)
    return found


def merge_trainable(adapter: MoEAdapter) -> None:
    """Write trained experts back into the fused tensors, drop the wrappers and the float32
    masters (before saving): the model is again an ordinary one, in its own dtype."""
    for layer in adapter.layers:
        if isinstance(layer.block.experts, SelectedExperts):
            layer.block.experts = layer.block.experts.merged()
    drop_float32_masters(adapter.model)
