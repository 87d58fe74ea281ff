"""Audio front-end for Whisper-style models: WAV reading, resampling, log-mel features.

Shapes: audio is a 1-D float32 array/tensor of samples in [-1, 1]; the log-mel
spectrogram is ``(n_mels, 3000)`` for 30 s at 16 kHz (one frame per 10 ms).

``log_mel_spectrogram`` reproduces ``transformers.WhisperFeatureExtractor`` (itself a copy of
OpenAI's ``whisper.audio``): pad/trim to 30 s, 400-point STFT with a periodic Hann window,
hop 160, reflect-padded centre frames, power spectrum, Slaney mel filters, log10 with a
1e-10 floor, an 8 decade dynamic range below the maximum, then ``(x + 4) / 4``.
"""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

__all__ = [
    "SAMPLE_RATE",
    "N_FFT",
    "HOP_LENGTH",
    "CHUNK_SECONDS",
    "read_wav",
    "resample",
    "mel_filters",
    "pad_or_trim",
    "log_mel_spectrogram",
]

SAMPLE_RATE = 16_000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_SECONDS = 30
N_SAMPLES = SAMPLE_RATE * CHUNK_SECONDS  # 480000 samples -> 3000 frames


def read_wav(path: str | Path | BinaryIO) -> tuple[np.ndarray, int]:
    """Read a PCM WAV file as mono float32 in [-1, 1] and its sample rate.

    ``path`` may also be a binary file object (an upload held in memory, ``io.BytesIO``).
    8-bit (unsigned), 16-, 24- and 32-bit (signed) integer PCM are read; channels are
    averaged. Float or compressed WAVs are rejected with a one-line error.
    """
    is_file = hasattr(path, "read")
    source = path if is_file else str(path)
    path = Path(getattr(path, "name", None) or "the uploaded file") if is_file else Path(path)
    try:
        with wave.open(source, "rb") as wav:
            width, channels = wav.getsampwidth(), wav.getnchannels()
            rate, raw = wav.getframerate(), _read_frames(wav, width * channels)
    except FileNotFoundError:
        raise ValueError(f"WAV file not found: {path}") from None
    except (wave.Error, EOFError, RuntimeError, struct.error) as err:
        # the wave module raises a bare RuntimeError for a chunk size past the end of the file
        why = str(err) or "a chunk runs past the end of the file"
        raise ValueError(
            f"{path} is not a readable PCM WAV file ({why}); supported: integer PCM, 8/16/24/32-bit"
        ) from None
    if rate <= 0:
        raise ValueError(f"{path} has a sample rate of {rate} Hz; supported: a positive rate")
    if width not in (1, 2, 3, 4):
        raise ValueError(f"{path} has {8 * width}-bit samples; supported: 8, 16, 24, 32-bit PCM")
    raw = raw[: len(raw) - len(raw) % (width * channels)]  # a torn last frame (a truncated file) is dropped
    if width == 1:
        samples = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        samples = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif width == 3:
        bytes3 = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        ints = bytes3[:, 0] | (bytes3[:, 1] << 8) | (bytes3[:, 2] << 16)
        ints = np.where(ints >= 1 << 23, ints - (1 << 24), ints)  # sign-extend 24-bit
        samples = ints.astype(np.float32) / float(1 << 23)
    else:
        samples = (np.frombuffer(raw, "<i4").astype(np.float64) / 2.0**31).astype(np.float32)
    mono = samples.reshape(-1, channels).mean(axis=1, dtype=np.float32)
    return mono.astype(np.float32), rate


