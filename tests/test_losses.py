"""Value tests of the training losses (docs/method.md §4), each against an independent computation:
numpy (float64) or hand-written torch from the model's own router weights, never the library's
helpers. The tiny model has MoE layers 0 and 2 (layer 1 is dense), 6 experts, top-2."""

import numpy as np
import pytest
import torch

from mesa_moe.adapters import adapter_for, load_model
from mesa_moe.data import IGNORE_INDEX, collate, encode_pairs
from mesa_moe.losses import (
    BaseForwardReference,
    RouterTap,
    online_costs,
    response_tokens,
    routing_loss,
    safety_flow_mask,
    safety_target,
    sft_loss,
)

MOE_LAYERS = (0, 2)
NUM_EXPERTS = 6
SELECTED = {0: [1, 4], 2: [2, 5]}
EPSILON = 0.3


def np_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def np_kl(p, q):
    """KL(p ‖ q) per row."""
    return (p * (np.log(p) - np.log(q))).sum(axis=-1)


def cost_vector(selected):
    cost = np.ones(NUM_EXPERTS)
    cost[selected] = 0.0
    return cost


def router(model, layer):
    return model.model.layers[layer].mlp.gate


@pytest.fixture
def moved(tiny_model_dir):
    """The tiny model with a RouterTap taken at the original weights, then every router moved
    away from them (as after some training), and the router inputs of each forward recorded by
    this test's own hooks (with their autograd graph)."""
    model, _ = load_model(str(tiny_model_dir / "model"))
    tap = RouterTap(adapter_for(model))
    original = {layer: router(model, layer).weight.detach().clone() for layer in MOE_LAYERS}
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in MOE_LAYERS:
            weight = router(model, layer).weight
            weight.add_(0.4 * torch.randn(weight.shape, generator=generator))
    inputs = {}
    for layer in MOE_LAYERS:
        router(model, layer).register_forward_hook(
            lambda module, args, out, index=layer: inputs.__setitem__(
                index, args[0].reshape(-1, args[0].shape[-1])
            )
        )
    return model, tap, original, inputs


def padded_batch(vocab_size):
    """Three rows: full, right-padded (4 pads), left-padded (3 pads): uneven real lengths."""
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(3, vocab_size, (3, 10), generator=generator)
    mask = torch.ones_like(input_ids)
    mask[1, 6:] = 0
    mask[2, :3] = 0
    return input_ids, mask


def expected_flow(inputs, original, current, mask, costs):
    """numpy: mean over MoE layers of the mean over real tokens of KL(target ‖ P_φ);
    target = P_ref (costs None) or P_ref ⊙ exp(−C/ε), normalised (safety flow)."""
    real = mask.reshape(-1).numpy().astype(bool)
    per_layer = []
    for layer in MOE_LAYERS:
        x = inputs[layer].detach().double().numpy()[real]
        reference = np_softmax(x @ original[layer].double().numpy().T)
        routing = np_softmax(x @ current[layer].detach().double().numpy().T)
        target = reference
        if costs is not None:
            target = reference * np.exp(-costs[layer] / EPSILON)
            target /= target.sum(axis=1, keepdims=True)
        per_layer.append(np_kl(target, routing).mean())
    return float(np.mean(per_layer))


def forward(model, input_ids, mask):
    return model(input_ids=input_ids, attention_mask=mask)


@pytest.mark.parametrize("flow", ["general", "safety"])
def test_routing_loss_equals_an_independent_computation(moved, flow):
    model, tap, original, inputs = moved
    input_ids, mask = padded_batch(model.config.vocab_size)
    forward(model, input_ids, mask)
    costs = (
        {layer: cost_vector(SELECTED[layer]) for layer in MOE_LAYERS} if flow == "safety" else None
    )
    got = routing_loss(
        tap,
        mask,
        None,
        None
        if costs is None
        else {k: torch.tensor(v, dtype=torch.float32) for k, v in costs.items()},
        EPSILON,
    )
    current = {layer: router(model, layer).weight for layer in MOE_LAYERS}
    expected = expected_flow(inputs, original, current, mask, costs)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert expected > 0.01  # routers were moved: a loss that ignored them would show here
    # padding tokens are not part of the mean, and the mean is over tokens, not rows
    with_padding = expected_flow(inputs, original, current, torch.ones_like(mask), costs)
    assert abs(with_padding - expected) > 1e-3 * expected
    one_row = [mask * (torch.arange(3) == row)[:, None] for row in range(3)]
    rows = np.mean([expected_flow(inputs, original, current, m, costs) for m in one_row])
    assert abs(rows - expected) > 1e-4 * expected


