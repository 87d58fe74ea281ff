"""Instruction tuning: a pretrained language model learns to answer, from prompts and answers.

Each example (``data.instruction``: a conversation or a prompt/completion pair) is rendered
with the model's own chat template and tokenised piece by piece: the text each assistant turn
adds (its content and the end-of-turn token) carries the loss, everything before it (system
prompt, user turns, the ``<|im_start|>assistant`` header) does not. Without a chat template
(``format=plain``) a prompt is followed directly by its completion and the end-of-sequence token.

**Packing.** Short examples are packed into rows of ``seq_len`` tokens: each example keeps its
own positions (restarting at 0) and a segment id, and the stack's segment mask stops attention
from crossing examples, so a packed row computes exactly what its examples compute alone (a
test holds the losses equal) with far less padding. ``packing=false`` gives one example per row,
right-padded (a causal model never attends to padding on its right).

The loss is the summed cross-entropy of the trained tokens only; the hidden states of the other
tokens never reach the vocabulary head.

Dimension names: B rows, T tokens per row, D model width, V vocabulary, N trained tokens.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributed.tensor import DTensor

from ..data.instruction import Example, pack, read_examples
from ..nn.loss import cross_entropy, linear_cross_entropy
from ..train.distributed import unwrap
from ..train.task import Task
from .head_loss import check_loss_choice, fused_head

log = logging.getLogger(__name__)

IGNORE = -100  # label of a token that carries no loss
FORMATS = ("auto", "chat", "plain")


@dataclass
class InstructionDataConfig:
    """Where the examples come from, how they are rendered, packed and batched."""

    train: str | None = None  # a JSONL file (a recipe may supply its own examples instead)
    valid: str | None = None  # a JSONL file; None: the last ``valid_size`` training examples are held out
    valid_size: int = 100
    format: str = "auto"  # auto: the chat template when the tokenizer has one, else plain text
    system: str | None = None  # system message for conversations without one (None: the template's default)
    seq_len: int = 512  # tokens in a packed row; longer examples are left out with a warning
    packing: bool = True
    batch_size: int = 8  # rows per micro-batch (packed rows, or examples without packing)
    eval_batch_size: int = 16
    loss: str = "auto"  # fused | plain | auto (fused for a large trainable head, see tasks/head_loss.py)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {self.format!r}")
        for name in ("seq_len", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.valid_size < 0:
            raise ValueError(f"valid_size must be >= 0, got {self.valid_size}")
        check_loss_choice(self.loss)


# ----------------------------------------------------------------------------- rendering


def render_example(
    example: Example, tokenizer, fmt: str = "auto", system: str | None = None
) -> tuple[list[int], list[bool]]:
    """Token ids of one example and, per token, whether it carries the loss (assistant text)."""
    fmt = ("chat" if getattr(tokenizer, "chat_template", None) else "plain") if fmt == "auto" else fmt
    if fmt == "plain":
        pieces = _plain_pieces(example, tokenizer)
    else:
        pieces = _chat_pieces(example, tokenizer, system)
    ids: list[int] = []
    trained: list[bool] = []
    for piece, learn in pieces:
        piece_ids = tokenizer.encode(piece) if isinstance(piece, str) else list(piece)
        ids += piece_ids
        trained += [learn] * len(piece_ids)
    return ids, trained


def _plain_pieces(example: Example, tokenizer) -> list[tuple[str | list[int], bool]]:
    if example.messages is not None:
        raise ValueError(
            f"{example.origin}: a conversation ('messages') needs a chat template, and "
            f"this tokenizer has none; give prompt/completion pairs"
        )
    eos = getattr(tokenizer, "eos_id", None)
    return [(example.prompt, False), (example.completion, True)] + ([([eos], True)] if eos is not None else [])


def _chat_pieces(example: Example, tokenizer, system: str | None) -> list[tuple[str, bool]]:
    """The rendered conversation cut at each assistant turn: (text, trained) pieces.

    Turn ``i``'s text is what ``render(messages[:i + 1])`` adds to ``render(messages[:i],
    add_generation_prompt=True)``; a template that does not render turn by turn (a prefix that
    is not one) is an error rather than a silently wrong mask.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{example.origin or 'example'}: format=chat needs a tokenizer with a chat template")
    messages = example.as_messages()
    if system is not None and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system}] + messages
    pieces: list[tuple[str, bool]] = []
    done = ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prefix = tokenizer.apply_chat_template(messages[:i], add_generation_prompt=True)
        full = tokenizer.apply_chat_template(messages[: i + 1], add_generation_prompt=False)
        if not prefix.startswith(done) or not full.startswith(prefix):
            raise ValueError(
                f"{example.origin or 'example'}: the chat template does not render this conversation "
                f"turn by turn (turn {i}), so the assistant's tokens cannot be told apart"
            )
        pieces += [(prefix[len(done) :], False), (full[len(prefix) :], True)]
        done = full
    return pieces


