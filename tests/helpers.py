"""Helpers the tests share: tiny model configs and the fused-equals-plain loss check."""

from __future__ import annotations

import torch

from attentive.models import DecoderLMConfig, EncoderDecoderConfig, SpeechConfig, SpeechModel


def tiny_encdec(**overrides) -> EncoderDecoderConfig:
    """A 2+2-layer, 32-wide encoder-decoder; no dropout so eval/train agree."""
    base = dict(
        src_vocab_size=50,
        tgt_vocab_size=50,
        d_model=32,
        num_heads=4,
        d_ff=64,
        num_encoder_layers=2,
        num_decoder_layers=2,
        max_len=64,
        dropout=0.0,
        attention_dropout=0.0,
    )
    base.update(overrides)
    return EncoderDecoderConfig(**base)


def tiny_gpt2(**overrides) -> DecoderLMConfig:
    """GPT-2-shaped (learned positions, pre-LN, GELU, biases, tied) but 2 layers, 32 wide."""
    base = dict(
        vocab_size=50,
        num_layers=2,
        d_model=32,
        num_heads=4,
        d_ff=64,
        max_len=64,
        dropout=0.0,
        attention_dropout=0.0,
    )
    base.update(overrides)
    return DecoderLMConfig(**base)


def assert_fused_loss_equals_plain(plain, fused, batch, head: str) -> None:
    """Two recipes of one task, ``loss="plain"`` and ``loss="fused"``: the fused one applies the
    model's ``head`` inside linear_cross_entropy and must give the plain loss and gradients."""
    fused.model.load_state_dict(plain.model.state_dict())
    assert plain.task._fused_head(plain.model) is None
    assert fused.task._fused_head(fused.model) is getattr(fused.model, head)
    results = []
    for recipe in (plain, fused):
        torch.manual_seed(0)  # the same dropout masks in the body
        loss, _ = recipe.task.loss(recipe.model, batch)
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in recipe.model.named_parameters()}))
    (want, want_grads), (got, got_grads) = results
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    for name, grad in want_grads.items():
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-4, atol=1e-5, msg=name)


def masked_full_pass(
    stack,
    x: torch.Tensor,
    mask: torch.Tensor,
    positions: torch.Tensor | None = None,
    key_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """A stack's layers over ``x (B, T, D)`` under an explicit ``mask (B|1, 1, T, T)`` (no cache),
    positions and biases made as the stack makes them: the reference a cache must reproduce."""
    from attentive.nn.masks import combine_masks, key_mask as expand

    slots = torch.arange(x.shape[1])
    positions = slots[None] if positions is None else positions
    h = stack.positional.add_to(x, positions)
    rope = stack.positional.rotary(positions)
    bias = stack.positional.attention_bias(slots, slots)
    mask = combine_masks(mask, expand(key_mask) if key_mask is not None else None)
    for layer in stack.layers:
        h, _ = layer(h, mask=mask, rope=rope, bias=bias)
    return stack.final_norm(h) if stack.final_norm is not None else h


def tiny_speech(**overrides) -> SpeechModel:
    """A 1+1-layer Whisper-shaped model: 8 Mel bins, a 60-token vocabulary."""
    base = dict(
        vocab_size=60,
        n_mels=8,
        num_encoder_layers=1,
        num_decoder_layers=1,
        d_model=16,
        num_heads=2,
        d_ff=32,
        max_len=20,
        max_source_positions=50,
        eot_id=50,
        start_ids=[51, 52],
        timestamp_begin=53,
        suppress_tokens=[3, 4],
        begin_suppress_tokens=[5, 50],
    )
    return SpeechModel(SpeechConfig(**{**base, **overrides})).eval()