def test_safety_flow_target_moves_mass_onto_the_selected_experts():
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(20, NUM_EXPERTS, generator=generator, dtype=torch.float64)
    reference = torch.softmax(logits, dim=-1)
    cost = torch.tensor(cost_vector([1, 4]))
    for epsilon in (0.05, 0.3, 2.0):
        target = safety_target(reference, cost, epsilon)
        by_hand = reference.numpy() * np.exp(-cost.numpy() / epsilon)
        np.testing.assert_allclose(
            target.numpy(), by_hand / by_hand.sum(1, keepdims=True), rtol=1e-10
        )
        assert torch.all(target[:, [1, 4]].sum(1) > reference[:, [1, 4]].sum(1))
        # within the selected and within the unselected experts the reference's ratios stay
        ratios = target[:, 1] / target[:, 4], reference[:, 1] / reference[:, 4]
        torch.testing.assert_close(*ratios)
    # ε → 0: all mass on the selected experts; ε → ∞: the reference itself
    assert safety_target(reference, cost, 1e-3)[:, [1, 4]].sum(1).min() > 1 - 1e-12
    torch.testing.assert_close(safety_target(reference, cost, 1e6), reference, rtol=1e-5, atol=1e-7)


def test_a_step_down_the_safety_flow_routes_more_to_the_selected_experts(moved):
    model, tap, _, _ = moved
    input_ids, mask = padded_batch(model.config.vocab_size)
    costs = {
        layer: torch.tensor(cost_vector(SELECTED[layer]), dtype=torch.float32)
        for layer in MOE_LAYERS
    }

    def selected_share():
        with torch.no_grad():
            forward(model, input_ids, mask)
        real = mask.reshape(-1).bool()
        return {
            layer: torch.softmax(tap.logits[layer][real], -1)[:, SELECTED[layer]].sum(1).mean()
            for layer in MOE_LAYERS
        }

    before = selected_share()
    forward(model, input_ids, mask)
    routing_loss(tap, mask, None, costs, EPSILON).backward()
    with torch.no_grad():
        for layer in MOE_LAYERS:
            router(model, layer).weight.sub_(0.5 * router(model, layer).weight.grad)
    after = selected_share()
    for layer in MOE_LAYERS:
        assert after[layer] > before[layer] + 1e-3, layer


@pytest.mark.parametrize("flow", ["general", "safety"])
def test_routing_loss_gradient_flows_through_the_current_routing_only(moved, flow):
    """The target (P_ref, π*_safe) is a constant: gradients equal those of a hand-written loss
    with a detached target, for the routers and for every parameter upstream of them."""
    model, tap, original, inputs = moved
    input_ids, mask = padded_batch(model.config.vocab_size)
    forward(model, input_ids, mask)
    real = mask.reshape(-1).bool()
    costs = (
        {
            layer: torch.tensor(cost_vector(SELECTED[layer]), dtype=torch.float32)
            for layer in MOE_LAYERS
        }
        if flow == "safety"
        else None
    )
    terms = []
    for layer in MOE_LAYERS:
        x = inputs[layer][real]
        log_routing = torch.log_softmax(x @ router(model, layer).weight.T, dim=-1)
        with torch.no_grad():
            target = torch.softmax(x @ original[layer].T, dim=-1)
            if costs is not None:
                target = target * torch.exp(-costs[layer] / EPSILON)
                target = target / target.sum(1, keepdim=True)
        terms.append((target * (torch.log(target) - log_routing)).sum(1).mean())
    by_hand = torch.stack(terms).mean()
    got = routing_loss(tap, mask, None, costs, EPSILON)
    parameters = [p for p in model.parameters() if p.requires_grad]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    expected = torch.autograd.grad(by_hand, parameters, retain_graph=True, allow_unused=True)
    actual = torch.autograd.grad(got, parameters, allow_unused=True)
    for name, e, a in zip(names, expected, actual):
        if e is None:
            # nothing after the last router gets a gradient from the routing loss
            assert a is None or torch.count_nonzero(a) == 0, name
        else:
            torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-7, msg=name)
    received = {n for n, e in zip(names, expected) if e is not None and torch.count_nonzero(e)}
    assert {f"model.layers.{layer}.mlp.gate.weight" for layer in MOE_LAYERS} <= received
    assert "lm_head.weight" not in received
    assert not any("layers.2.mlp.experts" in name for name in received)
    assert all(
        w.grad is None and not w.requires_grad
        for weights in tap.frozen_weights.values()
        for w in weights
    )


