"""Model adapters: one small interface over the MoE architecture families of transformers ≥ 5.

In transformers 5 every supported family has the same skeleton: decoder layer `i` at
`model.model.layers[i]`, its MoE block at `.mlp` with a router (`.mlp.gate`; GPT-OSS: `.mlp.router`,
a `weight` of shape [E, hidden], GPT-OSS also a `bias`) returning `(router_logits [T, E],
top_k_weights [T, k], top_k_indices [T, k])` and the routed experts fused into 3-D tensors at
`.mlp.experts`, every parameter indexed by expert first (`gate_up_proj [E, 2I, H]`,
`down_proj [E, H, I]`; GPT-OSS transposed and interleaved, with per-expert biases). Dense layers
(DeepSeek's `first_k_dense_replace`, Qwen's `mlp_only_layers`) have no router and are skipped;
shared experts are never routed experts. The families differ in how router logits become the
routing distribution P(t) (docs/method.md §0).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn


class ArchitectureError(ValueError):
    """A model this project cannot treat as a (supported) MoE."""


@dataclass(frozen=True)
class MoELayer:
    index: int  # i of model.layers.i
    block: nn.Module  # the MoE block (router + experts [+ shared experts])
    router: nn.Module
    experts: nn.Module


class MoEAdapter:
    """Routing of a softmax-router MoE family: P(t) = softmax(router logits)."""

    family = "softmax_topk"
    router_name = "gate"  # the router's attribute in the MoE block
    router_parameters = ("weight",)  # what trains when routers train

    def __init__(self, model: nn.Module):
        self.model = model
        self.model_type = model.config.model_type
        layers = _decoder_layers(model)
        self.layers = [
            MoELayer(i, layer.mlp, getattr(layer.mlp, self.router_name), layer.mlp.experts)
            for i, layer in enumerate(layers)
            if _is_moe_block(getattr(layer, "mlp", None), self.router_name)
        ]
        if not self.layers:
            raise ArchitectureError(
                f"{self.model_type}: no MoE layer found (a dense model?); MESA needs routed experts"
            )
        router = self.layers[0].router
        self.num_experts = int(router.weight.shape[0])
        self.top_k = int(router.top_k)
        fused = self.layers[0].experts
        if not (hasattr(fused, "gate_up_proj") and fused.gate_up_proj.dim() == 3):
            raise ArchitectureError(
                f"{self.model_type}: experts are not fused 3-D tensors; "
                "transformers ≥ 5 is required"
            )

    @property
    def layer_indices(self) -> list[int]:
        return [layer.index for layer in self.layers]

    def routing_probs(self, router_logits: torch.Tensor) -> torch.Tensor:
        """P(t) [T, E] from router logits [T, E], in float32."""
        return torch.softmax(router_logits.float(), dim=-1)


class SigmoidMoEAdapter(MoEAdapter):
    """DeepSeek-V3-style sigmoid routers: P(t) = the sigmoid scores normalised to sum 1."""

    family = "sigmoid_topk"

    def routing_probs(self, router_logits: torch.Tensor) -> torch.Tensor:
        scores = torch.sigmoid(router_logits.float())
        return scores / scores.sum(dim=-1, keepdim=True)


class GptOssAdapter(MoEAdapter):
    """GPT-OSS: the router (`mlp.router`) has a bias and takes the top-k of its logits before a
    softmax over those k, which is the top-k of softmax(logits) too: P(t) = softmax(logits)."""

    router_name = "router"
    router_parameters = ("weight", "bias")


ADAPTERS: dict[str, type[MoEAdapter]] = {
    "qwen3_moe": MoEAdapter,
    "qwen2_moe": MoEAdapter,
    "olmoe": MoEAdapter,
    "mixtral": MoEAdapter,
    "deepseek_v2": MoEAdapter,
    "deepseek_v3": SigmoidMoEAdapter,
    "gpt_oss": GptOssAdapter,
}


def check_architecture(model_type: str) -> None:
    if model_type not in ADAPTERS:
        raise ArchitectureError(
            f"architecture {model_type!r} is not supported; supported MoE "
            f"families: {sorted(ADAPTERS)} (add one in mesa_moe/adapters.py)"
        )


# Families whose router is softmax, top-k, then (unless norm_topk_prob is off) renormalised top-k
# weights: the router `expert_dropout` re-implements with some experts dropped.
EXPERT_DROPOUT_FAMILIES = ("mixtral", "olmoe", "qwen2_moe", "qwen3_moe")


def check_expert_dropout(model_type: str, where: str) -> None:
    if model_type not in EXPERT_DROPOUT_FAMILIES:
        raise ArchitectureError(
            f"config key {where}: expert dropout re-implements the softmax top-k router of "
            f"{list(EXPERT_DROPOUT_FAMILIES)}; {model_type!r} routes otherwise (set it to 0)"
        )


@contextmanager
def expert_dropout(
    adapter: MoEAdapter, p: float, generator: torch.Generator, where: str = "expert_dropout"
) -> Iterator[None]:
    """While active, every router ignores each expert with probability `p`, per token: the
    expert's logit is pushed far below the others before the top-k, so the token goes to the next
    experts in its ranking. The router logits it returns (and so P(t) and L_OT) are the
    undropped ones. Trained this way, no expert is indispensable, as in a large MoE where masking
    a few of many experts leaves the model fluent (docs/organism.md §5.2). `generator` lives on
    the model's device; reseed it to make the drops a function of the step. `where`: the config
    key, for the error on a family routed otherwise."""
    if p == 0:
        yield
        return
    check_expert_dropout(adapter.model_type, where)
    with _router_forwards(
        adapter, lambda router: partial(_route_with_dropout, router, p, generator)
    ):
        yield


@contextmanager
def _router_forwards(adapter: MoEAdapter, make_forward) -> Iterator[None]:
    """While active, each router's forward is make_forward(router); then its own again."""
    routers = [layer.router for layer in adapter.layers]
    own = [vars(router).get("forward") for router in routers]  # e.g. accelerate's hooks
    for router in routers:
        router.forward = make_forward(router)
    try:
        yield
    finally:
        for router, forward in zip(routers, own):
            if forward is None:
                del router.forward  # the class's own forward again
            else:
                router.forward = forward


