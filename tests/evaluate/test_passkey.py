"""Passkey prompts: the requested length, the needle at its depth, the key as the answer; the
teacher-forced check is greedy decoding in one pass."""

from __future__ import annotations

import pytest
import torch

import attentive
from attentive.decode import generate
from attentive.evaluate.passkey import FILLER, INTRO, QUESTION, passkey_prompt, passkey_prompts, passkey_retrieved
from attentive.text import CharTokenizer


@pytest.fixture(scope="module")
def tok():
    return CharTokenizer.train(INTRO + FILLER + QUESTION + " The pass key is 0123456789. Remember it.")


@pytest.mark.parametrize("depth", [0.0, 0.37, 1.0])
def test_prompt_has_the_length_the_needle_at_its_depth_and_the_key_as_answer(tok, depth):
    p = passkey_prompt(tok, 2000, 48213, depth)
    assert 2000 - len(FILLER) < p.length <= 2000
    text = tok.decode(p.ids)
    assert text.startswith(INTRO) and text.endswith(QUESTION)
    needle = " The pass key is 48213. Remember it. 48213 is the pass key."
    where = text.index(needle) - len(INTRO)  # characters of filler before the needle
    assert abs(where / (len(text) - len(INTRO) - len(needle) - len(QUESTION)) - depth) < 0.03
    assert tok.decode(p.answer) == " 48213"


def test_prompts_are_reproducible_and_varied(tok):
    a, b = passkey_prompts(tok, 1500, 5, seed=3), passkey_prompts(tok, 1500, 5, seed=3)
    assert [(p.key, p.depth) for p in a] == [(p.key, p.depth) for p in b]
    assert len({p.key for p in a}) == 5 and all(len(p.key) == 5 for p in a)
    with pytest.raises(ValueError, match="needs more than"):
        passkey_prompt(tok, 50, 12345, 0.5)
    with pytest.raises(ValueError, match="depth must be in"):
        passkey_prompt(tok, 2000, 12345, 1.5)


def test_teacher_forced_check_is_greedy_decoding(tok):
    torch.manual_seed(0)
    model = attentive.build("llama-tiny", vocab_size=tok.vocab_size, max_len=512, init_std=0.3).eval()
    prompt = passkey_prompt(tok, 400, 55555, 0.5)
    retrieved, chosen = passkey_retrieved(model, prompt)
    greedy = generate(
        model, None, prompt.ids, max_new_tokens=len(prompt.answer), temperature=0.0, stop_tokens=()
    ).tokens[0]
    assert chosen[0] == greedy[0] and not retrieved  # an untrained model: same first choice, no key
    # greedy continues from its own tokens, teacher forcing from the key's: they agree up to the first miss
    first_miss = next((i for i, (a, b) in enumerate(zip(chosen, prompt.answer)) if a != b), len(chosen))
    assert chosen[: first_miss + 1] == greedy[: first_miss + 1]
