import numpy as np
import pytest
import torch
from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

from mesa_moe.adapters import ArchitectureError, adapter_for
from mesa_moe.profiling import (
    ACTIVATION_COLUMNS,
    LayerCounts,
    RoutingRecorder,
    activation_table,
    coactivation_table,
    rank_experts,
)


def test_counts_by_hand():
    counts = LayerCounts(num_experts=4, device=torch.device("cpu"))
    top_k = torch.tensor([[0, 1], [1, 2], [0, 1], [3, 1]])
    probs = torch.tensor(
        [[0.5, 0.3, 0.1, 0.1], [0.1, 0.5, 0.3, 0.1], [0.4, 0.4, 0.1, 0.1], [0.1, 0.2, 0.1, 0.6]]
    )
    source = torch.tensor([0, 0, 1, 1])  # two safe tokens, two gen tokens
    counts.add(top_k, probs, source)
    table = activation_table({3: counts}, top_k=2)
    assert list(table.columns) == ACTIVATION_COLUMNS

    def col(source, name):
        return table[table.source == source].sort_values("expert")[name].tolist()

    assert col("safe", "count") == [1, 2, 1, 0]
    assert col("gen", "count") == [1, 2, 0, 1]
    assert col("mix", "count") == [2, 4, 1, 1]
    assert col("mix", "tokens") == [4] * 4
    assert col("safe", "freq") == pytest.approx([0.25, 0.5, 0.25, 0.0])
    assert col("safe", "mean_prob") == pytest.approx([0.3, 0.4, 0.2, 0.1])
    # experts 2 and 3 tie on count; 3 has the larger mean routing probability (0.225 > 0.15)
    assert col("mix", "rank") == [2, 1, 4, 3]
    assert col("mix", "f") == pytest.approx([25.0, 0.0, 75.0, 50.0])
    assert set(table.layer) == {3}

    coact = coactivation_table({3: counts}).pivot(index="i", columns="j", values="count")
    expected = np.array([[2, 2, 0, 0], [2, 4, 1, 1], [0, 1, 1, 0], [0, 1, 0, 1]])
    np.testing.assert_array_equal(coact.to_numpy(), expected)


def test_rank_ties_fall_back_to_expert_id():
    assert rank_experts(np.array([5, 5, 9]), np.array([0.2, 0.2, 0.1])).tolist() == [2, 3, 1]


@pytest.fixture(scope="module")
def tiny_moe():
    torch.manual_seed(0)
    config = Qwen3MoeConfig(
        vocab_size=50,
        hidden_size=16,
        intermediate_size=32,
        moe_intermediate_size=8,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        num_experts=6,
        num_experts_per_tok=2,
        mlp_only_layers=[1],
    )
    model = Qwen3MoeForCausalLM(config).eval()
    for layer in model.model.layers:  # the default init (zeros) would make every route a tie
        if hasattr(layer.mlp, "gate"):
            torch.nn.init.normal_(layer.mlp.gate.weight, std=1.0)
    return model


def test_adapter_skips_dense_layers(tiny_moe):
    adapter = adapter_for(tiny_moe)
    assert adapter.layer_indices == [0, 2]
    assert (adapter.num_experts, adapter.top_k) == (6, 2)


def test_recorder_counts_real_tokens_only(tiny_moe):
    adapter = adapter_for(tiny_moe)
    input_ids = torch.randint(1, 50, (3, 7))
    attention_mask = torch.ones(3, 7, dtype=torch.long)
    attention_mask[1, 5:] = 0
    attention_mask[2, 3:] = 0
    source = torch.tensor([0, 1, 0])
    hooks_before = len(adapter.layers[0].router._forward_hooks)
    with RoutingRecorder(adapter) as recorder:
        recorder.set_batch(attention_mask, source)
        with torch.inference_mode():
            tiny_moe.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    assert len(adapter.layers[0].router._forward_hooks) == hooks_before  # ours are removed
    with torch.inference_mode():
        logits = tiny_moe(
            input_ids=input_ids, attention_mask=attention_mask, output_router_logits=True
        ).router_logits
    for layer_logits, layer in zip(logits, adapter.layers):
        expected = np.zeros((2, 6))
        tokens = np.zeros(2)
        top = layer_logits.topk(2, dim=-1).indices.reshape(3, 7, 2)
        for b in range(3):
            for t in range(7):
                if attention_mask[b, t]:
                    tokens[source[b]] += 1
                    for e in top[b, t].tolist():
                        expected[source[b], e] += 1
        recorded = recorder.counts[layer.index]
        np.testing.assert_array_equal(recorded.count.numpy(), expected)
        np.testing.assert_array_equal(recorded.tokens.numpy(), tokens)
        assert recorded.coactivation.numpy().diagonal().tolist() == expected.sum(0).tolist()


def test_dense_model_is_rejected():
    from transformers import LlamaConfig, LlamaForCausalLM

    dense = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=10,
            hidden_size=8,
            intermediate_size=16,
            num_hidden_layers=1,
            num_attention_heads=1,
        )
    )
    with pytest.raises(ArchitectureError, match="llama"):
        adapter_for(dense)
