"""Translation: the paper's task at Multi30k scale (German -> English), or any parallel corpus.

The task trains a joint byte-level BPE vocabulary on the training pairs at startup (seconds;
deterministic, and checked again on resume), batches pairs by padded token count from length
buckets (``max_tokens`` source + target tokens per batch, the paper's section 5.1), and trains
through ``model(src, tgt_in)`` with label-smoothed cross-entropy summed over the non-pad target
tokens. Periodic evaluation: validation loss and greedy BLEU on the first ``val_bleu_sentences``
validation pairs. Final evaluation: the last ``average_last`` checkpoints are averaged (kept
only if that lowers the validation loss), then every test set is translated with beam search and
scored with sacreBLEU BLEU and chrF.

Corpora are named by ``train`` / ``valid`` / ``test`` specs (``test`` may list several, joined
by ``;``):

* ``multi30k:SPLIT`` -- the bundled Multi30k task-1 files (train, val, test_2016_flickr,
  test_2017_flickr) in the direction ``src_lang -> tgt_lang``;
* ``PREFIX.{lang}`` -- aligned files whose names differ only in the language code
  (``data/train.{lang}.gz`` reads ``data/train.de.gz`` and ``data/train.en.gz``);
* ``SRC_FILE,TGT_FILE`` -- two aligned files, plain or gzip;
* ``FILE.tsv`` (or ``.tsv.gz``) -- ``source<TAB>target`` lines.

Recipes (``attentive train --preset NAME [key=value ...]``):

* ``multi30k-de-en`` (the default): sized for 15 minutes on 2 CPU cores.
* ``multi30k-de-en-gpu``: sized for 10 minutes on one H100/H200.

Dimension names: B batch, S source length, T target length, V vocabulary.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..data.batching import PairBatch, TokenBatchSampler, pair_lengths
from ..data.parallel import MULTI30K_SPLITS, ParallelCorpus, load_multi30k, read_parallel, read_tsv
from ..decode.search import SearchConfig
from ..decode.translator import SOURCE_TOKENIZER_FILE, TRANSLATION_FILE, Translator
from ..evaluate.bleu import corpus_scores
from ..models.encoder_decoder import EncoderDecoder, EncoderDecoderConfig
from ..nn.loss import cross_entropy, linear_cross_entropy
from ..text import BPETokenizer, Tokenizer, load_tokenizer
from ..text.special import BOS_ID, EOS_ID, PAD_ID
from ..train.optim import OptimConfig
from ..train.recipes import Recipe, register_recipe, split_overrides
from ..train.trainer import TrainConfig
from .base import Task
from .head_loss import check_loss_choice, fused_head

# ----------------------------------------------------------------------------- corpora


def load_pairs(spec: str, src_lang: str = "de", tgt_lang: str = "en") -> ParallelCorpus:
    """Read a corpus spec (see the module docstring). Errors name the file and line."""
    spec = spec.strip()
    if not spec:
        raise ValueError("empty corpus spec; expected multi30k:SPLIT, PREFIX.{lang}, SRC,TGT or FILE.tsv")
    if spec.startswith("multi30k:"):
        split = spec.split(":", 1)[1]
        if split not in MULTI30K_SPLITS:
            raise ValueError(f"unknown Multi30k split {split!r} in {spec!r}; expected one of {MULTI30K_SPLITS}")
        return ParallelCorpus(load_multi30k(split, src_lang, tgt_lang), 0, spec)
    if "{lang}" in spec:
        src, tgt = spec.replace("{lang}", src_lang), spec.replace("{lang}", tgt_lang)
    elif "," in spec:
        src, tgt = (p.strip() for p in spec.split(",", 1))
    elif spec.endswith((".tsv", ".tsv.gz")):
        _exists(spec)
        return read_tsv(spec)
    else:
        raise ValueError(f"corpus spec {spec!r} is not multi30k:SPLIT, PREFIX.{{lang}}, SRC_FILE,TGT_FILE or FILE.tsv")
    _exists(src)
    _exists(tgt)
    return read_parallel(src, tgt)


def _exists(path: str) -> None:
    if not Path(path).is_file():
        raise FileNotFoundError(f"corpus file {path} does not exist")


def corpus_name(spec: str) -> str:
    """A short label for results: ``multi30k:test_2016_flickr`` -> ``test_2016_flickr``."""
    return spec.split(":", 1)[1] if spec.startswith("multi30k:") else Path(spec.split(",")[0]).name


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


def _pad(rows: list[list[int]], width: int, pad_id: int) -> Tensor:
    """Right-pad id lists into ``(B, width)`` with one vectorised write (no per-row tensor ops)."""
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    out = np.full((len(rows), width), pad_id, dtype=np.int64)  # (B, width)
    out[np.arange(width)[None, :] < lengths[:, None]] = np.fromiter(itertools.chain.from_iterable(rows),
                                                                    dtype=np.int64, count=int(lengths.sum()))
    return torch.from_numpy(out)


def collate_fast(pairs: list[tuple[list[int], list[int]]]) -> PairBatch:
    """``collate_pairs`` (decoder input BOS + y, labels y + EOS, pad 0), a few times faster: a
    25k-token batch takes ~2 ms instead of ~20, which matters when a GPU step takes ~50 ms."""
    src = [s for s, _ in pairs]
    tgt_in = [[BOS_ID, *t] for _, t in pairs]
    labels = [[*t, EOS_ID] for _, t in pairs]
    width = max(len(t) for t in tgt_in)
    return PairBatch(
        src=_pad(src, max(max(len(s) for s in src), 1), PAD_ID),  # (B, S)
        tgt_in=_pad(tgt_in, width, PAD_ID),  # (B, T)
        labels=_pad(labels, width, PAD_ID),  # (B, T)
        n_tokens=sum(len(y) for y in labels),
    )


class _EpochBatches(Sequence):
    """One epoch's batches for one rank, collated on access: indexable, so resume is a lookup."""

    def __init__(self, ids: list[tuple[list[int], list[int]]], index_batches: list[list[int]]):
        self.ids, self.index_batches = ids, index_batches

    def __len__(self) -> int:
        return len(self.index_batches)

    def __getitem__(self, i: int) -> PairBatch:
        return collate_fast([self.ids[j] for j in self.index_batches[i]])


