"""What the decoder-only families (LLaMA, GPT-2) share: the tokenizer with the model's stop tokens,
and the generation config an export writes.

A decoder stops at its end-of-sequence tokens, and a folder may name more of them in
``generation_config.json`` (or ``config.json``) than its tokenizer does; both lists are kept.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ...text.pretrained import PretrainedTokenizer
from ..loading import HFFolder


def load_tokenizer(folder: HFFolder) -> PretrainedTokenizer | None:
    """The folder's tokenizer (None without ``tokenizer.json``), stopping at every EOS id it names."""
    eos = folder.generation.get("eos_token_id", folder.config.get("eos_token_id"))
    stop_ids = eos if isinstance(eos, list) else [] if eos is None else [eos]
    has_tokenizer = (folder.path / "tokenizer.json").is_file()
    return PretrainedTokenizer.load(folder.path, stop_ids=stop_ids) if has_tokenizer else None


def hf_generation_config(model: nn.Module, tokenizer, config: dict[str, Any]) -> dict[str, Any]:
    """``generation_config.json``: the special token ids of ``config`` (as the tokenizer files set
    them) and every EOS id the tokenizer stops at."""
    eos = list(getattr(tokenizer, "eos_ids", None) or [])
    if not eos and config.get("eos_token_id") is not None:
        eos = [config["eos_token_id"]]
    out = {"bos_token_id": config.get("bos_token_id"), "pad_token_id": config.get("pad_token_id")}
    out["eos_token_id"] = eos[0] if len(eos) == 1 else (eos or None)
    return {k: v for k, v in out.items() if v is not None}
