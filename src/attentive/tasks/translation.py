"""Translation: the paper's task at Multi30k scale (German -> English), or any parallel corpus.

The task trains a joint byte-level BPE vocabulary on the training pairs at startup (seconds;
deterministic, and checked again on resume), batches pairs by padded token count from length
buckets (``max_tokens`` source + target tokens per batch, the paper's section 5.1), and trains
through ``model(src, tgt_in)`` with label-smoothed cross-entropy summed over the non-pad target
tokens. Periodic evaluation: validation loss and greedy BLEU on the first ``val_bleu_sentences``
validation pairs. Final evaluation: the last ``average_last`` checkpoints are averaged (kept
only if that lowers the validation loss), then every test set is translated with beam search and
scored with sacreBLEU BLEU and chrF.

Corpora are named by ``train`` / ``valid`` / ``test`` specs (``data.parallel.load_pairs``);
the recipes that use this task are in ``attentive.recipes.translation``.

Dimension names: B batch, S source length, T target length, V vocabulary.
"""

from __future__ import annotations

import hashlib
import logging
import math
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..checkpoint import load_state_into, save_json, save_model, unique_state_dict
from ..data.batching import PairBatch, TokenBatchSampler, collate_pairs, pair_lengths
from ..data.parallel import ParallelCorpus
from ..decode.search import SearchConfig
from ..decode.translator import SOURCE_TOKENIZER_FILE, TRANSLATION_FILE, Translator, read_translation_info
from ..evaluate.bleu import corpus_scores
from ..fileio import atomic_write_text
from ..nn.loss import cross_entropy, linear_cross_entropy
from ..text import BPETokenizer, Tokenizer, load_tokenizer
from ..text.special import PAD_ID
from ..train.average import average_checkpoints
from ..train.run_folder import checkpoint_dirs
from ..train.task import Task
from .head_loss import check_loss_choice, fused_head

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- settings


