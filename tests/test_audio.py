"""Audio front-end: WAV reading, band-limited resampling, Whisper log-mel parity."""

import subprocess
import wave

import numpy as np
import pytest
import torch

from attentive.audio import log_mel_spectrogram, mel_filters, read_wav, resample
from pretrained_paths import need_espeak


def _write_wav(path, frames: np.ndarray, width: int, rate: int = 8000, channels: int = 1):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(frames.tobytes())


def test_read_wav_16bit(tmp_path):
    ints = np.array([0, 16384, -32768, 32767], dtype="<i2")
    _write_wav(tmp_path / "a.wav", ints, 2, rate=16000)
    audio, rate = read_wav(tmp_path / "a.wav")
    assert rate == 16000 and audio.dtype == np.float32
    np.testing.assert_allclose(audio, [0.0, 0.5, -1.0, 32767 / 32768])


def test_read_wav_8bit_unsigned(tmp_path):
    _write_wav(tmp_path / "a.wav", np.array([128, 192, 0, 255], dtype=np.uint8), 1)
    audio, _ = read_wav(tmp_path / "a.wav")
    np.testing.assert_allclose(audio, [0.0, 0.5, -1.0, 127 / 128])


def test_read_wav_24_and_32bit(tmp_path):
    values = np.array([0, 1 << 22, -(1 << 23)], dtype=np.int32)
    raw = np.stack([(values >> s) & 0xFF for s in (0, 8, 16)], axis=1).astype(np.uint8)
    _write_wav(tmp_path / "a.wav", raw, 3)
    np.testing.assert_allclose(read_wav(tmp_path / "a.wav")[0], [0.0, 0.5, -1.0])
    _write_wav(tmp_path / "b.wav", np.array([0, 1 << 30, -(1 << 31)], dtype="<i4"), 4)
    np.testing.assert_allclose(read_wav(tmp_path / "b.wav")[0], [0.0, 0.5, -1.0])


def test_read_wav_stereo_is_averaged(tmp_path):
    left_right = np.array([[16384, 0], [-16384, -16384], [32767, -32767]], dtype="<i2")
    _write_wav(tmp_path / "s.wav", left_right, 2, channels=2)
    audio, _ = read_wav(tmp_path / "s.wav")
    np.testing.assert_allclose(audio, [0.25, -0.5, 0.0], atol=1e-6)


def test_not_a_wav_is_one_line_error(tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("this is plain text, not RIFF audio")
    with pytest.raises(ValueError, match="not a readable PCM WAV") as err:
        read_wav(bad)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="not found"):
        read_wav(tmp_path / "missing.wav")


def test_read_wav_from_memory(tmp_path):
    import io

    ints = np.array([0, 16384, -32768, 32767], dtype="<i2")
    _write_wav(tmp_path / "a.wav", ints, 2, rate=16000)
    audio, rate = read_wav(io.BytesIO((tmp_path / "a.wav").read_bytes()))  # an upload, never on disk
    assert rate == 16000
    np.testing.assert_array_equal(audio, read_wav(tmp_path / "a.wav")[0])
    with pytest.raises(ValueError, match="the uploaded file is not a readable PCM WAV"):
        read_wav(io.BytesIO(b"plain text"))


@pytest.mark.parametrize("sr_from,sr_to", [(22050, 16000), (44100, 16000), (8000, 16000)])
@pytest.mark.parametrize("freq", [440.0, 3000.0])
def test_resample_sine_accuracy(sr_from, sr_to, freq):
    x = np.sin(2 * np.pi * freq * np.arange(sr_from // 2) / sr_from)
    y = resample(x, sr_from, sr_to).numpy()
    assert len(y) == int(np.ceil(len(x) * sr_to / sr_from)) and y.dtype == np.float32
    expected = np.sin(2 * np.pi * freq * np.arange(len(y)) / sr_to)
    edge = sr_to // 50  # the filter sees zeros past both ends
    assert np.abs(y - expected)[edge:-edge].max() < 1e-4


def test_resample_removes_tones_above_new_nyquist():
    x = np.sin(2 * np.pi * 10_000 * np.arange(22050) / 22050)
    y = resample(x, 22050, 16000).numpy()
    assert np.sqrt(np.mean(y[400:-400] ** 2)) < 1e-3  # would alias to 6 kHz otherwise


def test_resample_rejects_bad_input():
    with pytest.raises(ValueError, match="positive"):
        resample(np.zeros(10), 0, 16000)
    with pytest.raises(ValueError, match="1-D"):
        resample(np.zeros((2, 10)), 8000, 16000)


# ------------------------------------------------- parity with WhisperFeatureExtractor


@pytest.fixture(scope="module")
def extractor():
    transformers = pytest.importorskip("transformers")
    return transformers.WhisperFeatureExtractor(feature_size=80)


def _reference(extractor, audio):
    return extractor(np.asarray(audio, np.float32), sampling_rate=16000, return_tensors="np").input_features[0]


def test_mel_filters_match_transformers(extractor):
    np.testing.assert_allclose(mel_filters(80).numpy(), extractor.mel_filters.T, atol=1e-12)


def test_log_mel_matches_whisper_on_noise(extractor):
    rng = np.random.default_rng(0)
    for seconds in (7, 31):  # padded and trimmed
        noise = rng.uniform(-1, 1, 16000 * seconds).astype(np.float32)
        ours = log_mel_spectrogram(noise)
        assert ours.shape == (80, 3000) and ours.dtype == torch.float32
        assert np.abs(ours.numpy() - _reference(extractor, noise)).max() < 1e-4


def test_log_mel_matches_whisper_on_espeak_speech(extractor, tmp_path):
    wav = tmp_path / "speech.wav"
    subprocess.run([need_espeak(), "-w", str(wav), "The quick brown fox jumps over the lazy dog."], check=True)
    audio, rate = read_wav(wav)
    audio16 = resample(audio, rate, 16000)
    ours = log_mel_spectrogram(audio16).numpy()
    assert np.abs(ours - _reference(extractor, audio16)).max() < 1e-4
