"""A Hugging Face hub name (``org/model``) -> its files in the local cache.

``from_pretrained`` calls ``download`` for a name that is not a local path. Only what attentive
reads is fetched (safetensors weights, JSON configs, text and Jinja files, sentence-transformers
pooling), never pickled weights, so nothing fetched can run code.
"""

from __future__ import annotations

from pathlib import Path

from ..text.files import first_line

PATTERNS = ("*.json", "*.safetensors", "*.txt", "*.jinja", "1_Pooling/*")


def download(name: str, revision: str | None) -> Path:
    """A hub repository id -> its local snapshot folder (safetensors, JSON and text files only)."""
    if name.count("/") != 1 or name.startswith((".", "/", "~")):
        raise ValueError(f"{name} does not exist (and is not a Hugging Face hub name like org/model)")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ValueError(
            f"{name} is not a local path, and downloading it needs huggingface_hub (pip install huggingface_hub)"
        ) from None
    try:
        return Path(snapshot_download(name, revision=revision, allow_patterns=list(PATTERNS)))
    except Exception as err:  # offline, unknown repo, gated, ...
        raise ValueError(
            f"{name} is not a local file or folder, and could not be fetched from the Hugging Face hub "
            f"({type(err).__name__}: {first_line(err)})"
        ) from None
