"""Whisper beam search through the engine equals transformers' ``WhisperForConditionalGeneration
.generate(num_beams=N)`` token for token: Whisper tiny.en (the CTranslate2 weights, float32, in
both), clips spoken by espeak-ng, beams 2-5; and ``attentive transcribe --beam N`` uses it."""

from __future__ import annotations

import io
import subprocess
from contextlib import redirect_stdout

import pytest
import torch

from pretrained_paths import need_espeak, need_whisper_ct2

transformers = pytest.importorskip("transformers")

SAID = [
    "Hello world. This is a test of the speech recognition system.",
    "Please call Stella. Ask her to bring these things with her from the store.",
    "Beam search keeps several hypotheses and returns the best one.",
]


@pytest.fixture(scope="module")
def ours():
    from attentive import from_pretrained

    return from_pretrained(need_whisper_ct2())


@pytest.fixture(scope="module")
def hf():
    from attentive.interop.ctranslate2 import read_ct2_folder, whisper_ct2_to_hf

    config, state = whisper_ct2_to_hf(read_ct2_folder(need_whisper_ct2()))
    model = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(**config))
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
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
    return model.eval()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """(wav path, log-Mel features (1, 80, 3000)) per sentence."""
    from attentive.audio import log_mel_spectrogram, read_wav, resample

    folder = tmp_path_factory.mktemp("speech")
    out = []
    for i, text in enumerate(SAID):
        wav = folder / f"clip{i}.wav"
        subprocess.run([need_espeak(), "-w", str(wav), text], check=True)
        audio, rate = read_wav(wav)
        out.append((wav, log_mel_spectrogram(resample(audio, rate, 16000))[None]))
    return out


def _reference(hf, features, beams: int) -> list[int]:
    with torch.no_grad():
        out = hf.generate(features, return_timestamps=False, num_beams=beams)
    return [t for t in out[0].tolist() if t < 50256]  # drop the start and end tokens


@pytest.mark.parametrize("beams", [2, 3, 4, 5])
def test_beam_transcripts_match_transformers(ours, hf, clips, beams):
    from attentive.decode.transcriber import transcribe

    for wav, features in clips:
        want = _reference(hf, features, beams)
        assert transcribe(ours.model, features, beams=beams)[0] == want, (wav.name, beams)


def test_windows_searched_together_find_what_each_finds_alone(ours, clips):
    from attentive.decode.transcriber import transcribe

    features = torch.cat([f for _, f in clips])  # (3, 80, 3000)
    together = transcribe(ours.model, features, beams=3)
    assert together == [transcribe(ours.model, f, beams=3)[0] for _, f in clips]
    assert [len(t) for t in transcribe(ours.model, features, max_new_tokens=5, beams=3)] == [5, 5, 5]


def test_cli_transcribe_beam(ours, hf, clips, capsys):
    from attentive.cli.main import main

    wav, features = clips[1]
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["transcribe", "--model", str(need_whisper_ct2()), "--beam", "3", str(wav)]) == 0
    assert out.getvalue().strip() == ours.tokenizer.decode(_reference(hf, features, 3)).strip()
    with pytest.raises(SystemExit):
        main(["transcribe", "--beam", "0", str(wav)])
    assert "--beam: must be a positive integer (1 = greedy), got '0'" in capsys.readouterr().err