def _read_frames(wav: wave.Wave_read, frame_bytes: int) -> bytes:
    """The data chunk's bytes, read in blocks of at most 4 MiB: its header's size is a claim (a
    header may say 4 GiB for a file of 40 bytes) and ``readframes`` would allocate all of it first."""
    frames = max(1, (4 << 20) // max(frame_bytes, 1))
    blocks = []
    while block := wav.readframes(frames):
        blocks.append(block)
    return b"".join(blocks)


def _as_tensor(audio: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(audio)
    if t.dim() != 1:
        raise ValueError(f"audio has shape {tuple(t.shape)}; supported: 1-D mono samples")
    return t.to(torch.float64)


def resample(
    audio: np.ndarray | torch.Tensor,
    sr_from: int,
    sr_to: int,
    *,
    zero_crossings: int = 32,
    rolloff: float = 0.95,
    beta: float = 10.0,
) -> torch.Tensor:
    """Band-limited resampling by a Kaiser-windowed sinc, evaluated as a polyphase filter.

    With ``g = gcd(sr_from, sr_to)``, every block of ``sr_from/g`` input samples yields
    ``sr_to/g`` outputs; each output phase has its own kernel, so one strided ``conv1d``
    computes them all. The cut-off sits at ``rolloff`` times the lower Nyquist frequency.
    Returns float32, length ``ceil(len * sr_to / sr_from)``.
    """
    if sr_from <= 0 or sr_to <= 0:
        raise ValueError(f"sample rates {sr_from} -> {sr_to}; supported: positive integers")
    x = _as_tensor(audio)
    if sr_from == sr_to:
        return x.to(torch.float32)
    g = math.gcd(int(sr_from), int(sr_to))
    orig, new = sr_from // g, sr_to // g
    # Cut-off in cycles per *input* sample (0.5 = input Nyquist).
    fc = 0.5 * rolloff * min(orig, new) / orig
    half_width = zero_crossings / (2 * fc)  # window half-length in input samples
    width = math.ceil(half_width)
    # Distance (in input samples) from output phase p to tap m: p*orig/new - (m - width).
    phase = torch.arange(new, dtype=torch.float64)[:, None] * orig / new
    taps = torch.arange(2 * width + orig, dtype=torch.float64)[None, :] - width
    d = phase - taps  # (new, taps)
    ratio = (d / half_width).clamp(-1.0, 1.0)
    window = torch.special.i0(beta * torch.sqrt(1.0 - ratio**2)) / torch.special.i0(
        torch.tensor(beta, dtype=torch.float64)
    )
    window = torch.where(d.abs() <= half_width, window, torch.zeros_like(window))
    kernels = 2 * fc * torch.sinc(2 * fc * d) * window  # (new, taps)
    n_out = math.ceil(len(x) * new / orig)
    blocks = math.ceil(n_out / new)
    padded = torch.nn.functional.pad(x, (width, width + orig * blocks + orig - len(x)))
    y = torch.nn.functional.conv1d(padded[None, None], kernels[:, None], stride=orig)
    # y: (1, new, blocks') -> interleave phases: output n = block * new + phase.
    return y[0, :, :blocks].transpose(0, 1).reshape(-1)[:n_out].to(torch.float32)


def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    freq = np.asarray(freq, dtype=np.float64)
    mels = 3.0 * freq / 200.0
    log_region = freq >= 1000.0
    mels[log_region] = 15.0 + np.log(freq[log_region] / 1000.0) * (27.0 / np.log(6.4))
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    freq = 200.0 * mels / 3.0
    log_region = mels >= 15.0
    freq[log_region] = 1000.0 * np.exp(np.log(6.4) / 27.0 * (mels[log_region] - 15.0))
    return freq


def mel_filters(n_mels: int = 80, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Slaney-normalised triangular mel filters, ``(n_mels, n_fft // 2 + 1)``, as librosa makes."""
    fft_freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    mel_points = np.linspace(_hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([sample_rate / 2]))[0], n_mels + 2)
    edges = _mel_to_hz(mel_points)  # (n_mels + 2,) left / centre / right of each triangle
    gaps = np.diff(edges)
    offsets = edges[None, :] - fft_freqs[:, None]  # (freqs, n_mels + 2)
    rising = -offsets[:, :-2] / gaps[:-1]
    falling = offsets[:, 2:] / gaps[1:]
    bank = np.maximum(0.0, np.minimum(rising, falling))  # (freqs, n_mels)
    bank *= 2.0 / (edges[2:] - edges[:-2])  # Slaney: equal area per filter
    return torch.from_numpy(bank.T.copy())


def pad_or_trim(audio: np.ndarray | torch.Tensor, length: int = N_SAMPLES) -> torch.Tensor:
    """Zero-pad at the end or cut to ``length`` samples (30 s at 16 kHz by default)."""
    x = _as_tensor(audio)
    if len(x) >= length:
        return x[:length]
    return torch.nn.functional.pad(x, (0, length - len(x)))


def log_mel_spectrogram(audio_16k: np.ndarray | torch.Tensor, n_mels: int = 80) -> torch.Tensor:
    """Whisper's input features, ``(n_mels, 3000)`` float32, from 16 kHz mono audio."""
    x = pad_or_trim(audio_16k)
    window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64)
    spec = torch.stft(
        x, N_FFT, HOP_LENGTH, window=window, center=True, pad_mode="reflect", return_complex=True
    )  # (freqs, frames + 1)
    power = spec[:, :-1].abs() ** 2  # Whisper drops the last frame: 3000 frames
    mel = mel_filters(n_mels) @ power  # (n_mels, frames)
    log_spec = torch.log10(mel.clamp(min=1e-10))
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).to(torch.float32)
