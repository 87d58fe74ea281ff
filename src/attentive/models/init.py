"""Weight initialisation schemes, named so a config can choose one."""

from __future__ import annotations

import math

from torch import nn

from ..nn.embedding import OutputProjection, TokenEmbedding


def init_xavier(model: nn.Module) -> None:
    """Glorot-uniform linear weights and zero biases (the original implementation's choice)."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def init_gpt2(model: nn.Module, num_layers: int, std: float = 0.02) -> None:
    """GPT-2: N(0, 0.02) everywhere, residual output projections scaled by 1/sqrt(2 * layers)."""
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, TokenEmbedding, OutputProjection)):
            residual_out = name.endswith(("out_proj", "ffn.down"))
            nn.init.normal_(module.weight, std=std / math.sqrt(2 * num_layers) if residual_out else std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