@dataclass
class TranslationDataConfig:
    """Corpora, vocabulary, batching and evaluation of a translation run."""

    src_lang: str = "de"
    tgt_lang: str = "en"
    train: str = "multi30k:train"
    valid: str = "multi30k:val"
    test: str = "multi30k:test_2016_flickr;multi30k:test_2017_flickr"  # ';'-separated
    train_limit: int | None = None  # use the first N training pairs (quick runs, tests)
    valid_limit: int | None = None
    test_limit: int | None = None
    vocab_size: int = 8000
    joint_vocab: bool = True  # one BPE vocabulary for both languages (embeddings then all tied)
    tokenizer: str | None = None  # a tokenizer.json to use instead of training one
    max_tokens: int = 4096  # padded source + target tokens per batch (the paper: ~25k + 25k)
    bucket_width: int = 2  # lengths rounded down to this before sorting into batches
    label_smoothing: float = 0.1
    # training loss: "fused" applies the output projection inside linear_cross_entropy (no full
    # logits); "plain" materialises them; "auto": fused from head_loss.FUSED_LOSS_MIN_VOCAB tokens up
    loss: str = "auto"
    val_bleu_sentences: int = 200  # greedy BLEU on this many validation pairs at each evaluation (0: none)
    eval_beam: int = 4  # final test evaluation (the paper: 4)
    eval_alpha: float = 0.6  # GNMT length penalty (the paper: 0.6)
    max_len_b: int = 50  # output length limit: source length + this (the paper: 50)
    eval_batch_tokens: int = 6000  # source tokens per decoding batch (before the beam)
    average_last: int = 5  # average the last N checkpoints at the end if it lowers val loss (0: off)

    def __post_init__(self) -> None:
        if self.src_lang == self.tgt_lang:
            raise ValueError(f"src_lang and tgt_lang are both {self.src_lang!r}")
        for name in ("vocab_size", "max_tokens", "bucket_width", "eval_beam", "eval_batch_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("train_limit", "valid_limit", "test_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be positive or None, got {value}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.val_bleu_sentences < 0 or self.average_last < 0 or self.max_len_b < 0:
            raise ValueError("val_bleu_sentences, average_last and max_len_b must be >= 0")
        check_loss_choice(self.loss)
        if isinstance(self.test, (list, tuple)):
            self.test = ";".join(self.test)

    @property
    def test_specs(self) -> list[str]:
        return [s.strip() for s in (self.test or "").split(";") if s.strip()]

    def search_config(self, beam: int | None = None) -> SearchConfig:
        return SearchConfig(beam_size=beam or self.eval_beam, alpha=self.eval_alpha, max_len_b=self.max_len_b)


# ----------------------------------------------------------------------------- the task


def label_smoothed_loss(logits: Tensor, labels: Tensor, smoothing: float, pad_id: int = PAD_ID) -> Tensor:
    """Summed cross-entropy against ``(1 - eps) * one_hot + eps / V`` (Szegedy et al., 2016;
    the paper's section 5.4), softmax in at least float32; pad labels add nothing."""
    return cross_entropy(logits, labels, label_smoothing=smoothing, ignore_index=pad_id, reduction="sum")


class _EpochBatches(Sequence):
    """One epoch's batches for one rank, collated on access: indexable, so resume is a lookup."""

    def __init__(self, ids: list[tuple[list[int], list[int]]], index_batches: list[list[int]]):
        self.ids, self.index_batches = ids, index_batches

    def __len__(self) -> int:
        return len(self.index_batches)

    def __getitem__(self, i: int) -> PairBatch:
        return collate_pairs([self.ids[j] for j in self.index_batches[i]])


class TranslationTask(Task):
    """Source sentence in, target sentence out; loss per target token."""

    unit = "tok"

    def __init__(
        self,
        data: TranslationDataConfig,
        tokenizer: Tokenizer,
        train: ParallelCorpus,
        valid: ParallelCorpus,
        tests: dict[str, ParallelCorpus],
        source_tokenizer: Tokenizer | None = None,
        seed: int = 0,
        max_len: int = 256,
        run_dir: str | None = None,
        name: str = "translation",
    ):
        self.data, self.tokenizer, self.seed, self.name, self.run_dir = data, tokenizer, seed, name, run_dir
        self.source_tokenizer = source_tokenizer or tokenizer
        self.valid, self.tests = valid, tests
        self.train_ids = self._encode(train.pairs, max_len, "training")
        self.valid_ids = self._encode(valid.pairs, max_len, "validation", drop=False)
        self._samplers: dict[tuple[int, int], TokenBatchSampler] = {}
        # marks this run's checkpoints, so averaging never mixes in those of an older run in the same folder
        self.run_id = uuid.uuid4().hex[:12]

    def _encode(self, pairs, max_len: int, what: str, drop: bool = True) -> list[tuple[list[int], list[int]]]:
        src = self.source_tokenizer.encode_batch([s for s, _ in pairs])
        tgt = self.tokenizer.encode_batch([t for _, t in pairs])
        ids = list(zip(src, tgt))
        if drop:
            kept = [(s, t) for s, t in ids if len(s) <= max_len and len(t) + 1 <= max_len]
            if len(kept) < len(ids):
                warnings.warn(
                    f"{len(ids) - len(kept)} {what} pair(s) longer than the model's {max_len} positions were left out",
                    stacklevel=2,
                )
            ids = kept
        else:
            ids = [(s[:max_len], t[: max_len - 1]) for s, t in ids]
        if not ids:
            raise ValueError(f"no {what} pairs left to train on")
        return ids

    # ------------------------------------------------------------------ training
    def _sampler(self, rank: int, world_size: int) -> TokenBatchSampler:
        key = (rank, world_size)
        if key not in self._samplers:
            self._samplers[key] = TokenBatchSampler(
                pair_lengths(self.train_ids),
                self.data.max_tokens,
                shuffle=True,
                seed=self.seed,
                rank=rank,
                world_size=world_size,
                bucket_width=self.data.bucket_width,
                drop_too_long=True,
            )
        return self._samplers[key]

    def train_batches(self, epoch: int, rank: int = 0, world_size: int = 1) -> Sequence[PairBatch]:
        return _EpochBatches(self.train_ids, self._sampler(rank, world_size).batches(epoch))

    def count(self, batch: PairBatch) -> int:
        return batch.n_tokens

    def to_device(self, batch: PairBatch, device: torch.device) -> PairBatch:
        return batch.to(device, non_blocking=device.type == "cuda")

    def loss(self, model: nn.Module, batch: PairBatch) -> tuple[Tensor, dict[str, float]]:
        head = self._fused_head(model)
        if head is not None:
            hidden = model(batch.src, batch.tgt_in, return_hidden=True)  # (B, T, D), through forward: DDP's hooks run
            return linear_cross_entropy(
                hidden,
                head.weight,
                batch.labels,
                head.bias,
                label_smoothing=self.data.label_smoothing,
                ignore_index=PAD_ID,
                reduction="sum",
            ), {}
        logits = model(batch.src, batch.tgt_in)  # (B, T, V), through forward so wrappers see the call
        return label_smoothed_loss(logits, batch.labels, self.data.label_smoothing), {}

    def _fused_head(self, model: nn.Module) -> nn.Module | None:
        return fused_head(model, self.data.loss)

    # ------------------------------------------------------------------ evaluation
    def translator(self, model: nn.Module) -> Translator:
        return Translator(model, self.tokenizer, self.source_tokenizer)

    @torch.no_grad()
    def validation_loss(self, model: nn.Module) -> dict[str, float]:
        """Label-smoothed loss (comparable with the training loss) and plain NLL per target token."""
        device = next(model.parameters()).device
        sampler = TokenBatchSampler(
            pair_lengths(self.valid_ids),
            max(self.data.max_tokens, 4096),
            shuffle=False,
            bucket_width=self.data.bucket_width,
            drop_too_long=True,
        )
        smoothed = nll = 0.0
        tokens = 0
        for index in sampler.batches(0):
            batch = collate_pairs([self.valid_ids[i] for i in index]).to(device)
            logits = model(batch.src, batch.tgt_in)  # (B, T, V)
            smoothed += label_smoothed_loss(logits, batch.labels, self.data.label_smoothing).item()
            nll += label_smoothed_loss(logits, batch.labels, 0.0).item()
            tokens += batch.n_tokens
        return {"loss": smoothed / tokens, "nll": nll / tokens, "ppl": math.exp(nll / tokens)}

    def bleu(self, model: nn.Module, corpus: ParallelCorpus | list, beam: int, limit: int | None = None) -> dict:
        pairs = list(corpus)[:limit] if limit else list(corpus)
        hyps = self.translator(model).translate(
            [s for s, _ in pairs], self.data.search_config(beam), batch_tokens=self.data.eval_batch_tokens
        )
        return corpus_scores(hyps, [t for _, t in pairs])

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        metrics = self.validation_loss(model)
        if self.data.val_bleu_sentences:
            metrics["bleu"] = self.bleu(model, self.valid, beam=1, limit=self.data.val_bleu_sentences)["bleu"]
        return metrics

    def final_evaluate(self, model: nn.Module) -> dict[str, Any]:
        """Average the last checkpoints (if that helps), then beam-search BLEU on every test set."""
        results: dict[str, Any] = {}
        results.update(self._maybe_average(model))
        results["val"] = {k: round(v, 4) for k, v in self.validation_loss(model).items()}
        search = self.data.search_config()
        results["search"] = asdict(search)
        for label, corpus in self.tests.items():
            scores = self.bleu(model, corpus, beam=search.beam_size)
            results[label] = {
                "bleu": round(scores["bleu"], 2),
                "chrf": round(scores["chrf"], 2),
                "sentences": len(corpus),
            }
            results["bleu_signature"], results["chrf_signature"] = scores["bleu_signature"], scores["chrf_signature"]
            log.info(
                "%s: BLEU %.2f  chrF %.2f  (beam %d, %d sentences)",
                label,
                scores["bleu"],
                scores["chrf"],
                search.beam_size,
                len(corpus),
            )
        if self.tests:
            log.info("sacreBLEU signature: %s", results["bleu_signature"])
        return results

    def _maybe_average(self, model: nn.Module) -> dict[str, Any]:
        """Average the run's last ``average_last`` checkpoints into ``model`` if the validation loss
        drops, and make the run folder's weights the averaged ones."""
        n = self.data.average_last
        if n < 2 or not self.run_dir:
            return {}
        found = [p for p in checkpoint_dirs(self.run_dir) if read_translation_info(p).get("run_id") == self.run_id][-n:]
        if len(found) < 2:
            return {}
        before = self.validation_loss(model)["loss"]
        final = {k: v.clone() for k, v in unique_state_dict(model).items()}
        load_state_into(model, average_checkpoints(found), source="averaged checkpoints")
        after = self.validation_loss(model)["loss"]
        info = {
            "averaged": {
                "checkpoints": [p.name for p in found],
                "val_loss_last": round(before, 4),
                "val_loss_averaged": round(after, 4),
                "kept": after < before,
            }
        }
        if after < before:
            save_model(model, self.run_dir)
        else:
            load_state_into(model, final, source="final weights")
        log.info(
            "averaged the last %d checkpoints: val loss %.4f -> %.4f (%s)",
            len(found),
            before,
            after,
            "kept" if after < before else "not kept",
        )
        return info

    # ------------------------------------------------------------------ artefacts and resume
    def save_artifacts(self, directory: Path) -> None:
        self.tokenizer.save(directory)
        if self.source_tokenizer is not self.tokenizer:
            atomic_write_text(Path(directory) / SOURCE_TOKENIZER_FILE, self.source_tokenizer.to_json())
        info = {
            "task": "translation",
            "src_lang": self.data.src_lang,
            "tgt_lang": self.data.tgt_lang,
            "search": asdict(self.data.search_config()),
            "run_id": self.run_id,
        }
        save_json(Path(directory) / TRANSLATION_FILE, info)

    def _fingerprint(self) -> str:
        text = self.tokenizer.to_json() + self.source_tokenizer.to_json()
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def state_dict(self) -> dict[str, Any]:
        return {"tokenizer_sha256": self._fingerprint(), "run_id": self.run_id}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.run_id = state.get("run_id", self.run_id)
        saved = state.get("tokenizer_sha256")
        if saved and saved != self._fingerprint():
            raise ValueError(
                f"the tokenizer built for this run ({self._fingerprint()}) differs from the checkpoint's ({saved}): "
                "resume with the same data and vocabulary settings, or pass tokenizer=RUN_DIR/tokenizer.json"
            )

    def flops_per_unit(self, model: nn.Module) -> float | None:
        """6 x parameters touched per target token: the encoder's share scaled by source/target length."""
        enc = getattr(model, "encoder", None)
        if enc is None:
            return None
        n_enc = sum(p.numel() for p in enc.parameters())
        n_all = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
        ratio = sum(len(s) for s, _ in self.train_ids) / max(1, sum(len(t) + 1 for _, t in self.train_ids))
        return 6.0 * (n_all - n_enc + n_enc * ratio)


# ----------------------------------------------------------------------------- building


def build_tokenizers(data: TranslationDataConfig, train: ParallelCorpus) -> tuple[Tokenizer, Tokenizer | None]:
    """(target-or-joint tokenizer, separate source tokenizer or None)."""
    if data.tokenizer:
        return load_tokenizer(data.tokenizer), None
    if data.joint_vocab:
        texts = [s for s, _ in train.pairs] + [t for _, t in train.pairs]
        return BPETokenizer.train(texts, vocab_size=data.vocab_size), None
    target = BPETokenizer.train([t for _, t in train.pairs], vocab_size=data.vocab_size)
    source = BPETokenizer.train([s for s, _ in train.pairs], vocab_size=data.vocab_size)
    return target, source
