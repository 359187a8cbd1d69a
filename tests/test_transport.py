import numpy as np
import ot
import pytest

from mesa_moe.cost import normalised_cost
from mesa_moe.transport import (
    TransportError,
    reference_from_coactivation,
    transport_plan,
    transport_plans,
)


def generalised_sinkhorn(r, target, cost, reference, epsilon, tau, iters=200_000):
    """An independent log-domain Sinkhorn for min <π,M> + ε KL(π‖P) + τ KL(πᵀ1‖u), π1 = r."""
    log_k = np.log(reference) - cost / epsilon
    f = np.zeros(len(r))
    g = np.zeros(len(target))
    lam = tau / (tau + epsilon)

    def lse(x, axis):
        m = x.max(axis=axis, keepdims=True)
        return (m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))).squeeze(axis)

    for _ in range(iters):
        f_new = np.log(r) - lse(log_k + g[None, :], 1)
        g_new = lam * (np.log(target) - lse(log_k + f_new[:, None], 0))
        done = max(np.abs(f_new - f).max(), np.abs(g_new - g).max()) < 1e-13
        f, g = f_new, g_new
        if done:
            break
    return np.exp(f[:, None] + log_k + g[None, :])


def random_layer(seed, num_experts=12):
    rng = np.random.default_rng(seed)
    r = rng.dirichlet(np.full(num_experts, 0.5))
    r = np.maximum(r, 1e-6)
    r /= r.sum()
    counts = rng.integers(0, 40, (num_experts, num_experts)).astype(float)
    counts = counts + counts.T
    f = 100 * rng.permutation(num_experts) / num_experts
    cost = np.tile(normalised_cost(f, 1.0), (num_experts, 1))
    return r, cost, reference_from_coactivation(counts)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("epsilon, tau", [(0.05, 0.1), (0.2, 1.0), (1.0, 0.01), (0.02, 0.5)])
def test_plan_matches_independent_sinkhorn(seed, epsilon, tau):
    r, cost, reference = random_layer(seed)
    plan = transport_plan(r, cost, reference, epsilon, tau, max_iter=100_000, tol=1e-12)
    target = np.full(len(r), 1 / len(r))
    expected = generalised_sinkhorn(r, target, cost, reference, epsilon, tau)
    np.testing.assert_allclose(plan, expected, atol=1e-8)
    np.testing.assert_allclose(plan.sum(axis=1), r, atol=1e-8)


@pytest.mark.parametrize("seed", range(3))
def test_tau_zero_is_the_closed_form(seed):
    r, cost, reference = random_layer(seed)
    plan = transport_plan(r, cost, reference, 0.1, tau=0.0)
    target = np.full(len(r), 1 / len(r))
    np.testing.assert_allclose(
        plan, generalised_sinkhorn(r, target, cost, reference, 0.1, 0.0), atol=1e-10
    )
    by_hand = r[:, None] * reference * np.exp(-cost / 0.1)
    by_hand = by_hand / by_hand.sum(axis=1, keepdims=True) * r[:, None]
    np.testing.assert_allclose(plan, by_hand, atol=1e-12)


def test_closed_form_survives_tiny_epsilon():
    r, cost, reference = random_layer(0)
    plan = transport_plan(r, cost, reference, 1e-4, tau=0.0)
    assert np.all(np.isfinite(plan))
    np.testing.assert_allclose(plan.sum(axis=1), r)


def pot_plan(r, cost, reference, epsilon, tau):
    target = np.full(len(r), 1 / len(r))
    return ot.unbalanced.sinkhorn_unbalanced(
        r,
        target,
        cost,
        epsilon,
        (float("inf"), tau),
        method="sinkhorn",
        reg_type="kl",
        c=reference,
        numItermax=200_000,
        stopThr=1e-15,
    )


@pytest.mark.parametrize(
    "epsilon, tau", [(0.05, 0.1), (0.2, 1.0), (1.0, 0.01), (0.02, 0.5), (0.05, 10.0)]
)
def test_batched_solver_matches_pot_per_layer(epsilon, tau):
    layers = [random_layer(seed, num_experts=20) for seed in range(5)]
    r_0 = layers[0][0]
    r_0[[2, 5]] = 0.0  # experts that carry no safety routing now
    r_0 /= r_0.sum()
    r = np.stack([r for r, _, _ in layers])
    column_cost = np.stack([cost[0] for _, cost, _ in layers])
    reference = np.stack([reference for _, _, reference in layers])
    plans = transport_plans(r, column_cost, reference, epsilon, tau, tol=1e-12)
    for plan, (r_l, cost, reference_l) in zip(plans, layers):
        expected = pot_plan(r_l, cost, reference_l, epsilon, tau)
        np.testing.assert_allclose(plan, expected, rtol=1e-7, atol=1e-12)


def test_small_epsilon_is_solved_in_the_log_domain():
    """POT's scaling iterations underflow here (exp(-1/1e-3)); the column-factor form does not."""
    r, cost, reference = random_layer(3)
    plan = transport_plan(r, cost, reference, 1e-3, 0.1, tol=1e-12)
    target = np.full(len(r), 1 / len(r))
    np.testing.assert_allclose(
        plan, generalised_sinkhorn(r, target, cost, reference, 1e-3, 0.1), atol=1e-9
    )


def test_tau_pulls_target_marginal_towards_uniform():
    r, cost, reference = random_layer(1)
    uniform = np.full(len(r), 1 / len(r))
    gaps = [
        np.abs(transport_plan(r, cost, reference, 0.1, tau).sum(0) - uniform).sum()
        for tau in (0.0, 0.1, 1.0, 10.0)
    ]
    assert gaps == sorted(gaps, reverse=True)


def test_non_convergence_is_an_error():
    r, cost, reference = random_layer(2)
    with pytest.raises(TransportError, match="did not converge"):
        transport_plan(r, cost, reference, 0.05, 1.0, max_iter=3)


def test_underflow_is_an_error_not_a_zero_plan():
    r, cost, reference = random_layer(3)
    reference[2] = 0.0  # a row of the kernel with no mass where r needs some
    for tau in (0.0, 0.1):
        with pytest.raises(TransportError, match="underflows"):
            transport_plan(r, cost, reference / reference.sum(), 0.1, tau)


def test_cost_must_depend_on_the_receiving_expert_only():
    r, cost, reference = random_layer(0)
    cost[0, 0] += 0.5
    with pytest.raises(ValueError, match="receiving expert"):
        transport_plan(r, cost, reference, 0.1, 0.1)


def test_bad_marginal_is_rejected():
    r, cost, reference = random_layer(0)
    with pytest.raises(ValueError, match="distribution"):
        transport_plan(r * 2, cost, reference, 0.1, 0.1)