class TranslationTask(Task):
    """Source sentence in, target sentence out; loss per target token."""

    unit = "tok"

    def __init__(self, data: TranslationDataConfig, tokenizer: Tokenizer, train: ParallelCorpus,
                 valid: ParallelCorpus, tests: dict[str, ParallelCorpus], source_tokenizer: Tokenizer | None = None,
                 seed: int = 0, max_len: int = 256, run_dir: str | None = None, name: str = "translation"):
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
                warnings.warn(f"{len(ids) - len(kept)} {what} pair(s) longer than the model's {max_len} positions "
                              "were left out", stacklevel=2)
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
                pair_lengths(self.train_ids), self.data.max_tokens, shuffle=True, seed=self.seed, rank=rank,
                world_size=world_size, bucket_width=self.data.bucket_width, drop_too_long=True,
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
            return linear_cross_entropy(hidden, head.weight, batch.labels, head.bias,
                                        label_smoothing=self.data.label_smoothing, ignore_index=PAD_ID,
                                        reduction="sum"), {}
        logits = model(batch.src, batch.tgt_in)  # (B, T, V), through forward so wrappers see the call
        return label_smoothed_loss(logits, batch.labels, self.data.label_smoothing), {}

    def _fused_head(self, model: nn.Module) -> nn.Module | None:
        return fused_head(model, "generator", self.data.loss)

    # ------------------------------------------------------------------ evaluation
    def translator(self, model: nn.Module) -> Translator:
        return Translator(model, self.tokenizer, self.source_tokenizer)

    @torch.no_grad()
    def validation_loss(self, model: nn.Module) -> dict[str, float]:
        """Label-smoothed loss (comparable with the training loss) and plain NLL per target token."""
        device = next(model.parameters()).device
        sampler = TokenBatchSampler(pair_lengths(self.valid_ids), max(self.data.max_tokens, 4096), shuffle=False,
                                    bucket_width=self.data.bucket_width, drop_too_long=True)
        smoothed = nll = 0.0
        tokens = 0
        for index in sampler.batches(0):
            batch = collate_fast([self.valid_ids[i] for i in index]).to(device)
            logits = model(batch.src, batch.tgt_in)  # (B, T, V)
            smoothed += label_smoothed_loss(logits, batch.labels, self.data.label_smoothing).item()
            nll += label_smoothed_loss(logits, batch.labels, 0.0).item()
            tokens += batch.n_tokens
        return {"loss": smoothed / tokens, "nll": nll / tokens, "ppl": math.exp(nll / tokens)}

    def bleu(self, model: nn.Module, corpus: ParallelCorpus | list, beam: int, limit: int | None = None) -> dict:
        pairs = list(corpus)[:limit] if limit else list(corpus)
        hyps = self.translator(model).translate([s for s, _ in pairs], self.data.search_config(beam),
                                                batch_tokens=self.data.eval_batch_tokens)
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
            results[label] = {"bleu": round(scores["bleu"], 2), "chrf": round(scores["chrf"], 2),
                              "sentences": len(corpus)}
            results["bleu_signature"], results["chrf_signature"] = scores["bleu_signature"], scores["chrf_signature"]
            print(f"{label}: BLEU {scores['bleu']:.2f}  chrF {scores['chrf']:.2f}  "
                  f"(beam {search.beam_size}, {len(corpus)} sentences)")
        if self.tests:
            print(f"sacreBLEU signature: {results['bleu_signature']}")
        return results

    def _maybe_average(self, model: nn.Module) -> dict[str, Any]:
        """Average the run's last ``average_last`` checkpoints into ``model`` if the validation loss
        drops, and make the run folder's weights the averaged ones."""
        from ..train.average import average_checkpoints, recent_checkpoints
        from ..train.checkpoint import load_state_into, save_tensors, unique_state_dict

        n = self.data.average_last
        if n < 2 or not self.run_dir or not (Path(self.run_dir) / "checkpoints").is_dir():
            return {}
        found = [p for p in recent_checkpoints(self.run_dir, 10**9)
                 if read_translation_info(p).get("run_id") == self.run_id][-n:]
        if len(found) < 2:
            return {}
        before = self.validation_loss(model)["loss"]
        final = {k: v.clone() for k, v in unique_state_dict(model).items()}
        load_state_into(model, average_checkpoints(found), source="averaged checkpoints")
        after = self.validation_loss(model)["loss"]
        info = {"averaged": {"checkpoints": [p.name for p in found], "val_loss_last": round(before, 4),
                             "val_loss_averaged": round(after, 4), "kept": after < before}}
        if after < before:
            save_tensors(Path(self.run_dir) / "model.safetensors", unique_state_dict(model), metadata={"format": "pt"})
            print(f"averaged the last {len(found)} checkpoints: val loss {before:.4f} -> {after:.4f} (kept)")
        else:
            load_state_into(model, final, source="final weights")
            print(f"averaged the last {len(found)} checkpoints: val loss {before:.4f} -> {after:.4f} (not kept)")
        return info

    # ------------------------------------------------------------------ artefacts and resume
    def save_artifacts(self, directory: Path) -> None:
        self.tokenizer.save(directory)
        if self.source_tokenizer is not self.tokenizer:
            from ..fileio import atomic_write_text

            atomic_write_text(Path(directory) / SOURCE_TOKENIZER_FILE, self.source_tokenizer.to_json())
        info = {"task": "translation", "src_lang": self.data.src_lang, "tgt_lang": self.data.tgt_lang,
                "search": asdict(self.data.search_config()), "run_id": self.run_id}
        from ..train.checkpoint import save_json

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