def response_labels(input_ids):
    """Labels of padded_batch's rows with a prompt and a response each (-100 off the response):
    row 0 responds at 6..9, the right-padded row 1 at 3..5, the left-padded row 2 at 7..9."""
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    for row, start, end in ((0, 6, 10), (1, 3, 6), (2, 7, 10)):
        labels[row, start:end] = input_ids[row, start:end]
    return labels


PROMPT_TOKEN, RESPONSE_TOKEN = 2, 7  # flat indices of row 0's tokens 2 (prompt), 7 (response)


@pytest.mark.parametrize("tokens", ["all", "response"])
def test_safety_flow_tokens_choose_the_tokens_the_safety_flow_averages(moved, tokens):
    """`response`: a prompt token's routing does not enter the safety flow (its loss and its
    gradient); `all`: every real token's does, the prompt's included."""
    model, tap, original, inputs = moved
    input_ids, mask = padded_batch(model.config.vocab_size)
    labels = response_labels(input_ids)
    costs = {layer: cost_vector(SELECTED[layer]) for layer in MOE_LAYERS}
    costs_t = {k: torch.tensor(v, dtype=torch.float32) for k, v in costs.items()}
    forward(model, input_ids, mask)
    counted = safety_flow_mask(mask, labels, tokens)
    by_hand = mask if tokens == "all" else (labels != IGNORE_INDEX).long()
    current = {layer: router(model, layer).weight for layer in MOE_LAYERS}
    expected = expected_flow(inputs, original, current, by_hand, costs)
    got = routing_loss(tap, counted, None, costs_t, EPSILON)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # the loss's gradient with respect to each token's routing logits (later layers' hidden
    # states also depend on earlier tokens through attention: held fixed here)
    leaves = {layer: logits.detach().requires_grad_() for layer, logits in tap.logits.items()}
    tap.logits.update(leaves)
    gradients = torch.autograd.grad(
        routing_loss(tap, counted, None, costs_t, EPSILON), list(leaves.values())
    )
    for layer, gradient in zip(leaves, gradients):
        assert gradient[RESPONSE_TOKEN].abs().max() > 1e-6
        prompt_moves = bool(gradient[PROMPT_TOKEN].abs().max() > 1e-6)
        assert prompt_moves == (tokens == "all"), layer
        assert torch.count_nonzero(gradient[~mask.reshape(-1).bool()]) == 0  # padding never

    def loss_with_logits_moved_at(token):
        generator = torch.Generator().manual_seed(4)
        for layer in MOE_LAYERS:
            logits = tap.logits[layer].detach().clone()
            logits[token] += torch.randn(NUM_EXPERTS, generator=generator)
            tap.logits[layer] = logits
        with torch.no_grad():
            return routing_loss(tap, counted, None, costs_t, EPSILON).item()

    assert loss_with_logits_moved_at(RESPONSE_TOKEN) != pytest.approx(got.item(), rel=1e-4)
    tap.logits.update(leaves)
    moved_prompt = loss_with_logits_moved_at(PROMPT_TOKEN)
    if tokens == "response":
        assert moved_prompt == pytest.approx(got.item(), rel=1e-6)
    else:
        assert moved_prompt != pytest.approx(got.item(), rel=1e-4)


