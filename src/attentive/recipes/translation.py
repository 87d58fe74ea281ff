"""Translation recipes: Multi30k German -> English, sized for 2 CPU cores or one GPU.

``attentive train --recipe multi30k-de-en [key=value ...]`` (the default recipe). The data
settings (``TranslationDataConfig``) take any corpus spec, so the same recipes train on your
own parallel data (``train=PREFIX.{lang} src_lang=.. tgt_lang=..``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..data.parallel import ParallelCorpus, corpus_name, load_pairs
from ..models.encoder_decoder import EncoderDecoderConfig
from ..decode.translator import SOURCE_TOKENIZER_FILE
from ..tasks.translation import TranslationDataConfig, TranslationTask, build_tokenizers
from ..text import load_tokenizer
from ..train.optim import OptimConfig
from ..train.trainer import TrainConfig
from .pretrained import pretrained_for
from .registry import Recipe, RecipeSpec, Settings, register_recipe

log = logging.getLogger(__name__)


def _limit(corpus: ParallelCorpus, n: int | None) -> ParallelCorpus:
    return corpus if n is None else ParallelCorpus(corpus.pairs[:n], corpus.skipped_empty, corpus.origin)


def _pretrained_tokenizers(pretrained, init: str):
    """The (target-or-joint, source or None) tokenizers an ``init=`` translator was trained with:
    an attentive translation run folder's ``tokenizer.json`` (and ``tokenizer.src.json``)."""
    tokenizer = pretrained.tokenizer
    if tokenizer is None or not hasattr(tokenizer, "to_json"):
        what = "no tokenizer" if tokenizer is None else f"a {type(tokenizer).__name__}"
        raise ValueError(
            f"init={init}: the translation recipes take an attentive translation checkpoint with its "
            f"tokenizer.json; this one has {what}, which the translation task does not read"
        )
    source_file = Path(pretrained.source) / SOURCE_TOKENIZER_FILE
    return tokenizer, load_tokenizer(source_file) if source_file.is_file() else None


def build_translation(name: str, settings: Settings) -> Recipe:
    """Read the corpora, build the tokenizer(s), the task and a freshly initialised model whose
    vocabulary sizes follow the tokenizer; with ``init=`` the checkpoint's model and tokenizer(s)."""
    data, train = settings.data, settings.train
    train_corpus = _limit(load_pairs(data.train, data.src_lang, data.tgt_lang), data.train_limit)
    if train_corpus.skipped_empty:
        log.info("%s: skipped %d pair(s) with an empty side", data.train, train_corpus.skipped_empty)
    valid = _limit(load_pairs(data.valid, data.src_lang, data.tgt_lang), data.valid_limit)
    tests = {
        corpus_name(s): _limit(load_pairs(s, data.src_lang, data.tgt_lang), data.test_limit) for s in data.test_specs
    }
    pretrained = pretrained_for(settings, settings.model)
    if pretrained is None:
        tokenizer, source_tokenizer = build_tokenizers(data, train_corpus)
    else:
        tokenizer, source_tokenizer = _pretrained_tokenizers(pretrained, settings.finetune.init)
    tie = settings.model.tie_embeddings
    if source_tokenizer is not None and "tie_embeddings" not in settings.explicit:
        tie = "output"  # two vocabularies: only the output layer can share the target embedding
    config = settings.model.replace(
        src_vocab_size=(source_tokenizer or tokenizer).vocab_size,
        tgt_vocab_size=tokenizer.vocab_size,
        tie_embeddings=tie,
    )
    max_len = config.max_len if pretrained is None else pretrained.config.max_len
    task = TranslationTask(
        data,
        tokenizer,
        train_corpus,
        valid,
        tests,
        source_tokenizer,
        seed=train.seed,
        max_len=max_len,
        run_dir=train.out_dir,
        name=name,
    )
    return Recipe(task=task, model=settings.new_model(config), train_config=train)


# 15 minutes on 2 CPU cores (~2,300 updates): pre-LN at a high peak learning rate with a short
# warm-up, annealed linearly to zero by the time budget. See README "Translation" for the runs
# behind these choices.
CPU_MODEL = EncoderDecoderConfig(
    d_model=256,
    num_heads=4,
    d_ff=1024,
    num_encoder_layers=3,
    num_decoder_layers=3,
    dropout=0.1,
    attention_dropout=0.1,
    max_len=256,
    norm_first=True,
)
CPU_DATA = TranslationDataConfig(vocab_size=8000, max_tokens=4096, val_bleu_sentences=200, eval_beam=4)
CPU_OPTIM = OptimConfig(lr=2e-3, schedule="linear", warmup_steps=300)
CPU_TRAIN = TrainConfig(
    out_dir="runs/multi30k-de-en",
    max_steps=1_000_000,
    max_minutes=15.0,
    log_every=25,
    eval_every=500,
    checkpoint_every=100,
    keep_checkpoints=5,
    clip_norm=1.0,
    precision="auto",
    device="auto",
)

# One H100/H200 (bf16), at most 10 minutes: the paper's base model with dropout 0.3 (29k sentence
# pairs over-fit quickly), pre-LN, 8k-token batches for more updates per epoch, and a step cap
# (~75 epochs) that a fast GPU reaches before the time budget; the learning rate decays linearly
# to zero by whichever of the two limits comes first.
GPU_MODEL = EncoderDecoderConfig(
    d_model=512,
    num_heads=8,
    d_ff=2048,
    num_encoder_layers=6,
    num_decoder_layers=6,
    dropout=0.3,
    attention_dropout=0.1,
    max_len=256,
    norm_first=True,
)
GPU_DATA = TranslationDataConfig(
    vocab_size=10000, max_tokens=8192, val_bleu_sentences=1014, eval_beam=4, eval_batch_tokens=20000
)
GPU_OPTIM = OptimConfig(lr=1e-3, schedule="linear", warmup_steps=1000)
GPU_TRAIN = TrainConfig(
    out_dir="runs/multi30k-de-en-gpu",
    max_steps=8000,
    max_minutes=10.0,
    log_every=50,
    eval_every=1000,
    checkpoint_every=500,
    keep_checkpoints=5,
    clip_norm=1.0,
    precision="auto",
    device="auto",
)

MULTI30K_DE_EN = register_recipe(
    RecipeSpec(
        "multi30k-de-en",
        "Multi30k German->English, 2 CPU cores, 15 min (test_2016 / test_2017 BLEU and chrF, beam 4)",
        CPU_MODEL,
        CPU_DATA,
        CPU_OPTIM,
        CPU_TRAIN,
        lambda s: build_translation("multi30k-de-en", s),
        cpu_bf16=True,
    )
)
MULTI30K_DE_EN_GPU = register_recipe(
    RecipeSpec(
        "multi30k-de-en-gpu",
        "Multi30k German->English on one H100/H200, 10 min budget (target test_2016 BLEU >= 38; not yet measured)",
        GPU_MODEL,
        GPU_DATA,
        GPU_OPTIM,
        GPU_TRAIN,
        lambda s: build_translation("multi30k-de-en-gpu", s),
        cpu_bf16=True,
    )
)
