"""LoRA adapters: a frozen base, adapters alone in the optimiser, merge = base + adapter, adapter
folders, and the one-line errors for targets, ranks and mismatched bases."""

from __future__ import annotations

import pytest
import torch

import attentive
from attentive.checkpoint import CheckpointError
from attentive.lora import (
    LoRAConfig,
    add_lora,
    adapter_state,
    is_adapter_tensor,
    linear_layers,
    lora_config_of,
    merge_lora,
    read_adapter,
    save_adapter,
)
from attentive.train.optim import OptimConfig, make_optimizer
from chat_helpers import chat_model

TARGETS = ("q_proj", "v_proj", "out_proj", "gate", "down")


def _adapted(seed: int = 0):
    model = add_lora(chat_model(seed), LoRAConfig(rank=4, alpha=8, targets=TARGETS), base="base/")
    with torch.no_grad():  # B starts at zero (no change); give the adapters something to say
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    return model


def test_base_is_frozen_and_only_the_adapters_reach_the_optimiser():
    model = _adapted()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(is_adapter_tensor(n) for n in trainable)
    assert len(trainable) == 2 * 2 * len(TARGETS)  # A and B, 2 layers
    optimizer = make_optimizer(model, OptimConfig(optimizer="adamw", lr=1e-3), torch.device("cpu"))
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert in_optimizer == {id(p) for n, p in model.named_parameters() if n in trainable}
    ids = torch.randint(0, 300, (2, 6))
    model(ids).sum().backward()
    assert all(p.grad is None for n, p in model.named_parameters() if n not in trainable)


def test_adapters_start_at_the_base_model():
    base, adapted = chat_model(), add_lora(chat_model(), LoRAConfig(rank=4, targets=TARGETS))
    ids = torch.randint(0, 300, (2, 6))
    with torch.no_grad():
        torch.testing.assert_close(adapted(ids), base(ids), atol=0, rtol=0)


def test_merge_gives_the_same_logits_as_base_plus_adapter():
    model = _adapted()
    ids = torch.randint(0, 300, (2, 7))
    with torch.no_grad():
        adapted = model(ids)
        assert (adapted - chat_model()(ids)).abs().max() > 1e-2  # the adapter changes the output
        merged = merge_lora(model)
        torch.testing.assert_close(merged(ids), adapted, atol=1e-5, rtol=1e-5)
    assert lora_config_of(merged) is None and not any(is_adapter_tensor(n) for n in merged.state_dict())
    assert set(merged.state_dict()) == set(chat_model().state_dict())


def test_adapter_folder_round_trip_and_from_pretrained_merges_it(tmp_path):
    base = chat_model()
    attentive.save(base, tmp_path / "base")
    model = _adapted()
    model.lora_base = str(tmp_path / "base")
    save_adapter(tmp_path / "lora", model)
    adapter = read_adapter(tmp_path / "lora")
    assert adapter.config == LoRAConfig(rank=4, alpha=8, targets=TARGETS) and adapter.base == str(tmp_path / "base")
    assert adapter.tensors.keys() == adapter_state(model).keys()
    assert "stack.layers.0.self_attn.q_proj.lora_A.weight" in adapter.tensors  # our names, no peft adapter name
    loaded = attentive.from_pretrained(tmp_path / "lora")
    ids = torch.randint(0, 300, (1, 5))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids), model(ids), atol=1e-5, rtol=1e-5)


def test_a_target_that_matches_nothing_lists_the_linear_layers():
    with pytest.raises(ValueError) as err:
        add_lora(chat_model(), LoRAConfig(targets=("q_proj", "c_attn")))
    message = str(err.value)
    assert "'c_attn' matches no linear layer of DecoderLM" in message and "\n" not in message
    assert (
        "self_attn.q_proj, self_attn.k_proj, self_attn.v_proj, self_attn.out_proj, ffn.gate, ffn.up, ffn.down"
        in message
    )
    assert linear_layers(chat_model())[0] == "stack.layers.0.self_attn.q_proj"


@pytest.mark.parametrize("rank", [0, -2])
def test_rank_must_be_positive(rank):
    with pytest.raises(ValueError, match=f"LoRA rank must be a positive integer, got {rank}"):
        LoRAConfig(rank=rank)


def test_an_adapter_for_another_base_names_the_first_mismatching_shape(tmp_path):
    model = _adapted()
    save_adapter(tmp_path / "lora", model)
    other = chat_model(d_model=32, num_heads=4, num_kv_heads=2, d_ff=64)
    from attentive.lora import apply_adapter

    with pytest.raises(
        CheckpointError,
        match=r"tensor 'stack\.layers\.0\.self_attn\.q_proj\.lora_A\.weight' has shape "
        r"\(4, 64\), the model expects \(4, 32\)",
    ):
        apply_adapter(other, read_adapter(tmp_path / "lora"))


def test_a_model_takes_one_adapter_at_a_time():
    with pytest.raises(ValueError, match="already carries a LoRA adapter"):
        add_lora(_adapted(), LoRAConfig())
    with pytest.raises(ValueError, match="carries no LoRA adapter"):
        merge_lora(chat_model())


@pytest.mark.parametrize("rank, alpha", [(2, 6.0), (4, 6.0), (2, 12.0)])
def test_the_update_is_scaled_by_alpha_over_rank_in_forward_and_merge(rank, alpha):
    """peft's semantics: ``y = W x + (alpha / rank) B A x``, and merging folds the same into W."""

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj = torch.nn.Linear(6, 5, bias=False)

        def forward(self, x):
            return self.q_proj(x)

    torch.manual_seed(0)
    model = Tiny()
    base = model.q_proj.weight.detach().clone()
    add_lora(model, LoRAConfig(rank=rank, alpha=alpha, targets=("q_proj",)))
    a = torch.randn(rank, 6)
    b = torch.randn(5, rank)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_A" in name:
                p.copy_(a)
            elif "lora_B" in name:
                p.copy_(b)
    x = torch.randn(3, 6)
    expected = x @ (base + (alpha / rank) * b @ a).T
    torch.testing.assert_close(model(x), expected)
    merge_lora(model)
    torch.testing.assert_close(model.q_proj.weight, base + (alpha / rank) * b @ a)