def test_safety_flow_tokens_rejects_other_values():
    mask = torch.ones(1, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="safety_flow_tokens must be one of .* got 'prompt'"):
        safety_flow_mask(mask, torch.zeros_like(mask), "prompt")


def test_base_forward_reference_is_the_starting_model_on_its_own_hidden_states(tiny_model_dir):
    model, _ = load_model(str(tiny_model_dir / "model"))
    adapter = adapter_for(model)
    reference = BaseForwardReference(adapter, adapter_for)
    tap = RouterTap(adapter)
    pristine, _ = load_model(str(tiny_model_dir / "model"))  # the starting model, separately
    pristine_inputs = {}
    for layer in MOE_LAYERS:
        router(pristine, layer).register_forward_hook(
            lambda module, args, out, index=layer: pristine_inputs.__setitem__(
                index, args[0].reshape(-1, args[0].shape[-1])
            )
        )
    input_ids, mask = padded_batch(model.config.vocab_size)
    # train layer 0's experts and both routers a little: layer 2's hidden states change
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        experts = model.model.layers[0].mlp.experts
        for tensor in (experts.gate_up_proj, experts.down_proj):
            tensor.add_(0.5 * torch.randn(tensor.shape, generator=generator))
        for layer in MOE_LAYERS:
            weight = router(model, layer).weight
            weight.add_(0.4 * torch.randn(weight.shape, generator=generator))
    references = reference(input_ids, mask)
    forward(model, input_ids, mask)
    with torch.no_grad():
        pristine(input_ids=input_ids, attention_mask=mask)
    real = mask.reshape(-1).bool()
    per_layer = []
    for layer in MOE_LAYERS:
        weight = router(pristine, layer).weight.double()
        starting = torch.softmax(pristine_inputs[layer].double() @ weight.T, -1)
        torch.testing.assert_close(references[layer].double(), starting, rtol=1e-5, atol=1e-6)
        current = router(model, layer).weight.double()
        routing = torch.log_softmax(tap.inputs[layer].double() @ current.T, -1)
        per_layer.append((starting * (torch.log(starting) - routing)).sum(1)[real].mean())
    # the frozen-router reference of layer 2 differs: it sees the trained hidden states
    assert not torch.allclose(tap.frozen_router_reference(2), references[2], atol=1e-3)
    got = routing_loss(tap, mask, references, None, EPSILON)
    assert got.item() == pytest.approx(torch.stack(per_layer).mean().item(), rel=1e-5)


def test_online_cost_per_mode(tiny_model_dir):
    model, _ = load_model(str(tiny_model_dir / "model"))
    adapter = adapter_for(model)
    costs = online_costs(adapter, SELECTED, "selected")
    assert sorted(costs) == list(MOE_LAYERS)
    for layer in MOE_LAYERS:
        np.testing.assert_array_equal(costs[layer].numpy(), cost_vector(SELECTED[layer]))
    only_layer_0 = online_costs(adapter, {0: [3]}, "selected")
    np.testing.assert_array_equal(only_layer_0[0].numpy(), cost_vector([3]))
    np.testing.assert_array_equal(only_layer_0[2].numpy(), np.ones(NUM_EXPERTS))
    offline = {layer: torch.linspace(0.1, 1.0, NUM_EXPERTS) * (layer + 1) for layer in MOE_LAYERS}
    assert online_costs(adapter, SELECTED, "global", offline) is offline
    with pytest.raises(ValueError, match="global needs the selection's cost"):
        online_costs(adapter, SELECTED, "global")
    with pytest.raises(ValueError, match="'selected' or 'global', got 'greedy'"):
        online_costs(adapter, SELECTED, "greedy")


def test_sft_loss_is_next_token_cross_entropy_on_response_labels():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 7, 11, generator=generator, dtype=torch.float64)
    labels = torch.tensor(
        [
            [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 4, 9, 2, IGNORE_INDEX],
            [IGNORE_INDEX, IGNORE_INDEX, 5, 5, 1, 7, 3],
        ]
    )
    log_probs = torch.log_softmax(logits, -1).numpy()
    losses = [
        -log_probs[b, t - 1, labels[b, t]]
        for b in range(2)
        for t in range(1, 7)
        if labels[b, t] != IGNORE_INDEX
    ]
    assert len(losses) == 8
    assert sft_loss(logits, labels).item() == pytest.approx(np.mean(losses), rel=1e-6)
    # a response label at position 0 has no preceding token to predict it from
    with pytest.raises(ValueError, match="no response tokens"):
        sft_loss(logits, torch.tensor([[3] + [IGNORE_INDEX] * 6] * 2))


