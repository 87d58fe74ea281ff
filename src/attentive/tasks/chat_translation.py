"""Translation as instruction tuning: a chat model learns to answer "Translate to English: ..."
with the reference translation; evaluated by sacreBLEU on its greedy replies.

The parallel data are any corpus spec (``data.parallel.load_pairs``: bundled Multi30k splits,
aligned files, TSV); each pair becomes a user turn and an assistant turn, rendered with the
model's chat template by ``InstructionTask`` (loss on the translation and the end-of-turn
token only, examples packed). The final evaluation translates the test sets through the
decoding engine (``evaluate.chat_translation``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..data.instruction import Example
from ..data.parallel import corpus_name, load_pairs
from ..evaluate.chat_translation import DEFAULT_PROMPT, evaluate_chat_translation
from ..fileio import atomic_write_text
from .instruction import InstructionDataConfig, InstructionTask

CHAT_TRANSLATION_FILE = "chat_translation.json"  # the prompt and language pair, for attentive evaluate


@dataclass
class ChatTranslationDataConfig(InstructionDataConfig):
    """Instruction data made from parallel sentences. ``train`` / ``valid`` / ``test`` are corpus
    specs here (``multi30k:SPLIT``, ``PREFIX.{lang}``, ``SRC,TGT``, ``FILE.tsv``), not JSONL."""

    train: str | None = "multi30k:train"
    valid: str | None = "multi30k:val"
    test: str = "multi30k:test_2016_flickr"  # ';'-separated
    src_lang: str = "de"
    tgt_lang: str = "en"
    prompt: str = DEFAULT_PROMPT  # the user message; {source} is the sentence
    train_limit: int | None = None
    valid_limit: int | None = 200
    test_limit: int | None = None
    val_bleu_sentences: int = 0  # greedy BLEU on this many validation sentences at each evaluation
    eval_max_batch: int = 32  # rows decoded at once in the BLEU evaluations

    def __post_init__(self) -> None:
        super().__post_init__()
        if "{source}" not in self.prompt:
            raise ValueError(f"prompt {self.prompt!r} has no {{source}} placeholder for the sentence")
        for name in ("train_limit", "valid_limit", "test_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be positive or None, got {value}")

    @property
    def test_specs(self) -> list[str]:
        return [s.strip() for s in (self.test or "").split(";") if s.strip()]


def _pairs(spec: str, data: ChatTranslationDataConfig, limit: int | None) -> list[tuple[str, str]]:
    pairs = load_pairs(spec, data.src_lang, data.tgt_lang).pairs
    return pairs if limit is None else pairs[:limit]


class ChatTranslationTask(InstructionTask):
    """``InstructionTask`` over translation pairs, with BLEU on the test sets at the end."""

    def __init__(self, tokenizer, data: ChatTranslationDataConfig, seed: int = 0, name: str = "chat-translation"):
        def examples(spec: str | None, limit: int | None) -> list[Example]:
            if not spec:
                return []
            return [
                Example.chat(("user", data.prompt.format(source=s)), ("assistant", t), origin=f"{spec}:{i + 1}")
                for i, (s, t) in enumerate(_pairs(spec, data, limit))
            ]

        self.valid_pairs = _pairs(data.valid, data, data.valid_limit) if data.valid else []
        self.tests = {corpus_name(s): _pairs(s, data, data.test_limit) for s in data.test_specs}
        super().__init__(
            tokenizer, examples(data.train, data.train_limit), examples(data.valid, data.valid_limit), data, seed, name
        )

    def _bleu(self, model: nn.Module, pairs: list[tuple[str, str]]) -> dict:
        return evaluate_chat_translation(
            model,
            self.tokenizer,
            [s for s, _ in pairs],
            [t for _, t in pairs],
            self.data.prompt,
            self.data.system,
            self.data.eval_max_batch,
        )

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        metrics = super().evaluate(model)
        n = min(self.data.val_bleu_sentences, len(self.valid_pairs))
        if n:
            metrics["bleu"] = self._bleu(model, self.valid_pairs[:n])["bleu"]
        return metrics

    def final_evaluate(self, model: nn.Module) -> dict[str, Any]:
        """Validation loss, then sacreBLEU (greedy) and chrF on every test set."""
        results = super().final_evaluate(model)
        for name, pairs in self.tests.items():
            scores = self._bleu(model, pairs)
            results[name] = {
                "bleu": round(scores["bleu"], 2),
                "chrf": round(scores["chrf"], 2),
                "sentences": len(pairs),
                "search": "greedy",
                "bleu_signature": scores["bleu_signature"],
            }
        return results

    def save_artifacts(self, directory: Path) -> None:
        super().save_artifacts(directory)
        atomic_write_text(
            Path(directory) / CHAT_TRANSLATION_FILE,
            json.dumps(
                {
                    "prompt": self.data.prompt,
                    "system": self.data.system,
                    "src_lang": self.data.src_lang,
                    "tgt_lang": self.data.tgt_lang,
                },
                indent=2,
            )
            + "\n",
        )