@contextmanager
def routers_in_their_own_precision(adapter: MoEAdapter) -> Iterator[None]:
    """While active, every router computes outside autocast, in the dtype of its own weight (as
    profiling and evaluation do, which run without autocast). Under bf16 mixed precision autocast
    would otherwise compute the DeepSeek-V2 and V3 routers, which transformers runs in float32,
    in bfloat16, and a few % of tokens would train through other experts than the model uses.
    Enter it inside `expert_dropout`, whose routing it wraps."""
    with _router_forwards(
        adapter, lambda router: partial(_route_without_autocast, router, router.forward)
    ):
        yield


def _route_without_autocast(router, forward, hidden_states, *args, **kwargs):
    with torch.autocast(hidden_states.device.type, enabled=False):
        return forward(hidden_states.to(router.weight.dtype), *args, **kwargs)


def _route_with_dropout(router, p: float, generator: torch.Generator, hidden_states):
    """transformers' softmax top-k router forward (Qwen3MoeTopKRouter.forward and the same in
    EXPERT_DROPOUT_FAMILIES) on logits where the dropped experts lose 1e4 (not -inf: a token whose
    experts are all dropped still gets finite weights)."""
    hidden_states = hidden_states.reshape(-1, router.hidden_dim)
    logits = torch.nn.functional.linear(hidden_states, router.weight)
    dropped = torch.rand(logits.shape, generator=generator, device=generator.device) < p
    probs = torch.softmax(logits.float() - 1e4 * dropped.to(logits.device), dim=-1)
    top_weights, top_indices = torch.topk(probs, router.top_k, dim=-1)
    if not hasattr(router, "norm_topk_prob"):  # Mixtral: renormalised, kept in float32
        return logits, top_weights / top_weights.sum(dim=-1, keepdim=True), top_indices
    if router.norm_topk_prob:
        top_weights = top_weights / top_weights.sum(dim=-1, keepdim=True)
    return logits, top_weights.to(logits.dtype), top_indices


def adapter_for(model: nn.Module) -> MoEAdapter:
    model_type = getattr(model.config, "model_type", type(model).__name__)
    check_architecture(model_type)
    return ADAPTERS[model_type](model)


def _decoder_layers(model: nn.Module) -> nn.ModuleList:
    base = getattr(model, "model", model)
    layers = getattr(base, "layers", None)
    if layers is None:
        raise ArchitectureError(f"{type(model).__name__}: no `model.layers`; not a decoder LM")
    return layers


def _is_moe_block(mlp: nn.Module | None, router_name: str) -> bool:
    router = getattr(mlp, router_name, None)
    return hasattr(mlp, "experts") and hasattr(router, "weight") and hasattr(router, "top_k")


def load_model(
    source: str,
    revision: str | None = None,
    dtype: str = "float32",
    device: str | torch.device = "cpu",
    device_map: str | dict | None = None,
):
    """Model and tokenizer from a local folder or a hub id, with grouped-mm experts on CPU.

    device_map (e.g. "auto") spreads a model that does not fit one device over all of them
    (accelerate's big-model loading); `device` is then unused.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    # The architecture is checked from the config alone, before any weights are read.
    check_architecture(AutoConfig.from_pretrained(source, revision=revision).model_type)
    if not hasattr(torch, dtype) or not isinstance(getattr(torch, dtype), torch.dtype):
        raise ValueError(f"model.dtype: {dtype!r} is not a torch dtype (float32, bfloat16, …)")
    kwargs = {"revision": revision, "dtype": getattr(torch, dtype)}
    if device_map is None and str(device) == "cpu":
        kwargs["experts_implementation"] = "grouped_mm"
    if device_map is not None:
        model = AutoModelForCausalLM.from_pretrained(source, device_map=device_map, **kwargs)
    else:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs).to(device)
    tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
    return model.eval(), tokenizer


def load_from_spec(spec: dict):
    """load_model with a model spec's settings ({source, revision, dtype, device, device_map})."""
    return load_model(
        spec["source"],
        spec.get("revision"),
        spec.get("dtype") or "float32",
        spec.get("device") or "cpu",
        spec.get("device_map"),
    )


def hub_commit(source: str, revision: str | None) -> str | None:
    """The commit of the hub snapshot a model's files were read from (None for a local folder).

    transformers 5 no longer keeps it on the config (`_commit_hash`), so it is read from the path
    of the cached config.json: the cache stores each commit under snapshots/<commit>/. With
    `revision` unset every stage resolves the hub's default branch when it runs, and this is
    the only record of which state it read."""
    if Path(source).exists():
        return None
    from transformers.utils.hub import cached_file, extract_commit_hash

    return extract_commit_hash(cached_file(source, "config.json", revision=revision), None)


def model_identity(spec: dict, model) -> dict:
    """What a downstream artifact records about the model it came from: where it was loaded from,
    how, the hub commit its files came from, and with which chat-template switches."""
    return {
        "source": spec["source"],
        "revision": spec.get("revision"),
        "dtype": spec.get("dtype") or "float32",
        "chat_template_kwargs": spec.get("chat_template_kwargs") or {},
        "model_type": model.config.model_type,
        "commit_hash": hub_commit(spec["source"], spec.get("revision")),
    }