# ----------------------------------------------------------------------------- batches


@dataclass
class InstructionBatch:
    """Rows of one or more examples, right-padded to the longest row."""

    ids: Tensor  # (B, T) input ids
    labels: Tensor  # (B, T) the next token where it carries the loss, else IGNORE
    positions: Tensor  # (B, T) position within the token's own example
    segments: Tensor | None  # (B, T) example number within the row (1, 2, ...; 0 = padding); None: unpacked

    def to(self, device, non_blocking: bool = False) -> InstructionBatch:
        move = lambda t: None if t is None else t.to(device, non_blocking=non_blocking)  # noqa: E731
        return InstructionBatch(move(self.ids), move(self.labels), move(self.positions), move(self.segments))

    @property
    def n_trained(self) -> int:
        return int((self.labels != IGNORE).sum())


def collate(rows: list[list[tuple[list[int], list[bool]]]], pad_id: int, packed: bool) -> InstructionBatch:
    """Rows (each a list of (ids, trained) examples) -> one padded batch. An example of n tokens
    fills n - 1 positions: inputs ``ids[:-1]``, labels ``ids[1:]`` where trained."""
    width = max(sum(len(ids) - 1 for ids, _ in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (B, T)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    segments = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        start = 0
        for s, (tokens, trained) in enumerate(row, start=1):
            n = len(tokens) - 1
            target = torch.tensor(tokens[1:])
            ids[r, start : start + n] = torch.tensor(tokens[:-1])
            labels[r, start : start + n] = torch.where(torch.tensor(trained[1:]), target, IGNORE)
            positions[r, start : start + n] = torch.arange(n)
            segments[r, start : start + n] = s
            start += n
    return InstructionBatch(ids, labels, positions, segments if packed else None)


class _EpochBatches(Sequence):
    """One epoch's batches for one rank, collated on access (indexable: resume is a lookup)."""

    def __init__(self, task: InstructionTask, rows: list[list[int]], batches: list[list[int]]):
        self.task, self.rows, self.batches = task, rows, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> InstructionBatch:
        rows = [[self.task.train_ids[j] for j in self.rows[r]] for r in self.batches[i]]
        return collate(rows, self.task.pad_id, self.task.data.packing)


# ----------------------------------------------------------------------------- the task


class InstructionTask(Task):
    """Supervised fine-tuning on (prompt, answer) examples; loss on the answers' tokens only."""

    unit = "tok"

    def __init__(
        self,
        tokenizer,
        train: list[Example],
        valid: list[Example],
        data: InstructionDataConfig,
        seed: int = 0,
        name: str = "instruct",
    ):
        self.tokenizer, self.data, self.seed, self.name = tokenizer, data, seed, name
        pad = getattr(tokenizer, "pad_id", None)
        self.pad_id = 0 if pad is None else int(pad)
        self.train_ids = self._render(train, "training")
        self.valid_ids = self._render(valid, "validation") if valid else []
        if not self.train_ids:
            raise ValueError(f"no training example fits in seq_len={data.seq_len} tokens")

    @classmethod
    def from_config(
        cls, tokenizer, data: InstructionDataConfig, seed: int = 0, name: str = "instruct"
    ) -> InstructionTask:
        """Examples from ``data.train`` / ``data.valid`` (JSONL files)."""
        if not data.train:
            raise ValueError(
                "give the training examples: train=FILE.jsonl (one conversation or prompt/completion pair per line)"
            )
        train = read_examples(data.train)
        if data.valid:
            valid = read_examples(data.valid)
        else:
            held = min(data.valid_size, len(train) - 1)
            train, valid = (train[:-held], train[-held:]) if held > 0 else (train, [])
        return cls(tokenizer, train, valid, data, seed, name)

    def _render(self, examples: list[Example], what: str) -> list[tuple[list[int], list[bool]]]:
        out, too_long, nothing = [], 0, 0
        for example in examples:
            ids, trained = render_example(example, self.tokenizer, self.data.format, self.data.system)
            if len(ids) - 1 > self.data.seq_len:
                too_long += 1
            elif not any(trained[1:]):
                nothing += 1
            else:
                out.append((ids, trained))
        if too_long:
            log.warning(
                "%d %s example(s) longer than seq_len=%d tokens were left out", too_long, what, self.data.seq_len
            )
        if nothing:
            log.warning("%d %s example(s) with no answer tokens were left out", nothing, what)
        return out

    # ------------------------------------------------------------------ training
    def _lengths(self, examples) -> list[int]:
        return [len(ids) - 1 for ids, _ in examples]

    def _rows(self, examples, order: list[int]) -> list[list[int]]:
        if self.data.packing:
            return pack(self._lengths(examples), order, self.data.seq_len)
        return [[i] for i in order]

    def train_batches(self, epoch: int, rank: int = 0, world_size: int = 1) -> Sequence[Any]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.train_ids), generator=g).tolist()
        rows = self._rows(self.train_ids, order)
        size = self.data.batch_size
        batches = [list(range(i, min(i + size, len(rows)))) for i in range(0, len(rows), size)]
        usable = len(batches) // world_size * world_size or len(batches)  # every rank the same count
        return _EpochBatches(self, rows, batches[rank:usable:world_size])

    def count(self, batch: InstructionBatch) -> int:
        return batch.n_trained

    def to_device(self, batch: InstructionBatch, device: torch.device) -> InstructionBatch:
        return batch.to(device, non_blocking=device.type == "cuda")

    def loss(self, model: nn.Module, batch: InstructionBatch) -> tuple[Tensor, dict[str, float]]:
        head = fused_head(model, self.data.loss)
        keep = batch.labels != IGNORE  # (B, T)
        targets = batch.labels[keep]  # (N,)
        if head is None and isinstance(getattr(unwrap(model).head, "weight", None), DTensor):
            # FSDP: the head is whole only inside forward, so take every row's logits from it
            logits = model(batch.ids, positions=batch.positions, segment_ids=batch.segments)  # (B, T, V)
            return cross_entropy(logits[keep], targets, reduction="sum"), {}
        hidden = model(batch.ids, positions=batch.positions, segment_ids=batch.segments, return_hidden=True)
        hidden = hidden[keep]  # (N, D): only the trained tokens reach the head
        if head is not None and head.weight.requires_grad:
            return linear_cross_entropy(hidden, head.weight, targets, head.bias, reduction="sum"), {}
        return cross_entropy(unwrap(model).head(hidden), targets, reduction="sum"), {}

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Mean loss per answer token over the validation examples, and its perplexity."""
        if not self.valid_ids:
            return {}
        device = next(model.parameters()).device
        rows = self._rows(self.valid_ids, list(range(len(self.valid_ids))))
        total, count = 0.0, 0
        for start in range(0, len(rows), self.data.eval_batch_size):
            chunk = [[self.valid_ids[j] for j in row] for row in rows[start : start + self.data.eval_batch_size]]
            batch = collate(chunk, self.pad_id, self.data.packing).to(device)
            loss, _ = self.loss(model, batch)
            total += loss.item()
            count += batch.n_trained
        mean = total / max(count, 1)
        return {"loss": mean, "ppl": math.exp(min(mean, 50.0))}

    def final_evaluate(self, model: nn.Module) -> dict[str, Any]:
        metrics = self.evaluate(model)
        return (
            {"val_loss": round(metrics["loss"], 4), "val_tokens": sum(sum(t[1:]) for _, t in self.valid_ids)}
            if metrics
            else {}
        )

    # ------------------------------------------------------------------ artefacts
    def save_artifacts(self, directory: Path) -> None:
        self.tokenizer.save(directory)
