"""Whisper-style speech models (``SpeechModel``, e.g. the shipped Whisper tiny.en).

``analyze(wav_bytes)`` reads a PCM WAV file, resamples it to 16 kHz, takes its first 30 s
window (Whisper's context), transcribes it greedily through the decoding engine
(``decode.transcriber``), then runs the encoder over the log-Mel spectrogram and the decoder
over the transcript (teacher forcing) under the attention tap: the encoder's self-attention
over audio positions, the decoder's over the transcript, and cross-attention from every
transcript token to the audio positions (two spectrogram frames each, after the stride-2
convolution). The page draws the spectrogram under the cross-attention.

Dimension names: M mel bins, F frames (100 per second), S = F / 2 encoder positions, T tokens.
"""

from __future__ import annotations

import math
import os
import tempfile

import torch

from ..audio import HOP_LENGTH, N_SAMPLES, SAMPLE_RATE, log_mel_spectrogram, read_wav, resample
from ..decode.transcriber import greedy_transcribe
from .subject import Analysis, Primary, Subject
from .weights import as_b64

MAX_AUDIO_BYTES = 16 * 1024 * 1024
MAX_TRANSCRIPT = 200  # tokens


class SpeechRecognizer(Subject):
    family = "speech"
    input_kind = "audio"
    views = ("head", "model", "cross", "ideas")
    labels = {
        "encoder": "encoder self-attention (audio)",
        "decoder": "decoder self-attention (causal)",
        "cross": "cross-attention (token -> audio)",
    }

    def info(self) -> dict:
        info = super().info()
        info.update(max_bytes=MAX_AUDIO_BYTES, n_mels=self.config.n_mels)
        return info

    def read_audio(self, data: bytes) -> tuple[torch.Tensor, float]:
        """WAV bytes -> (16 kHz mono samples of the first 30 s, the clip's length in seconds)."""
        if not data:
            raise ValueError("the audio file is empty: upload a PCM WAV file")
        if len(data) > MAX_AUDIO_BYTES:
            raise ValueError(f"the audio is {len(data):,} bytes; the explorer takes at most {MAX_AUDIO_BYTES:,}")
        fd, path = tempfile.mkstemp(suffix=".wav")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            try:
                samples, rate = read_wav(path)
            except ValueError:
                raise ValueError("the file is not PCM WAV audio (8/16/24/32-bit integer samples expected)") from None
        finally:
            os.unlink(path)
        if len(samples) == 0:
            raise ValueError("the WAV file holds no samples")
        audio = resample(samples, rate, SAMPLE_RATE)
        return audio[:N_SAMPLES], len(samples) / rate

    def _analyze(self, data: bytes, key: str) -> Analysis:
        model, config = self.model, self.config
        audio, seconds = self.read_audio(data)
        features = log_mel_spectrogram(audio, config.n_mels)[None].to(self.device)  # (1, M, 3000)
        tokens = greedy_transcribe(model, features, MAX_TRANSCRIPT)[0]
        dec_in = [*config.start_ids, *tokens]
        inputs = self.labels_of(dec_in)
        predicted = self.labels_of([*dec_in[1:], config.eot_id])
        frames = min(features.shape[-1], math.ceil(len(audio) / HOP_LENGTH))  # frames holding the audio
        positions = model.config.max_source_positions
        audio_labels = [f"{2 * i / 100:.2f}s" for i in range(min(positions, features.shape[-1] // 2))]
        stores = self.stores_for(
            {
                ("encoder", "self"): (audio_labels, audio_labels),
                ("decoder", "self"): (inputs, inputs),
                ("decoder", "cross"): (predicted, audio_labels),
            }
        )
        with self.tapped(stores), self.stream_tap(model.decoder) as stream:
            memory = model.encode(features).hidden  # (1, S, D)
            model.decode(torch.tensor([dec_in], device=self.device), memory)
        mel = features[0, :, :frames]  # (M, F)
        lo, hi = float(mel.min()), float(mel.max())
        extra = {
            "transcript": self.tokenizer.decode(tokens).strip(),
            "seconds": seconds,
            "clipped": seconds > 30.0,
            "spectrogram": {
                "mels": config.n_mels,
                "frames": frames,
                "pixels": as_b64(((mel - lo) / max(hi - lo, 1e-6) * 255).round()),
            },
            "audio_positions": math.ceil(frames / 2),
        }
        primary = Primary(
            torch.tensor([dec_in], device=self.device),
            inputs,
            model.decoder,
            "decoder",
            model.embed,
            lambda ids, key_mask: model.decode(ids, memory.expand(ids.shape[0], -1, -1), key_mask=key_mask),
        )
        return Analysis(key, self.family, {s.name: s for s in stores.values()}, primary, extra, streams=stream.layers)
