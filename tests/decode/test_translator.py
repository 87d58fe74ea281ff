"""Translator: padding comes from the model's config, the one source of the pad id."""

from __future__ import annotations

import torch

from attentive.decode import Translator
from attentive.models import EncoderDecoder, EncoderDecoderConfig


class _Ids:
    """The few tokenizer fields ``translate_ids`` reads."""

    bos_id, eos_id = 1, 2


def test_a_batch_pads_with_the_models_pad_id():
    """The translator padded with the constant PAD_ID (0) while search masked ``config.pad_id``, so a
    model with another pad id read the padding of a batched sentence as source tokens."""
    torch.manual_seed(0)
    model = EncoderDecoder(
        EncoderDecoderConfig(
            src_vocab_size=40,
            tgt_vocab_size=40,
            d_model=32,
            num_heads=4,
            d_ff=64,
            num_encoder_layers=2,
            num_decoder_layers=2,
            max_len=32,
            dropout=0.0,
            attention_dropout=0.0,
            pad_id=3,
        )
    ).eval()
    translator = Translator(model, _Ids())
    sources = [[10, 11, 12, 13, 14, 15, 16], [20, 21], [30, 31, 32, 33]]
    batched = translator.translate_ids(sources, batch_tokens=1000)  # one batch, short rows padded
    alone = [translator.translate_ids([s])[0] for s in sources]
    assert batched == alone
    assert translator.pad_id == 3
