"""Chat templates: a conversation -> the prompt text its model was trained on.

A chat template is a Jinja template that ships with a model (``tokenizer_config.json``,
``chat_template.jinja`` or a GGUF file's metadata). It is rendered in Jinja's immutable sandbox,
as ``transformers`` does, so a template can call no Python code and change none of its inputs.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Protocol

from attentive.text.files import first_line


class ChatTokenizer(Protocol):
    """What ``chat_prompt`` needs of a tokenizer (``text.pretrained.PretrainedTokenizer`` has it)."""

    def encode(self, text: str) -> list[int]: ...

    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str: ...


def render_chat(
    template: str, messages: list[dict[str, str]], add_generation_prompt: bool = True, **variables: Any
) -> str:
    """Render a chat template in Jinja's immutable sandbox (the template can call no Python code)."""
    compiled = _compiled_template(template)  # a one-line error if jinja2 is missing
    import jinja2

    try:
        return compiled.render(messages=messages, add_generation_prompt=add_generation_prompt, **variables)
    except jinja2.exceptions.TemplateError as err:
        raise ValueError(f"chat template failed: {first_line(err)}") from None


@functools.lru_cache(maxsize=8)
def _compiled_template(template: str):
    """One compiled template per text: instruction tuning renders tens of thousands of conversations."""
    from datetime import datetime

    try:
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        raise ValueError("chat templates need jinja2 (pip install jinja2)") from None

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda x, indent=None, **_: json.dumps(x, ensure_ascii=False, indent=indent)
    env.globals.update(raise_exception=raise_exception, strftime_now=lambda fmt: datetime.now().strftime(fmt))
    try:
        return env.from_string(template)
    except jinja2.exceptions.TemplateError as err:
        raise ValueError(f"chat template failed: {first_line(err)}") from None


def chat_prompt(tokenizer: ChatTokenizer, prompt: str | list[dict[str, str]], system: str | None = None) -> list[int]:
    """Token ids of a conversation (one user message, or a message list) ready for the assistant's reply."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if system:
        messages = [{"role": "system", "content": system}] + messages
    return tokenizer.encode(tokenizer.apply_chat_template(messages, add_generation_prompt=True))
