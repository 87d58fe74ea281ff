"""Speech to text with a Whisper-style ``SpeechModel``, through the decoding engine.

The audio is resampled to 16 kHz and cut into 30 s windows (Whisper's context); each window's
log-Mel spectrogram is encoded once, and its transcript is decoded greedily from the start
tokens (``<|startoftranscript|>`` ... ``<|notimestamps|>``) with Whisper's suppressed tokens:
the config's ``suppress_tokens`` and every timestamp token always, ``begin_suppress_tokens``
(a blank, end-of-text) as the first token. The windows decode as one batch and are joined.

Dimension names: B windows, M mel bins, F frames (3000 for 30 s), S encoder positions.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..audio import N_SAMPLES, SAMPLE_RATE, log_mel_spectrogram, resample
from .config import GenerationConfig
from .engine import Engine, Request


def transcription_config(model, max_new_tokens: int | None = None, cache: str = "dynamic") -> GenerationConfig:
    """Greedy decoding with Whisper's suppressions, up to the decoder's context."""
    config = model.config
    limit = config.max_len - len(config.start_ids)
    suppressed = tuple(config.suppress_tokens)
    if config.timestamp_begin:
        suppressed += tuple(range(config.timestamp_begin, config.vocab_size))  # no timestamps in the transcript
    return GenerationConfig(
        max_new_tokens=limit if max_new_tokens is None else min(limit, max_new_tokens), temperature=0.0,
        suppress_tokens=suppressed, begin_suppress_tokens=tuple(config.begin_suppress_tokens), cache=cache,
    )


@torch.no_grad()
def greedy_transcribe(model, features: Tensor, max_new_tokens: int | None = None,
                      cache: str = "dynamic", engine: Engine | None = None) -> list[list[int]]:
    """Features ``(B, M, F)`` -> token ids per row (without the start tokens and ``<|endoftext|>``).
    ``engine``: an idle ``Engine`` over ``model`` to reuse (a compiled static step is kept)."""
    config = model.config
    memory = model.encode(features).hidden  # (B, S, D)
    if engine is not None:
        if engine.model is not model or not engine.idle:
            raise ValueError("greedy_transcribe needs an idle Engine over the same model")
        cache = engine.batch.mode
    generation = transcription_config(model, max_new_tokens, cache)
    engine = engine or Engine(model, cache=cache)
    sequences = [engine.add(Request(list(config.start_ids), generation, stop_tokens=(config.eot_id,), memory=row))
                 for row in memory]
    for _ in engine.run():
        pass
    return [s.tokens for s in sequences]


def transcribe_audio(model, tokenizer, audio, sample_rate: int, max_new_tokens: int | None = None) -> str:
    """Mono samples in [-1, 1] at any rate -> transcript text (``tokenizer.decode`` drops special tokens)."""
    samples = resample(audio, sample_rate, SAMPLE_RATE)  # (N,) float32 at 16 kHz
    windows = [samples[i:i + N_SAMPLES] for i in range(0, max(len(samples), 1), N_SAMPLES)]
    features = torch.stack([log_mel_spectrogram(w, model.config.n_mels) for w in windows])  # (B, M, 3000)
    param = next(model.parameters())
    tokens = greedy_transcribe(model, features.to(param.device, param.dtype), max_new_tokens)
    return " ".join(text for text in (tokenizer.decode(ids).strip() for ids in tokens) if text)
