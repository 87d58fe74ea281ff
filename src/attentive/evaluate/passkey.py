"""Passkey retrieval: a number hidden in filler text, asked for at the end.

The test of Mohtashami & Jaggi (2023, "Landmark Attention"), used by Position Interpolation and
YaRN to show whether a model reads its whole context: a five-digit key sits at a chosen depth of
a long run of repeated filler sentences, and the prompt ends by asking for it. A model that can
attend that far back copies the key; one that cannot (positions it was never trained on,
a window that dropped it) guesses.

A trial is scored by teacher forcing: one forward pass over the prompt and the key, and the
key counts as retrieved when the greedy choice at every key position is the key's token
(exactly what greedy decoding of the key's length would produce, in one pass).

Dimension names: T prompt + answer tokens, V vocabulary.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import nn

INTRO = (
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. "
    "I will quiz you about the important information there."
)
FILLER = " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
NEEDLE = " The pass key is {key}. Remember it. {key} is the pass key."
QUESTION = " What is the pass key? The pass key is"


@dataclass
class PasskeyPrompt:
    ids: list[int]  # the prompt's tokens, ending with the question
    answer: list[int]  # the key's tokens, as they follow the question
    key: str
    depth: float  # where the needle sits: 0 = just after the introduction, 1 = just before the question

    @property
    def length(self) -> int:
        return len(self.ids)


def passkey_prompt(tokenizer, length: int, key: str | int, depth: float) -> PasskeyPrompt:
    """A prompt of at most ``length`` tokens (as close as whole filler sentences allow) hiding
    ``key`` at ``depth`` of the filler. Pieces are tokenised apart and joined as ids, so the
    length is exact whatever the tokenizer merges."""
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1], got {depth}")
    key = str(key)
    intro, filler = tokenizer.encode(INTRO), tokenizer.encode(FILLER)
    needle, question = tokenizer.encode(NEEDLE.format(key=key)), tokenizer.encode(QUESTION)
    fixed = len(intro) + len(needle) + len(question)
    repeats = (length - fixed) // len(filler)
    if repeats < 1:
        raise ValueError(f"a passkey prompt needs more than {fixed + len(filler)} tokens, got length={length}")
    before = round(depth * repeats)
    ids = intro + filler * before + needle + filler * (repeats - before) + question
    return PasskeyPrompt(ids, tokenizer.encode(" " + key), key, depth)


def passkey_prompts(tokenizer, length: int, trials: int, seed: int = 0) -> list[PasskeyPrompt]:
    """``trials`` prompts with random five-digit keys at random depths (fixed by ``seed``)."""
    rng = random.Random(f"passkey:{seed}:{length}")
    return [passkey_prompt(tokenizer, length, rng.randint(10000, 99999), rng.random()) for _ in range(trials)]


@torch.no_grad()
def passkey_retrieved(model: nn.Module, prompt: PasskeyPrompt) -> tuple[bool, list[int]]:
    """(retrieved, the greedy tokens at the key's positions) from one teacher-forced pass."""
    device = next(model.parameters()).device
    ids = torch.tensor([prompt.ids + prompt.answer[:-1]], device=device)  # (1, T)
    was_training = model.training
    model.eval()
    try:
        hidden = model.decode(ids).hidden[:, -len(prompt.answer) :]  # (1, answer, D): the head on those only
        chosen = model.head(hidden).argmax(-1)[0].tolist()
    finally:
        model.train(was_training)
    return chosen == prompt.answer, chosen
