"""Translation by a chat language model: each source sentence becomes a user message
("Translate to English: ..."), the model's greedy reply is the translation, sacreBLEU scores it.

All sentences go through one decoding engine (``decode.Engine``): shortest prompts first, at
most ``max_batch`` rows at a time, a row leaving as soon as it ends its turn and the next
sentence taking its place. Each reply may run to ``2 x source tokens + 16`` tokens (a model
that does not stop, as an untuned one often does not, is cut there) and becomes one line.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..decode.config import EngineConfig, GenerationConfig
from ..decode.engine import Engine, Request
from ..decode.generate import pad_id_of, stop_ids
from ..text.chat import chat_prompt
from .bleu import corpus_scores

DEFAULT_PROMPT = "Translate to English: {source}"


def chat_translate(
    model,
    tokenizer,
    sources: Sequence[str],
    prompt: str = DEFAULT_PROMPT,
    system: str | None = None,
    max_batch: int = 32,
    max_new_tokens: int | None = None,
) -> list[str]:
    """The model's greedy reply to ``prompt.format(source=s)`` for every source, in input order."""
    if "{source}" not in prompt:
        raise ValueError(f"the prompt {prompt!r} has no {{source}} placeholder for the sentence")
    prompts = [chat_prompt(tokenizer, prompt.format(source=s), system) for s in sources]
    engine = Engine(model, EngineConfig(cache="dynamic", pad_id=pad_id_of(tokenizer), max_batch=max_batch))
    stops = stop_ids(tokenizer)
    sequences = {}
    for i in sorted(range(len(sources)), key=lambda i: len(prompts[i])):
        limit = max_new_tokens or 2 * len(tokenizer.encode(sources[i])) + 16
        sequences[i] = engine.add(
            Request(prompts[i], GenerationConfig(max_new_tokens=limit, temperature=0.0, stop_tokens=stops))
        )
    was_training = model.training
    model.eval()
    try:
        while not engine.idle:
            engine.step()
    finally:
        model.train(was_training)
    # one line per sentence (an untuned model's reply may run over several): whitespace is
    # collapsed, which changes no BLEU or chrF score (both split on any whitespace)
    return [" ".join(tokenizer.decode(sequences[i].tokens).split()) for i in range(len(sources))]


def evaluate_chat_translation(
    model,
    tokenizer,
    sources: Sequence[str],
    references: Sequence[str],
    prompt: str = DEFAULT_PROMPT,
    system: str | None = None,
    max_batch: int = 32,
) -> dict:
    """``corpus_scores`` of the chat model's translations, plus the translations (``hypotheses``)."""
    if len(sources) != len(references):
        raise ValueError(f"{len(sources)} source sentences but {len(references)} references")
    if not sources:
        raise ValueError("nothing to evaluate: no sentences")
    hyps = chat_translate(model, tokenizer, sources, prompt, system, max_batch)
    return {**corpus_scores(hyps, list(references)), "hypotheses": hyps}
