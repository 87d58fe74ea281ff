"""Speech to text with a Whisper-style ``SpeechModel``, through the decoding engine.

The audio is resampled to 16 kHz and cut into 30 s windows (Whisper's context); each window's
log-Mel spectrogram is encoded once, and its transcript is decoded from the start tokens
(``<|startoftranscript|>`` ... ``<|notimestamps|>``) with Whisper's suppressed tokens: the
config's ``suppress_tokens`` and every timestamp token always, ``begin_suppress_tokens`` (a
blank, end-of-text) as the first token. Greedily by default; with ``beams=N`` by beam search, as
Hugging Face's ``WhisperForConditionalGeneration.generate(num_beams=N)`` searches (score over
length ** 1.0, its default ``early_stopping=False`` rule), the suppressions reaching every beam.
The windows decode as one batch and are joined.

A window's transcript depends on its audio alone (each starts from the start tokens, with no
text of the window before), so windows decode side by side. The steps are functions that the
command line (``transcribe_audio``) and ``attentive serve`` (which adds the windows of clips
from different requests to one running engine, ``serve/encoder_decoder.py``) share:
``audio_features`` (audio -> windows' log-Mel features), ``transcription_requests`` (features ->
engine requests, encoded once) and ``transcript`` (the windows' tokens -> text).

Dimension names: B windows, M mel bins, F frames (3000 for 30 s), S encoder positions.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..audio import N_SAMPLES, SAMPLE_RATE, log_mel_spectrogram, resample
from .config import GenerationConfig
from .engine import Engine, Request


def transcription_config(model, max_new_tokens: int | None = None, beams: int = 1) -> GenerationConfig:
    """Whisper's suppressions and end-of-text, up to the decoder's context; greedy, or a beam
    search of ``beams`` hypotheses ranked as Hugging Face ranks them."""
    config = model.config
    limit = config.max_len - len(config.start_ids)
    suppressed = tuple(config.suppress_tokens)
    if config.timestamp_begin:
        suppressed += tuple(range(config.timestamp_begin, config.vocab_size))  # no timestamps in the transcript
    search = {"num_beams": beams, "length_penalty": 1.0, "early_stopping": False} if beams > 1 else {}
    return GenerationConfig(
        max_new_tokens=limit if max_new_tokens is None else min(limit, max_new_tokens),
        temperature=0.0,
        suppress_tokens=suppressed,
        begin_suppress_tokens=tuple(config.begin_suppress_tokens),
        stop_tokens=(config.eot_id,),
        **search,
    )


@torch.no_grad()
def transcription_requests(
    model, features: Tensor, configs: GenerationConfig | list[GenerationConfig]
) -> list[Request]:
    """One engine request per window of ``features (B, M, F)``, encoded together: it starts from
    the model's start tokens and carries its window's encoder output; ``configs``: one
    ``transcription_config`` for every window, or one per window."""
    configs = [configs] * len(features) if isinstance(configs, GenerationConfig) else list(configs)
    if len(configs) != len(features):
        raise ValueError(f"{len(features)} windows but {len(configs)} settings")
    memory = model.encode(features).hidden  # (B, S, D)
    start = list(model.config.start_ids)
    return [Request(list(start), config, memory=row) for row, config in zip(memory, configs)]


@torch.no_grad()
def transcribe(
    model,
    features: Tensor,
    max_new_tokens: int | None = None,
    cache: str = "dynamic",
    engine: Engine | None = None,
    beams: int = 1,
) -> list[list[int]]:
    """Features ``(B, M, F)`` -> token ids per row (without the start tokens and ``<|endoftext|>``),
    greedy (``beams=1``) or by beam search. ``engine``: an idle ``Engine`` over ``model`` to reuse
    (a compiled static step is kept)."""
    if isinstance(beams, bool) or not isinstance(beams, int) or beams < 1:
        raise ValueError(f"beams must be a positive integer (1 = greedy), got {beams!r}")
    if engine is not None and (engine.model is not model or not engine.idle):
        raise ValueError("transcribe needs an idle Engine over the same model")
    requests = transcription_requests(model, features, transcription_config(model, max_new_tokens, beams))
    engine = engine or Engine(model, cache=cache)
    sequences = [engine.add(request) for request in requests]
    for _ in engine.run():
        pass
    return [s.tokens for s in sequences]


def greedy_transcribe(
    model, features: Tensor, max_new_tokens: int | None = None, cache: str = "dynamic", engine: Engine | None = None
) -> list[list[int]]:
    """``transcribe`` with ``beams=1``."""
    return transcribe(model, features, max_new_tokens, cache, engine)


def audio_features(model, audio, sample_rate: int) -> Tensor:
    """Mono samples in [-1, 1] at any rate -> the log-Mel features of its 30 s windows ``(B, M, F)``
    (at least one; the last one padded with silence), on the model's device and in its dtype."""
    samples = resample(audio, sample_rate, SAMPLE_RATE)  # (N,) float32 at 16 kHz
    windows = [samples[i : i + N_SAMPLES] for i in range(0, max(len(samples), 1), N_SAMPLES)]
    features = torch.stack([log_mel_spectrogram(w, model.config.n_mels) for w in windows])  # (B, M, 3000)
    param = next(model.parameters())
    return features.to(param.device, param.dtype)


def transcript(tokenizer, tokens: list[list[int]]) -> str:
    """The windows' tokens, in order, as one text (``tokenizer.decode`` drops special tokens)."""
    return " ".join(text for text in (tokenizer.decode(ids).strip() for ids in tokens) if text)


def transcribe_audio(
    model, tokenizer, audio, sample_rate: int, max_new_tokens: int | None = None, beams: int = 1
) -> str:
    """Mono samples in [-1, 1] at any rate -> transcript text (``tokenizer.decode`` drops special tokens);
    ``beams``: 1 greedy, N > 1 beam search."""
    features = audio_features(model, audio, sample_rate)  # (B, M, 3000)
    return transcript(tokenizer, transcribe(model, features, max_new_tokens, beams=beams))
