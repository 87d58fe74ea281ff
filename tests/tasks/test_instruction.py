"""Instruction tuning: the loss covers the answers only, and packing changes nothing but speed."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attentive.data.instruction import Example
from attentive.tasks.instruction import IGNORE, InstructionDataConfig, InstructionTask, collate, render_example
from chat_helpers import chat_model, chat_tokenizer

EXAMPLES = [
    Example.chat(("user", "Translate to English: Ein Hund rennt."), ("assistant", "A dog runs.")),
    Example(prompt="Zwei Männer spielen.", completion="Two men play."),
    Example.chat(
        ("system", "Be brief."), ("user", "Hund?"), ("assistant", "Dog."), ("user", "Zwei?"), ("assistant", "Two.")
    ),
    Example.chat(("user", "Der Park."), ("assistant", "The park.")),
]


def _task(**data) -> InstructionTask:
    return InstructionTask(chat_tokenizer(), EXAMPLES, EXAMPLES[:2], InstructionDataConfig(**data))


def _trained_text(tokenizer, ids, trained) -> str:
    return tokenizer.decode([t for t, keep in zip(ids, trained) if keep], skip_special=False)


def test_only_the_assistant_turns_are_trained():
    tok = chat_tokenizer()
    ids, trained = render_example(EXAMPLES[2], tok)
    assert _trained_text(tok, ids, trained) == "Dog.<|im_end|>\nTwo.<|im_end|>\n"
    full = tok.apply_chat_template(EXAMPLES[2].as_messages(), add_generation_prompt=False)
    assert tok.encode(full) == ids  # the pieces tokenise as the whole text does
    ids, trained = render_example(EXAMPLES[1], tok)  # prompt / completion through the chat template
    assert _trained_text(tok, ids, trained) == "Two men play.<|im_end|>\n"


def test_prompt_tokens_carry_no_loss():
    """The task's loss is the summed -log p of the answer tokens, computed here from full logits."""
    task, model = _task(packing=False, batch_size=1), chat_model()
    ids, trained = task.train_ids[0]
    batch = collate([[task.train_ids[0]]], task.pad_id, packed=False)
    assert batch.labels[0].ne(IGNORE).tolist() == trained[1:]
    loss, _ = task.loss(model, batch)
    logp = F.log_softmax(model(torch.tensor([ids[:-1]])), dim=-1)[0]  # (T, V)
    expected = -sum(logp[t, ids[t + 1]] for t in range(len(ids) - 1) if trained[t + 1])
    torch.testing.assert_close(loss, expected, atol=1e-4, rtol=1e-5)
    assert 0 < batch.n_trained < batch.labels.numel()


def test_a_packed_batch_gives_the_same_loss_and_gradients_as_the_examples_alone():
    packed, alone = _task(packing=True, seq_len=256, batch_size=8), _task(packing=False, batch_size=1)
    model = chat_model()
    batch = packed.train_batches(0)[0]
    assert batch.segments is not None and batch.ids.shape[0] < len(EXAMPLES)  # several examples per row
    loss, _ = packed.loss(model, batch)
    loss.backward()
    packed_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    total = sum(alone.loss(model, collate([[example]], alone.pad_id, packed=False))[0] for example in alone.train_ids)
    total.backward()
    torch.testing.assert_close(loss, total, atol=1e-4, rtol=1e-5)
    for p, g in zip(model.parameters(), packed_grads):
        torch.testing.assert_close(p.grad, g, atol=1e-5, rtol=1e-4)
    assert packed.count(batch) == sum(sum(t[1:]) for _, t in packed.train_ids)


def test_plain_format_appends_the_end_of_sequence_token():
    tok = chat_tokenizer()
    ids, trained = render_example(EXAMPLES[1], tok, fmt="plain")
    assert ids[-1] == tok.eos_id and _trained_text(tok, ids, trained) == "Two men play.<|im_end|>"
    with pytest.raises(ValueError, match="needs a chat template"):
        render_example(EXAMPLES[0], tok, fmt="plain")
    tok.chat_template = None
    with pytest.raises(ValueError, match="format=chat needs a tokenizer with a chat template"):
        render_example(EXAMPLES[0], tok, fmt="chat")


def test_a_template_that_does_not_render_turn_by_turn_is_refused():
    tok = chat_tokenizer()
    tok.chat_template = "{% for m in messages|reverse %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(ValueError, match="does not render this conversation turn by turn"):
        render_example(EXAMPLES[2], tok)


def test_batches_are_deterministic_sharded_and_skip_overlong_examples(caplog):
    task = _task(packing=True, seq_len=90, batch_size=1)
    assert len(task.train_ids) == 2  # two examples are longer than 90 tokens
    assert "2 training example(s) longer than seq_len=90" in caplog.text
    first, again = task.train_batches(3), task.train_batches(3)
    assert torch.equal(first[0].ids, again[0].ids)
    ranks = [task.train_batches(0, r, 2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1])
    with pytest.raises(ValueError, match="seq_len must be positive"):
        InstructionDataConfig(seq_len=0)
