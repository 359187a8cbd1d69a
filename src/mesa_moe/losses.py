"""Training losses (docs/method.md §4): response-only SFT and the online OT routing loss.

Per MoE layer ℓ and real token t, with P_φ(t) the current routing and P_ref(t) the reference:
- safety flow (D_safe tokens): π*_safe(t) = argmin_π ⟨π, C_ℓ⟩ + ε KL(π ‖ P_ref(t)) over the simplex,
  i.e. π*_safe(t) ∝ P_ref(t) ⊙ exp(−C_ℓ / ε); loss KL(π*_safe(t) ‖ P_φ(t));
- general flow (D_gen tokens): C = 0, so π* = P_ref(t); loss KL(P_ref(t) ‖ P_φ(t)).
Each flow is the mean over its tokens and MoE layers; L_OT = safety flow + general flow. The
general flow takes every real token; the safety flow every real token (`all`) or only the response
tokens, those L_SFT learns (`response`: training.safety_flow_tokens).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from .adapters import MoEAdapter
from .data import IGNORE_INDEX

SAFETY_FLOW_TOKENS = ("all", "response")


def safety_flow_mask(
    attention_mask: torch.Tensor, labels: torch.Tensor, tokens: str
) -> torch.Tensor:
    """The D_safe tokens [B, S] the safety flow averages over: every real token (`all`) or only
    the response tokens (`response`: labels ≠ IGNORE_INDEX, those L_SFT learns)."""
    check_safety_flow_tokens(tokens)
    if tokens == "response":
        return attention_mask.bool() & (labels != IGNORE_INDEX)
    return attention_mask.bool()


def check_safety_flow_tokens(tokens: str) -> None:
    if tokens not in SAFETY_FLOW_TOKENS:
        raise ValueError(
            f"training.safety_flow_tokens must be one of {list(SAFETY_FLOW_TOKENS)}, got {tokens!r}"
        )


def sft_loss(
    logits: torch.Tensor, labels: torch.Tensor, count: torch.Tensor | None = None
) -> torch.Tensor:
    """Next-token cross-entropy over response tokens (labels ≠ IGNORE_INDEX); logits [B, S, V].

    The summed cross-entropy is divided by `count`, by default the batch's response tokens (its
    mean). Under data parallelism `training` passes the global count over processes divided by
    their number (`response_tokens` gives the local count), so that DDP's mean of the processes'
    gradients is the gradient of the global batch's mean, whatever the processes' shares."""
    shifted = labels[:, 1:]
    tokens = response_tokens(labels)
    if not tokens:
        raise ValueError("batch has no response tokens to learn from")
    summed = F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
        shifted.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    return summed / (tokens if count is None else count)


def response_tokens(labels: torch.Tensor) -> torch.Tensor:
    """The tokens `sft_loss` learns: labels [B, S] ≠ IGNORE_INDEX after the shift."""
    return (labels[:, 1:] != IGNORE_INDEX).sum()


def safety_target(
    reference: torch.Tensor, online_cost: torch.Tensor, epsilon: float
) -> torch.Tensor:
    """π*_safe [T, E] ∝ P_ref [T, E] ⊙ exp(−C [E] / ε), computed in the log domain."""
    return torch.softmax(torch.log(reference.clamp_min(1e-30)) - online_cost / epsilon, dim=-1)


def kl_divergence(target: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(target ‖ q) per row [T]; target [T, E] probabilities, log_q [T, E]; 0 · log 0 = 0."""
    return (torch.special.xlogy(target, target) - target * log_q).sum(dim=-1)


