"""Which training loss a task whose model ends in a vocabulary head uses: fused or plain.

``linear_cross_entropy`` applies the head inside the loss a chunk of rows at a time, so the
batch's full logits never exist; on CPU it is also the faster of the two from a few thousand
classes up. Language modelling and translation make the choice the same way, here.
"""

from __future__ import annotations

from torch import nn
from torch.distributed.tensor import DTensor

from ..train.distributed import unwrap

LOSSES = ("auto", "fused", "plain")
# "auto" fuses from this vocabulary size up. On 2 CPU cores (2,048 rows, width 192 and 512, fp32
# and bf16) the fused loss took 1.2-1.6x less time at 4,096 and 8,000 classes and more at 2,048.
FUSED_LOSS_MIN_VOCAB = 4096


def check_loss_choice(choice: str) -> None:
    if choice not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {choice!r}")


def fused_head(model: nn.Module, choice: str) -> nn.Module | None:
    """The output head (``model.head``) when the training loss fuses it, else None.

    Never under FSDP: between forwards the head's weight is a shard (a DTensor), whole only
    inside ``forward``. The model must then still be called through ``forward`` (with
    ``return_hidden=True``) so that DDP's hooks see the head's weight used.
    """
    head = getattr(unwrap(model), "head", None)
    if choice == "plain" or head is None or isinstance(head.weight, DTensor):
        return None
    return head if choice == "fused" or head.weight.shape[0] >= FUSED_LOSS_MIN_VOCAB else None