def test_process_shares_of_the_global_count_add_up_to_the_global_mean(moved):
    """Two processes with uneven tokens (rows 0 and 1+2 of the padded batch): each divides its
    summed loss by the global count / 2, and DDP's mean of the two is the global mean; each
    process's own mean would weigh its tokens by the wrong share."""
    model, tap, _, _ = moved
    input_ids, mask = padded_batch(model.config.vocab_size)
    labels = torch.where(mask.bool(), input_ids, IGNORE_INDEX)
    labels[:, :4] = IGNORE_INDEX  # the prompt part
    costs = {layer: torch.tensor(cost_vector(SELECTED[layer])) for layer in MOE_LAYERS}

    def losses(rows, count=None):
        part = slice(*rows)
        output = forward(model, input_ids[part], mask[part])
        sft_count, flow_count = (None, None) if count is None else count
        return (
            sft_loss(output.logits, labels[part], sft_count).item(),
            routing_loss(tap, mask[part], None, costs, EPSILON, flow_count).item(),
        )

    whole = losses((0, 3))
    shares = [(0, 1), (1, 3)]
    counts = (response_tokens(labels) / 2, mask.sum() / 2)
    assert [response_tokens(labels[slice(*r)]).item() for r in shares] == [6, 8]
    combined = np.mean([losses(rows, counts) for rows in shares], axis=0)
    np.testing.assert_allclose(combined, whole, rtol=1e-6)
    own_means = np.mean([losses(rows) for rows in shares], axis=0)
    assert np.all(np.abs(own_means - whole) > 1e-4 * np.abs(whole))


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    _, tokenizer = load_model(str(tiny_model_dir / "model"))
    return tokenizer


def template(tokenizer, prompt, response=None):
    messages = [{"role": "user", "content": prompt}]
    if response is None:
        return list(
            tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=True, return_dict=False
            )
        )
    messages.append({"role": "assistant", "content": response})
    return list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False))


def test_labels_mask_the_prompt_and_are_truncated_with_the_input(tokenizer):
    prompt, response = "How do I pick lock number 12?", "I can't help with that."
    full, n_prompt = template(tokenizer, prompt, response), len(template(tokenizer, prompt))
    assert len(full) > n_prompt + 3
    for max_length in (1000, n_prompt + 3, n_prompt, n_prompt - 2):
        [encoded] = encode_pairs(tokenizer, [{"prompt": prompt, "response": response}], max_length)
        assert encoded["input_ids"] == full[:max_length]
        prompt_part = [IGNORE_INDEX] * min(n_prompt, max_length)
        assert encoded["labels"] == prompt_part + full[n_prompt:max_length]
    [encoded] = encode_pairs(tokenizer, [{"prompt": prompt, "response": response}], 1000)
    learnt = [t for t in encoded["labels"] if t != IGNORE_INDEX]
    assert response in tokenizer.decode(learnt) and "lock" not in tokenizer.decode(learnt)


def test_collated_batch_learns_only_response_tokens(tokenizer):
    records = [
        {"prompt": "What is 12 + 30?", "response": "12 + 30 = 42."},
        {"prompt": "Hi", "response": "Hello there, how can I help you today?"},
    ]
    batch = collate(encode_pairs(tokenizer, records, 64), pad_id=0)
    for row, record in enumerate(records):
        full, n_prompt = template(tokenizer, **record), len(template(tokenizer, record["prompt"]))
        labels = batch["labels"][row].tolist()
        assert labels == [IGNORE_INDEX] * n_prompt + full[n_prompt:] + [IGNORE_INDEX] * (
            batch["labels"].shape[1] - len(full)
        )
        assert batch["attention_mask"][row].sum() == len(full)
