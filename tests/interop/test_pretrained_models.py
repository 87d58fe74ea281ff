"""The encoder and speech families on tiny random weights: pooling, validation, greedy decoding rules."""

import pytest
import torch
from helpers import tiny_speech

from attentive.models.encoder import Encoder, EncoderConfig
from attentive.decode.transcriber import greedy_transcribe
from attentive.models.speech import SpeechConfig, whisper_sinusoids


def tiny_encoder(**overrides) -> Encoder:
    base = dict(
        vocab_size=30, num_layers=2, d_model=16, num_heads=2, d_ff=32, max_len=32, dropout=0.0, attention_dropout=0.0
    )
    return Encoder(EncoderConfig(**{**base, **overrides})).eval()


@pytest.mark.parametrize("pooling", ["mean", "max", "cls", "pooler"])
def test_pooling_ignores_padding(pooling):
    model = tiny_encoder(pooling=pooling, pooler=pooling == "pooler")
    short = torch.tensor([[5, 6, 7]])
    padded = torch.tensor([[5, 6, 7, 0, 0], [8, 9, 10, 11, 12]])
    with torch.no_grad():
        alone, batch = model.embed_ids(short), model.embed_ids(padded)
    assert batch.shape == (2, 16)
    assert torch.allclose(alone[0], batch[0], atol=1e-6)
    assert torch.allclose(batch.norm(dim=-1), torch.ones(2), atol=1e-6)  # normalize=True by default


def test_encoder_with_rotary_positions_and_no_segments():
    model = tiny_encoder(positional="rope", num_token_types=0, embed_norm=False)
    assert model.token_type is None and model.embed_norm is None
    ids = torch.tensor([[3, 4, 5, 6]])
    with torch.no_grad():
        assert model(ids).shape == (1, 4, 16)
        assert not torch.allclose(model(ids), model(ids.flip(1)).flip(1))  # order matters


def test_encoder_config_errors():
    with pytest.raises(ValueError, match="pooling = 'sum' is not one of"):
        EncoderConfig(pooling="sum")
    with pytest.raises(ValueError, match="pooling = 'pooler' needs pooler=True"):
        EncoderConfig(pooling="pooler")


def test_speech_config_round_trip_and_errors():
    from attentive.config import config_from_dict

    config = tiny_speech().config
    assert config_from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"special token ids \[70\] are outside the vocabulary"):
        SpeechConfig(vocab_size=60, eot_id=70, start_ids=[51])


def test_whisper_sinusoids_layout():
    table = whisper_sinusoids(10, 8)
    assert table.shape == (10, 8)
    assert torch.equal(table[0], torch.cat((torch.zeros(4), torch.ones(4))))  # sin(0) then cos(0)


def test_greedy_decoding_respects_suppression_and_batches():
    torch.manual_seed(0)
    model = tiny_speech()
    with torch.no_grad():  # make the suppressed and timestamp tokens the most likely ones
        model.head.weight[[3, 4, 5, 55]] *= 50.0
    features = torch.randn(2, 8, 100)
    rows = greedy_transcribe(model, features, max_new_tokens=6)
    assert len(rows) == 2
    for row in rows:
        assert len(row) <= 6 and not {3, 4, 50}.intersection(row)
        assert all(t < 53 for t in row)  # no timestamps
        assert not row or row[0] != 5  # begin-suppressed


def test_speech_encoder_rejects_wrong_shapes():
    model = tiny_speech()
    with pytest.raises(ValueError, match=r"features must have shape \(batch, 8 mel bins, frames\)"):
        model.encode(torch.randn(1, 80, 100))
    with pytest.raises(ValueError, match="split longer audio into chunks"):
        model.encode(torch.randn(1, 8, 200))
