"""The routing attack (F-SOUR style) and safety-sparsity numbers (docs/method.md §6.4–6.5).

Routing attack: at inference, the m experts per MoE layer most selected on safe data are masked:
their router logits become −10⁹ before the router picks its top-k, and the router's own rule
(softmax or sigmoid, grouped top-k, normalisation, scaling) runs on the masked logits. A hook on
the returned logits would not change the experts already chosen. The mask enters through the
router's own linear map: the router sees [h, 1] and the weight [W | b] with b = −10⁹ on masked
rows and 0 elsewhere, so hWᵀ + b is computed by the unchanged router code of every family.

DeepSeek-V3 chooses on sigmoid(z) + e_score_correction_bias: a masked expert's sigmoid is 0 but
its bias would still compete, so the bias of masked experts is −10⁹ too (their choice score is
then far below any real one, and a group's top-2 sum counts only its unmasked experts). With
group-limited routing (DeepSeek-V2 `group_limited_greedy`, V3) a mask that could leave the chosen
groups fewer than top-k unmasked experts is refused, and during the attack a hook checks every
router's chosen indices: a masked expert chosen is an error, never a silent result.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..adapters import MoEAdapter

MASK_LOGIT = -1e9


class MaskedExpertChosen(RuntimeError):
    """A router chose an expert the routing attack masked."""


@contextlib.contextmanager
def masked_experts(adapter: MoEAdapter, masked: dict[int, list[int]]) -> Iterator[None]:
    """Within the block, the routers of `masked` {layer: experts} never select those experts."""
    undo = []
    try:
        for layer in adapter.layers:
            experts = sorted(set(masked.get(layer.index, [])))
            if not experts:
                continue
            router = layer.router
            _check_mask(router, experts, adapter, layer.index)
            weight = router.weight
            bias = torch.zeros(weight.shape[0], 1, dtype=weight.dtype, device=weight.device)
            bias[experts] = MASK_LOGIT
            hidden_dim = router.hidden_dim
            router.weight = nn.Parameter(
                torch.cat([weight.detach(), bias], dim=1), requires_grad=False
            )
            router.hidden_dim = weight.shape[1] + 1
            undo.append(functools.partial(_restore, router, weight, hidden_dim))
            correction = getattr(router, "e_score_correction_bias", None)
            if correction is not None:
                undo.append(functools.partial(correction.data.copy_, correction.detach().clone()))
                correction.data[experts] = MASK_LOGIT
            undo.append(router.register_forward_pre_hook(_append_one).remove)
            undo.append(router.register_forward_hook(_never_chooses(experts, layer.index)).remove)
        yield
    finally:
        for step in reversed(undo):
            step()


def _restore(router: nn.Module, weight: nn.Parameter, hidden_dim: int) -> None:
    router.weight = weight
    router.hidden_dim = hidden_dim


def _check_mask(router: nn.Module, experts: list[int], adapter: MoEAdapter, layer: int) -> None:
    """Refuse a mask after which the router could be left with masked experts to choose."""
    if len(experts) > adapter.num_experts - adapter.top_k:
        raise ValueError(
            f"masking {len(experts)} of {adapter.num_experts} experts leaves "
            f"fewer than top-k={adapter.top_k} in layer {layer}"
        )
    groups = _groups(router)
    if groups is None:
        return
    num_group, topk_group = groups
    unmasked = np.full(num_group, adapter.num_experts // num_group)
    for expert in experts:
        unmasked[expert // (adapter.num_experts // num_group)] -= 1
    # The router keeps topk_group groups; the worst case keeps those with the fewest left.
    if np.sort(unmasked)[:topk_group].sum() < adapter.top_k:
        raise ValueError(
            f"layer {layer}: masking experts {experts} can leave the "
            f"{topk_group} chosen of {num_group} expert groups fewer than "
            f"top-k={adapter.top_k} unmasked experts; mask fewer "
            "(evaluation.attack_m)"
        )


def _groups(router: nn.Module) -> tuple[int, int] | None:
    """(groups, groups kept) of a group-limited router, None for plain top-k."""
    if getattr(router, "topk_method", "group_limited_greedy") != "group_limited_greedy":
        return None  # DeepSeek-V2 `greedy`
    if getattr(router, "num_group", 1) <= 1:
        return None
    return int(router.num_group), int(router.topk_group)


def _append_one(module, args):
    hidden = args[0]
    one = torch.ones(*hidden.shape[:-1], 1, dtype=hidden.dtype, device=hidden.device)
    return (torch.cat([hidden, one], dim=-1), *args[1:])


def _never_chooses(experts: list[int], layer: int):
    def check(module, inputs, outputs):
        indices = outputs[2]
        if torch.isin(indices, torch.tensor(experts, device=indices.device)).any():
            raise MaskedExpertChosen(
                f"layer {layer}: the router chose a masked expert of {experts}"
            )

    return check


def top_safety_experts(activations: pd.DataFrame, m: int) -> dict[int, list[int]]:
    """{layer: the m experts most selected on safe data} from a profile's activation table."""
    safe = activations[activations.source == "safe"]
    return {
        int(layer): rows.nsmallest(m, "rank").expert.astype(int).tolist()
        for layer, rows in safe.groupby("layer")
    }


def safety_sparsity(activations: pd.DataFrame, top: tuple[int, ...] = (1, 2, 4)) -> pd.DataFrame:
    """Per layer: the share of safety routing held by the top-m experts, and the entropy (nats)
    of the safe-source frequencies (low entropy, high share: safety sits in few experts)."""
    rows = []
    for layer, group in activations[activations.source == "safe"].groupby("layer"):
        freq = np.sort(group.freq.to_numpy())[::-1]
        freq = freq / freq.sum()
        nonzero = freq[freq > 0]
        row = {
            "layer": int(layer),
            "entropy": float(-(nonzero * np.log(nonzero)).sum()),
            "max_entropy": float(np.log(len(freq))),
        }
        row.update({f"top{m}_share": float(freq[:m].sum()) for m in top})
        rows.append(row)
    return pd.DataFrame(rows)
