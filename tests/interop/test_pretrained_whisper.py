"""Whisper tiny.en (CTranslate2 folder) in attentive's SpeechModel: parity with transformers.

The same float32 weights go into ``WhisperForConditionalGeneration`` (via the CT2 -> HF name
map) and into ours (via ``from_pretrained``). Checked: encoder output, decoder logits, and the
greedy transcript of a clip spoken by espeak-ng (22.05 kHz, so resampling is exercised).
"""

import io
import subprocess
from contextlib import redirect_stderr, redirect_stdout

import pytest
import torch

from pretrained_paths import need_espeak, need_whisper_ct2

transformers = pytest.importorskip("transformers")

SAID = "Hello world. This is a test of the speech recognition system."


@pytest.fixture(scope="module")
def ours():
    from attentive import from_pretrained

    return from_pretrained(need_whisper_ct2(), optimize=False)


@pytest.fixture(scope="module")
def hf():
    from attentive.interop.ctranslate2 import read_ct2_folder, whisper_ct2_to_hf

    config, state = whisper_ct2_to_hf(read_ct2_folder(need_whisper_ct2()))
    model = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(**config))
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.eval(), config


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """(wav path, log-Mel features (1, 80, 3000)) of an espeak-ng clip."""
    from attentive.audio import log_mel_spectrogram, read_wav, resample

    wav = tmp_path_factory.mktemp("speech") / "clip.wav"
    subprocess.run([need_espeak(), "-w", str(wav), SAID], check=True)
    audio, rate = read_wav(wav)
    assert rate != 16000
    return wav, log_mel_spectrogram(resample(audio, rate, 16000))[None]


@pytest.fixture(scope="module")
def encoded(ours, hf, clip):
    with torch.no_grad():
        return ours.model.encode(clip[1]).hidden, hf[0].model.encoder(clip[1]).last_hidden_state


@pytest.fixture(scope="module")
def reference_tokens(hf, encoded, clip):
    """transformers' own Whisper generate: greedy, no timestamps, the model's suppress lists."""
    model, config = hf
    model.generation_config = transformers.GenerationConfig(
        decoder_start_token_id=50257,
        bos_token_id=50257,
        eos_token_id=50256,
        pad_token_id=50256,
        no_timestamps_token_id=50362,
        is_multilingual=False,
        max_length=448,
        suppress_tokens=config["suppress_tokens"],
        begin_suppress_tokens=config["begin_suppress_tokens"],
    )
    with torch.no_grad():
        out = model.generate(clip[1], return_timestamps=False)
    return [t for t in out[0].tolist() if t < 50256]  # drop any start / end tokens


def test_config_and_special_tokens(ours):
    c = ours.config
    assert (ours.kind, ours.format) == ("speech", "ctranslate2")
    assert (c.num_encoder_layers, c.num_decoder_layers, c.d_model, c.num_heads, c.vocab_size) == (4, 4, 384, 6, 51864)
    assert (c.start_ids, c.eot_id, c.timestamp_begin) == ([50257, 50362], 50256, 50363)
    assert len(c.suppress_tokens) == 90 and c.begin_suppress_tokens == [220, 50256]


def test_encoder_output_matches(encoded):
    ours, ref = encoded
    diff = (ours - ref).abs().max().item()
    print(f"Whisper encoder output max abs diff: {diff:.3g}")
    assert ours.shape == (1, 1500, 384) and diff <= 1e-4


def test_decoder_logits_match(ours, hf, encoded, reference_tokens):
    ids = torch.tensor([[50257, 50362] + reference_tokens])
    with torch.no_grad():
        logits = ours.model.head(ours.model.decode(ids, encoded[0]).hidden)
        ref = hf[0](encoder_outputs=(encoded[1],), decoder_input_ids=ids).logits
    diff = (logits - ref).abs().max().item()
    print(f"Whisper decoder logits max abs diff over {ids.shape[1]} tokens: {diff:.3g}")
    assert diff <= 1e-4


def test_transcript_matches_transformers(ours, clip, reference_tokens):
    from attentive.decode.transcriber import greedy_transcribe

    tokens = greedy_transcribe(ours.model, clip[1])[0]
    assert tokens == reference_tokens
    text = ours.tokenizer.decode(tokens).strip()
    print(f"Whisper transcript: {text!r}")
    assert "hello world" in text.lower() and "speech recognition system" in text.lower()


def test_cli_transcribe_and_not_audio(ours, clip, reference_tokens, tmp_path, monkeypatch):
    import attentive.interop.resolve as resolve
    from attentive.cli.main import main

    monkeypatch.setattr(resolve, "from_pretrained", lambda spec, **kw: ours)  # already loaded
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["transcribe", str(clip[0])]) == 0
    assert out.getvalue().strip() == ours.tokenizer.decode(reference_tokens).strip()

    fake = tmp_path / "notes.wav"
    fake.write_text("these are meeting notes, not audio\n")
    err = io.StringIO()
    with redirect_stderr(err):
        assert main(["transcribe", str(fake)]) == 2
    message = err.getvalue().strip()
    assert "\n" not in message and "not a readable PCM WAV file" in message and "supported:" in message


def test_save_and_reload(ours, tmp_path):
    from attentive import from_pretrained

    ours.save(tmp_path)
    back = from_pretrained(tmp_path, optimize=False)
    assert back.format == "attentive" and back.config == ours.config
    mine, theirs = back.model.state_dict(), ours.model.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert back.tokenizer.decode([15496, 995]) == ours.tokenizer.decode([15496, 995])