def cpu_supports_bf16() -> bool:
    """True on CPUs with native bf16 arithmetic (AVX512-BF16 or AMX), where autocast pays off."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _runs_on_cpu(device: str) -> bool:
    return device == "cpu" or (device == "auto" and not torch.cuda.is_available())


def _limit(corpus: ParallelCorpus, n: int | None) -> ParallelCorpus:
    return corpus if n is None else ParallelCorpus(corpus.pairs[:n], corpus.skipped_empty, corpus.origin)


def build_translation_recipe(name: str, model: EncoderDecoderConfig, data: TranslationDataConfig,
                             optim: OptimConfig, train: TrainConfig, overrides: dict[str, Any]) -> Recipe:
    """Route ``key=value`` overrides to the model, data, optimiser or trainer settings, read the
    corpora, build the tokenizer(s), the task and a freshly initialised model."""
    model_o, data_o, optim_o, train_o = split_overrides(overrides, model, data, optim, train)
    data = replace(data, **data_o)
    optim = replace(optim, **optim_o)
    train = replace(train, **train_o, optim=optim)
    train_corpus = _limit(load_pairs(data.train, data.src_lang, data.tgt_lang), data.train_limit)
    if train_corpus.skipped_empty:
        print(f"{data.train}: skipped {train_corpus.skipped_empty} pair(s) with an empty side")
    valid = _limit(load_pairs(data.valid, data.src_lang, data.tgt_lang), data.valid_limit)
    tests = {corpus_name(s): _limit(load_pairs(s, data.src_lang, data.tgt_lang), data.test_limit)
             for s in data.test_specs}
    tokenizer, source_tokenizer = build_tokenizers(data, train_corpus)
    src_vocab = (source_tokenizer or tokenizer).vocab_size
    tie = model_o.pop("tie_embeddings", model.tie_embeddings if source_tokenizer is None else "output")
    config = model.replace(src_vocab_size=src_vocab, tgt_vocab_size=tokenizer.vocab_size, tie_embeddings=tie,
                           **model_o)
    if optim.schedule == "noam":
        optim.model_dim = config.d_model
    if train.precision == "auto" and _runs_on_cpu(train.device) and cpu_supports_bf16():
        train = replace(train, precision="bf16")  # native bf16 matmuls: twice the fp32 speed on AVX512-BF16
    task = TranslationTask(data, tokenizer, train_corpus, valid, tests, source_tokenizer, seed=train.seed,
                           max_len=config.max_len, run_dir=train.out_dir, name=name)
    torch.manual_seed(train.seed)  # the same initial weights for the same seed
    return Recipe(task=task, model=EncoderDecoder(config), train_config=train)


# ----------------------------------------------------------------------------- recipes

# 15 minutes on 2 CPU cores (~2,300 updates): pre-LN at a high peak learning rate with a short
# warm-up, annealed linearly to zero by the time budget. See README "Translation" for the runs
# behind these choices.
CPU_MODEL = EncoderDecoderConfig(
    d_model=256, num_heads=4, d_ff=1024, num_encoder_layers=3, num_decoder_layers=3, dropout=0.1,
    attention_dropout=0.1, max_len=256, norm_first=True,
)
CPU_DATA = TranslationDataConfig(vocab_size=8000, max_tokens=4096, val_bleu_sentences=200, eval_beam=4)
CPU_OPTIM = OptimConfig(lr=2e-3, schedule="linear", warmup_steps=300)
CPU_TRAIN = TrainConfig(
    out_dir="runs/multi30k-de-en", max_steps=1_000_000, max_minutes=15.0, log_every=25, eval_every=500,
    checkpoint_every=100, keep_checkpoints=5, clip_norm=1.0, precision="auto", device="auto",
)

# One H100/H200 (bf16), at most 10 minutes: the paper's base model with dropout 0.3 (29k sentence
# pairs over-fit quickly), pre-LN, 8k-token batches for more updates per epoch, and a step cap
# (~75 epochs) that a fast GPU reaches before the time budget; the learning rate decays linearly
# to zero by whichever of the two limits comes first.
GPU_MODEL = EncoderDecoderConfig(
    d_model=512, num_heads=8, d_ff=2048, num_encoder_layers=6, num_decoder_layers=6, dropout=0.3,
    attention_dropout=0.1, max_len=256, norm_first=True,
)
GPU_DATA = TranslationDataConfig(vocab_size=10000, max_tokens=8192, val_bleu_sentences=1014, eval_beam=4,
                                 eval_batch_tokens=20000)
GPU_OPTIM = OptimConfig(lr=1e-3, schedule="linear", warmup_steps=1000)
GPU_TRAIN = TrainConfig(
    out_dir="runs/multi30k-de-en-gpu", max_steps=8000, max_minutes=10.0, log_every=50, eval_every=1000,
    checkpoint_every=500, keep_checkpoints=5, clip_norm=1.0, precision="auto", device="auto",
)


@register_recipe(
    "multi30k-de-en",
    "Multi30k German->English, 2 CPU cores, 15 min (measured: test_2016 BLEU 40.1, test_2017 35.9, beam 4)",
)
def multi30k_de_en(overrides: dict[str, Any]) -> Recipe:
    return build_translation_recipe("multi30k-de-en", CPU_MODEL, CPU_DATA, CPU_OPTIM, CPU_TRAIN, overrides)


@register_recipe(
    "multi30k-de-en-gpu",
    "Multi30k German->English on one H100/H200, 10 min budget (target test_2016 BLEU >= 38; not yet measured)",
)
def multi30k_de_en_gpu(overrides: dict[str, Any]) -> Recipe:
    return build_translation_recipe("multi30k-de-en-gpu", GPU_MODEL, GPU_DATA, GPU_OPTIM, GPU_TRAIN, overrides)


def read_translation_info(directory: str | Path) -> dict[str, Any]:
    """The language pair and search settings a run saved beside its weights ({} if none)."""
    path = Path(directory) / TRANSLATION_FILE
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err.msg})") from None