class RouterTap:
    """Keeps each MoE router's input and logits of the last forward, with their autograd graph.

    The reference routing of `frozen_router` is the original router weights applied to the same
    (current) router inputs, so the tap holds a frozen copy of every router's weight (and bias).
    """

    def __init__(self, adapter: MoEAdapter):
        self.adapter = adapter
        self.inputs: dict[int, torch.Tensor] = {}
        self.logits: dict[int, torch.Tensor] = {}
        self.frozen_weights = {
            layer.index: [
                getattr(layer.router, name).detach().clone() for name in adapter.router_parameters
            ]
            for layer in adapter.layers
        }
        self._handles = [
            layer.router.register_forward_hook(self._hook(layer.index)) for layer in adapter.layers
        ]

    def _hook(self, index: int):
        def keep(module, inputs, outputs):
            self.inputs[index] = inputs[0].reshape(-1, inputs[0].shape[-1])
            self.logits[index] = outputs[0]

        return keep

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()

    def routing(self, index: int) -> torch.Tensor:
        """log P_φ(t) [T, E] of the last forward."""
        return torch.log(self.adapter.routing_probs(self.logits[index]).clamp_min(1e-30))

    @torch.no_grad()
    def frozen_router_reference(self, index: int) -> torch.Tensor:
        """P_ref(t) [T, E]: the original router on the current hidden states (no gradient), in
        float32 even under autocast."""
        device = self.inputs[index].device
        frozen = [p.to(device).float() for p in self.frozen_weights[index]]
        with torch.autocast(device.type, enabled=False):
            return self.adapter.routing_probs(F.linear(self.inputs[index].float(), *frozen))


class BaseForwardReference:
    """P_ref from a forward pass of a frozen copy of the starting model (exact; twice the
    memory)."""

    def __init__(self, adapter: MoEAdapter, adapter_factory):
        self.model = copy.deepcopy(adapter.model).eval().requires_grad_(False)
        self.tap = RouterTap(adapter_factory(self.model))

    @torch.no_grad()
    def __call__(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> dict[int, torch.Tensor]:
        backbone = getattr(self.model, "model", self.model)
        backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        return {
            index: self.tap.adapter.routing_probs(logits)
            for index, logits in self.tap.logits.items()
        }


def routing_loss(
    tap: RouterTap,
    token_mask: torch.Tensor,
    references: dict[int, torch.Tensor] | None,
    online_cost: dict[int, torch.Tensor] | None,
    epsilon: float,
    count: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over MoE layers of the mean over the tokens of `token_mask` [B, S] (the real tokens,
    or the safety flow's `safety_flow_mask`) of KL(target ‖ P_φ).

    online_cost {layer: C [E]} gives the safety flow; None gives the general flow (target P_ref).
    references {layer: P_ref [T, E]} from a base forward, or None for the frozen-router reference.
    count: what each layer's summed KL is divided by instead of the batch's tokens (as in
    `sft_loss`).
    """
    counted = token_mask.reshape(-1).bool()
    per_layer = []
    for layer in tap.adapter.layers:
        reference = (
            references[layer.index]
            if references is not None
            else tap.frozen_router_reference(layer.index)
        )
        reference = reference[counted]
        target = (
            reference
            if online_cost is None
            else safety_target(reference, online_cost[layer.index].to(reference.device), epsilon)
        )
        summed = kl_divergence(target, tap.routing(layer.index)[counted]).sum()
        per_layer.append(summed / (counted.sum() if count is None else count))
    return torch.stack(per_layer).mean()


def online_costs(
    adapter: MoEAdapter,
    selected: dict[int, list[int]],
    mode: str,
    offline_cost: dict[int, torch.Tensor] | None = None,
) -> dict[int, torch.Tensor]:
    """C_ℓ [E] per layer: `selected`: 0 for selected experts and 1 for the rest; `global`: Ĉ."""
    if mode == "global":
        if offline_cost is None:
            raise ValueError("training.online_cost=global needs the selection's cost column")
        return offline_cost
    if mode != "selected":
        raise ValueError(f"training.online_cost must be 'selected' or 'global', got {mode!r}")
    costs = {}
    for layer in adapter.layers:
        cost = torch.ones(adapter.num_experts)
        cost[selected.get(layer.index, [])] = 0.0
        costs[layer.index] = cost
    return costs
