"""The training methods (docs/method.md §5): one definition read by the library and the rules.

Each method names the selection its experts come from, what trains, whether the OT routing loss
is added, and hence which run parameters name its run folders: `w` when it reads a selection,
`eps` when that selection is the OT plan or the OT loss uses ε, `gamma` when the OT loss is on.
`base` is the untrained model, evaluated as is.
"""

from __future__ import annotations

from dataclasses import dataclass

BASE = "base"


@dataclass(frozen=True)
class Method:
    """What a training method trains and optimises."""

    name: str
    selector: str | None  # which selection's experts train (and define C_ℓ); None: no selection
    train_experts: bool  # the selection's experts train (False: they only define C_ℓ)
    train_routers: bool
    ot_loss: bool  # L_SFT + γ·L_OT (False: L_SFT only)
    train_all_experts: bool = False  # every routed expert, whatever the selection
    train_everything: bool = False  # every parameter of the model

    @property
    def run_keys(self) -> tuple[str, ...]:
        """The run parameters (mesa_moe.runs keys) that name this method's run folders."""
        keys = ("w",) if self.selector else ()
        if self.selector == "ot" or self.ot_loss:
            keys += ("eps",)
        if self.ot_loss:
            keys += ("gamma",)
        return keys


METHODS: dict[str, Method] = {
    method.name: method
    for method in (
        Method("mesa", "ot", train_experts=True, train_routers=True, ot_loss=True),
        Method("experts_ot", "ot", train_experts=True, train_routers=False, ot_loss=False),
        Method("router_only", "ot", train_experts=False, train_routers=True, ot_loss=True),
        Method(
            "experts_all",
            None,
            train_experts=False,
            train_routers=True,
            ot_loss=False,
            train_all_experts=True,
        ),
        Method("experts_cmax", "cost_min", train_experts=True, train_routers=True, ot_loss=True),
        Method("experts_cmid", "cost_mid", train_experts=True, train_routers=True, ot_loss=True),
        # mesa with a random selection: what the OT selection adds over chance
        Method("experts_random", "random", train_experts=True, train_routers=True, ot_loss=True),
        # SafeX-like: the safety head and the routers, L_SFT only
        Method(
            "experts_safe_top", "safe_top", train_experts=True, train_routers=True, ot_loss=False
        ),
        Method(
            "sft_full",
            None,
            train_experts=False,
            train_routers=False,
            ot_loss=False,
            train_everything=True,
        ),
    )
}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"training method {name!r} is unknown; one of {sorted(METHODS)}")
    return METHODS[name]
