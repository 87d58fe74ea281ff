"""Where a recipe's model comes from: fresh weights, or pretrained ones (``init=``), trained
whole or through LoRA adapters.

Every recipe takes these settings (routed after the model, data, optimiser and trainer ones)::

    init=SPEC              any model spec attentive.from_pretrained takes: a bundled model's short
                           name (smollm2), a GGUF file (dequantised), a Hugging Face folder, a
                           CTranslate2 Whisper folder, an attentive run folder, or a hub id; the
                           tokenizer comes with them
    finetune=full|lora     train every weight, or freeze them all and train LoRA adapters
    lora_rank=8 lora_alpha=16 lora_dropout=0.0 lora_targets=q_proj,v_proj

With ``init`` the model's shape comes from the weights, so model settings (``d_model=...``) are
refused rather than silently ignored; the recipe's family must match the weights' family.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import ModelConfig, build_model
from ..lora import LoRAConfig, add_lora
from ..train.optim import OptimConfig
from ..train.trainer import TrainConfig

FINETUNE_METHODS = ("full", "lora")


@dataclass
class FinetuneConfig:
    init: str | None = None  # pretrained weights to start from (None: freshly initialised)
    finetune: str = "full"  # full: every weight trains; lora: frozen weights + trained LoRA adapters
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")

    def __post_init__(self) -> None:
        if self.finetune not in FINETUNE_METHODS:
            raise ValueError(f"finetune must be one of {FINETUNE_METHODS}, got {self.finetune!r}")
        self.lora()  # LoRA settings are checked whether used or not: a bad value is a typo to report

    def lora(self) -> LoRAConfig:
        return LoRAConfig(
            rank=self.lora_rank, alpha=self.lora_alpha, dropout=self.lora_dropout, targets=self.lora_targets
        )

    @property
    def base(self) -> str | None:
        """``init`` as the adapter folder records it: an absolute path when it is a local one."""
        if self.init is None:
            return None
        path = Path(self.init).expanduser()
        return str(path.resolve()) if path.exists() else self.init


@dataclass
class Settings:
    """A recipe's configs after the overrides, and which keys the user set explicitly. (Defined
    here, beside the code its methods call, so that this module needs nothing from the registry.)"""

    model: ModelConfig
    data: Any
    train: TrainConfig
    explicit: set[str] = field(default_factory=set)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    _pretrained: Any = field(default=None, repr=False)

    @property
    def optim(self) -> OptimConfig:
        return self.train.optim

    def new_model(self, config: ModelConfig) -> nn.Module:
        """The model to train: freshly initialised from ``config`` (the same weights for the same
        seed), or the ``init=`` weights; wrapped with LoRA adapters for ``finetune=lora``."""
        return initial_model(self, config)

    def pretrained(self):
        """The ``Pretrained`` (model + tokenizer) that ``init=`` names, read once; None without init."""
        if self.finetune.init is None:
            return None
        if self._pretrained is None:
            self._pretrained = load_init(self.finetune)
        return self._pretrained


def load_init(finetune: FinetuneConfig):
    """The ``Pretrained`` (model + tokenizer) that ``init`` names."""
    from ..interop.resolve import from_pretrained

    return from_pretrained(finetune.base, optimize=False)  # trained from: the plain model


def pretrained_for(settings: Settings, config: ModelConfig):
    """The ``init`` Pretrained (None without init), checked to be of the recipe's family."""
    pre = settings.pretrained()
    if pre is not None and pre.kind != config.model_type:
        raise ValueError(
            f"init={settings.finetune.init} holds a {pre.kind} model; this recipe trains {config.model_type} models"
        )
    return pre


def initial_model(settings: Settings, config: ModelConfig) -> nn.Module:
    """The model a recipe trains: ``config`` freshly initialised, or the ``init`` weights (whose
    family must be the recipe's), then wrapped with LoRA for ``finetune=lora``."""
    finetune = settings.finetune
    torch.manual_seed(settings.train.seed)
    if finetune.init is None:
        model = build_model(config)
    else:
        pre = pretrained_for(settings, config)
        shaped = sorted(settings.explicit & set(config.field_names()))
        if shaped:
            raise ValueError(
                f"init={finetune.init} takes the model from its weights; model settings "
                f"({', '.join(shaped)}) do not apply"
            )
        model = pre.model.train()
    if finetune.finetune == "lora":
        torch.manual_seed(settings.train.seed)  # the adapters' initial A matrices
        add_lora(model, finetune.lora(), base=finetune.base)
    return model
