"""Text in, text out: a trained encoder-decoder with its tokenizer(s), for the CLI and evaluation.

``Translator.from_checkpoint(DIR)`` reads ``config.json`` + ``model.safetensors`` and the
tokenizer saved beside them (``tokenizer.json``; a separate source vocabulary, when the run
used one, in ``tokenizer.src.json``). ``translate(texts)`` sorts sentences by length, decodes
them in batches of about ``batch_tokens`` source tokens and returns the outputs in input order.

Each sentence is one request to the decoding engine (``requests``: the sentences are encoded
together, each request carries its encoder output and its search settings), and the request's
tokens are the translation (``text``: its detokenised form). ``translate_ids`` runs those
requests on an engine of its own; ``attentive serve`` adds them to the model's running engine,
beside other clients' sentences (``serve/encoder_decoder.py``): the same requests, so the same
tokens.

Bad input: an empty (or blank) sentence gets an empty translation without touching the model;
a sentence longer than the model's ``max_len`` positions is cut to its first ``max_len`` tokens
with a warning (the rest of it is not translated).

Dimension names: B sentences, S source length, T output length, H heads, L layers.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..data.batching import pad_sequences
from ..text.tokenizer import TOKENIZER_FILE, Tokenizer, load_tokenizer
from .config import EngineConfig, GenerationConfig
from .engine import Engine, Request
from .search import SearchConfig, beam_settings, output_limits

SOURCE_TOKENIZER_FILE = "tokenizer.src.json"  # only when source and target vocabularies differ
TRANSLATION_FILE = "translation.json"  # language pair, written by the translation task


@dataclass
class CrossAttention:
    """Cross-attention of one translated sentence: which source tokens each output token read."""

    weights: Tensor  # (L, H, T, S): layer, head, output token (incl. EOS), source token
    source_tokens: list[str]
    output_tokens: list[str]  # the output tokens then "</s>"
    translation: str


class Translator:
    def __init__(
        self, model, tokenizer: Tokenizer, source_tokenizer: Tokenizer | None = None, info: dict | None = None
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.source_tokenizer = source_tokenizer or tokenizer
        self.info = info or {}
        self.device = next(model.parameters()).device

    @classmethod
    def from_checkpoint(cls, directory: str | Path, device: str | torch.device = "cpu", model=None) -> Translator:
        """Load model and tokenizer(s); any missing or unreadable file is a one-line ValueError.
        ``model``: the folder's model, already read (e.g. by ``attentive.from_pretrained``)."""
        from ..checkpoint import load_model

        directory = Path(directory)
        model = load_model(directory, device=device) if model is None else model
        if not hasattr(model, "encode") or not hasattr(model, "decode"):
            raise ValueError(f"{directory} holds a {type(model).__name__}, not an encoder-decoder translation model")
        if not (directory / TOKENIZER_FILE).exists():
            raise ValueError(f"{directory} has no {TOKENIZER_FILE}: it is not a translation checkpoint")
        tokenizer = load_tokenizer(directory / TOKENIZER_FILE)
        source = directory / SOURCE_TOKENIZER_FILE
        source_tokenizer = load_tokenizer(source) if source.exists() else None
        info = {}
        if (directory / TRANSLATION_FILE).exists():
            try:
                info = json.loads((directory / TRANSLATION_FILE).read_text())
            except json.JSONDecodeError as err:
                raise ValueError(f"{directory / TRANSLATION_FILE} is not valid JSON ({err.msg})") from None
        for name, tok, size in (
            ("target", tokenizer, model.config.tgt_vocab_size),
            ("source", source_tokenizer or tokenizer, model.config.src_vocab_size),
        ):
            if tok.vocab_size != size:
                raise ValueError(f"{directory}: {name} tokenizer has {tok.vocab_size} ids, the model expects {size}")
        return cls(model, tokenizer, source_tokenizer, info)

    def search_config(
        self, beam: int | None = None, alpha: float | None = None, max_len_b: int | None = None
    ) -> SearchConfig:
        """The search settings the run saved (``translation.json``'s ``search``), each replaced by
        an argument that is not None; the paper's (beam 4, alpha 0.6, +50 tokens) where neither says.
        The one place a translator's beam settings are read (command line, server, explorer)."""
        saved, paper = self.info.get("search") or {}, SearchConfig()
        return SearchConfig(
            beam_size=beam if beam is not None else saved.get("beam_size", paper.beam_size),
            alpha=alpha if alpha is not None else saved.get("alpha", paper.alpha),
            max_len_b=max_len_b if max_len_b is not None else saved.get("max_len_b", paper.max_len_b),
        )

    @property
    def pad_id(self) -> int:
        """The padding id the model was trained with (its config), the one source of it."""
        return int(self.model.config.pad_id)

    @property
    def max_source_len(self) -> int:
        return int(self.model.config.max_len)

    def encode_sources(self, texts: list[str]) -> list[list[int]]:
        """Token ids per sentence, truncated (with a warning) to the model's ``max_len``."""
        ids = self.source_tokenizer.encode_batch([t.strip() for t in texts])
        limit = self.max_source_len
        long = [i for i, x in enumerate(ids) if len(x) > limit]
        if long:
            warnings.warn(
                f"{len(long)} sentence(s) longer than the model's {limit} positions were truncated "
                f"to their first {limit} tokens (first: input line {long[0] + 1})",
                stacklevel=2,
            )
        return [x[:limit] for x in ids]

    def settings(self, config: SearchConfig) -> GenerationConfig:
        """``config`` as one sentence's request settings (its length limit is filled in per sentence):
        beam search for ``beam_size > 1``, greedy search otherwise (``decode.search``'s settings)."""
        eos = self.tokenizer.eos_id
        if config.beam_size > 1:
            return beam_settings(config, eos)
        return GenerationConfig(temperature=0.0, logprobs=0, force_stop_at_limit=True, stop_tokens=(eos,))

    @torch.no_grad()
    def requests(self, sources: list[list[int]], configs: SearchConfig | list[SearchConfig]) -> list[Request]:
        """One engine request per source (none may be empty), with its search settings (one
        ``config`` for all, or one per source): the sources are encoded together, as one padded
        batch, and each request carries its sentence's encoder output, starts from BOS and may
        take source length + ``max_len_b`` + 1 tokens (capped by the decoder's positions), the
        end-of-sequence token forced at that limit. Its sequence's ``tokens`` are the translation."""
        configs = [configs] * len(sources) if isinstance(configs, SearchConfig) else list(configs)
        if len(configs) != len(sources):
            raise ValueError(f"{len(sources)} sources but {len(configs)} search configs")
        if not all(sources):
            raise ValueError("an empty source has no request (its translation is empty)")
        src = pad_sequences(sources, self.pad_id).to(self.device)  # (B, S)
        src_valid = src != self.pad_id  # (B, S)
        memory = self.model.encode(src, src_valid).hidden  # (B, S, D)
        extra = torch.tensor([c.max_len_b for c in configs], device=self.device)  # (B,)
        limits = output_limits(src_valid, extra, self.model).tolist()  # (B,)
        return [
            Request(
                [self.tokenizer.bos_id],
                self.settings(config).replace(max_new_tokens=int(limit)),
                memory=memory[i],
                memory_key_mask=src_valid[i],
            )
            for i, (config, limit) in enumerate(zip(configs, limits))
        ]

    def text(self, ids: list[int]) -> str:
        """A translation's text (an empty output is an empty text)."""
        return self.tokenizer.decode(ids) if ids else ""

    def translate_ids(
        self, sources: list[list[int]], config: SearchConfig | None = None, batch_tokens: int = 4000
    ) -> list[list[int]]:
        """Output ids per source (empty source -> empty output), in input order."""
        config = config or SearchConfig()
        if isinstance(batch_tokens, bool) or not isinstance(batch_tokens, int) or batch_tokens < 1:
            raise ValueError(f"batch_tokens must be a positive number of source tokens, got {batch_tokens!r}")
        outputs: list[list[int]] = [[] for _ in sources]
        order = sorted((i for i, s in enumerate(sources) if s), key=lambda i: len(sources[i]))
        rows = max(1, batch_tokens // max(config.beam_size, 1))
        start = 0
        while start < len(order):
            width = len(sources[order[start]])
            end = start + 1
            while end < len(order) and (end - start + 1) * max(width, len(sources[order[end]])) <= rows:
                width = max(width, len(sources[order[end]]))
                end += 1
            chunk = order[start:end]
            engine = Engine(self.model, EngineConfig(cache=config.cache, pad_id=self.pad_id))
            sequences = [engine.add(r) for r in self.requests([sources[i] for i in chunk], config)]
            for _ in engine.run():
                pass
            for i, sequence in zip(chunk, sequences):
                outputs[i] = sequence.tokens
            start = end
        return outputs

    def translate(self, texts: list[str], config: SearchConfig | None = None, batch_tokens: int = 4000) -> list[str]:
        """Detokenised translations, one per input sentence."""
        outputs = self.translate_ids(self.encode_sources(texts), config, batch_tokens)
        return [self.text(ids) for ids in outputs]

    @torch.no_grad()
    def cross_attention(self, text: str, config: SearchConfig | None = None) -> CrossAttention:
        """Translate ``text``, then re-run the decoder over its output with the weights kept."""
        src_ids = self.encode_sources([text])[0]
        if not src_ids:
            raise ValueError("cannot show attention for an empty sentence")
        out_ids = self.translate_ids([src_ids], config)[0]
        src = torch.tensor([src_ids], device=self.device)  # (1, S)
        tgt_in = torch.tensor([[self.tokenizer.bos_id, *out_ids]], device=self.device)  # (1, T)
        src_valid = src != self.pad_id
        memory = self.model.encode(src, src_valid).hidden  # (1, S, D)
        decoded = self.model.decode(tgt_in, memory, src_valid, need_weights=True)
        weights = torch.stack([w[0] for w in decoded.cross_attentions]).float().cpu()  # (L, H, T, S)
        return CrossAttention(
            weights=weights,
            source_tokens=[_display(self.source_tokenizer, i) for i in src_ids],
            output_tokens=[_display(self.tokenizer, i) for i in out_ids]
            + [self.tokenizer.id_to_token(self.tokenizer.eos_id)],
            translation=self.tokenizer.decode(out_ids),
        )


def _display(tokenizer: Tokenizer, token_id: int) -> str:
    """A token as readable text (byte-level pieces decoded; a leading space shown as '▁')."""
    text = tokenizer.decode([token_id], skip_special=False)
    if not text.isprintable():  # part of a multi-byte character, or a control byte
        return tokenizer.id_to_token(token_id)
    return "▁" + text[1:] if text.startswith(" ") else text


def read_translation_info(directory: str | Path) -> dict[str, Any]:
    """The language pair and search settings a run saved beside its weights ({} if none)."""
    path = Path(directory) / TRANSLATION_FILE
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err.msg})") from None
