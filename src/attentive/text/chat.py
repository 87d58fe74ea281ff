"""Chat templates: a conversation -> the prompt text its model was trained on.

A chat template is a Jinja template that ships with a model (``tokenizer_config.json``,
``chat_template.jinja`` or a GGUF file's metadata). It is rendered in Jinja's immutable sandbox,
as ``transformers`` does, so a template can call no Python code and change none of its inputs.
A template is someone else's program, so one rendering is bounded too: at most ``MAX_STEPS`` loop
iterations and calls, ``MAX_SECONDS`` of time, values of ``MAX_ITEMS`` characters or items, numbers
up to ``MAX_ARGUMENT`` passed to functions (a ``'a' * 10**10`` or a doubling loop stops before it
allocates); whatever goes wrong in it is a one-line ValueError.
"""

from __future__ import annotations

import functools
import json
import re
import threading
import time
from typing import Any, Protocol

from attentive.text.files import first_line


class ChatTokenizer(Protocol):
    """What ``chat_prompt`` needs of a tokenizer (``text.pretrained.PretrainedTokenizer`` has it)."""

    def encode(self, text: str) -> list[int]: ...

    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str: ...


MAX_STEPS = 1_000_000  # loop iterations and calls in one rendering
MAX_SECONDS = 5.0  # of one rendering
MAX_ITEMS = 1 << 24  # characters of a string (items of a list) a template may make
MAX_ARGUMENT = 100_000  # the largest number a template may pass to a function (jinja2's own range() limit)
_MAX_BITS = 1 << 16  # bits of an integer a template may compute
_WIDE_FORMAT = re.compile(r"\d{8,}")  # a format width or precision of 10**7 or more


class _Budget(threading.local):
    steps = 0
    deadline = float("inf")


_BUDGET = _Budget()


def render_chat(
    template: str, messages: list[dict[str, str]], add_generation_prompt: bool = True, **variables: Any
) -> str:
    """Render a chat template in Jinja's immutable sandbox (the template can call no Python code),
    within the bounds above; any failure of the template is a one-line ValueError."""
    if not isinstance(template, str):
        raise ValueError(f"chat template must be text, got {type(template).__name__}")
    compiled = _compiled_template(template)  # a one-line error if jinja2 is missing
    _BUDGET.steps, _BUDGET.deadline = 0, time.monotonic() + MAX_SECONDS
    try:
        text = compiled.render(messages=messages, add_generation_prompt=add_generation_prompt, **variables)
    except Exception as err:  # the template is foreign code: whatever it raises is its failure
        raise ValueError(f"chat template failed: {_describe(err)}") from None
    finally:
        _BUDGET.deadline = float("inf")
    return text


def _describe(err: BaseException) -> str:
    import jinja2

    if isinstance(err, jinja2.exceptions.TemplateError):
        return first_line(err)
    if isinstance(err, RecursionError):
        return "recursion too deep"
    return f"{type(err).__name__}: {first_line(err)}"


def _refuse(message: str):
    from jinja2.sandbox import SecurityError

    raise SecurityError(message)


def _step() -> None:
    _BUDGET.steps += 1
    if _BUDGET.steps > MAX_STEPS:
        _refuse(f"the template ran more than {MAX_STEPS:,} loop iterations and calls")
    if _BUDGET.steps % 1024 == 0 and time.monotonic() > _BUDGET.deadline:
        _refuse(f"the template ran longer than {MAX_SECONDS:g} s")


def _check_size(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > _MAX_BITS:
        _refuse(f"the template made a number of more than {_MAX_BITS:,} bits")
    if isinstance(value, (str, list, tuple, dict)) and len(value) > MAX_ITEMS:
        _refuse(f"the template made a value of {len(value):,} items; the limit is {MAX_ITEMS:,}")
    return value


def _check_arguments(args: tuple, kwargs: dict) -> None:
    """Numbers that size what a call makes (``center``, ``indent``, ``ljust``, ``lipsum``, ...)."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_ARGUMENT:
            _refuse(f"the template passed {value} to a function; the limit is {MAX_ARGUMENT:,}")


def _check_format(text: Any) -> None:
    """A ``%`` / ``format`` pattern whose width or precision would make a huge string."""
    if isinstance(text, str) and _WIDE_FORMAT.search(text):
        _refuse("the template formats with a width or precision of 10**7 or more")


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse ``'a' * 10**10``, ``9 ** 9 ** 9``, ``'%1000000000d' % 1`` before they are computed."""
    sized = (str, list, tuple)
    ints = [v for v in (left, right) if isinstance(v, int) and not isinstance(v, bool)]
    if operator == "*":
        seq = left if isinstance(left, sized) else right if isinstance(right, sized) else None
        if seq is not None and len(ints) == 1 and len(seq) * max(ints[0], 0) > MAX_ITEMS:
            _refuse(f"the template repeats a value {ints[0]:,} times; the limit is {MAX_ITEMS:,} items")
        if len(ints) == 2 and left.bit_length() + right.bit_length() > _MAX_BITS:
            _refuse(f"the template made a number of more than {_MAX_BITS:,} bits")
    elif operator == "**" and len(ints) == 2 and abs(left) > 1 and right > 0:
        if left.bit_length() * right > _MAX_BITS:
            _refuse(f"the template made a number of more than {_MAX_BITS:,} bits")
    elif operator == "+" and isinstance(left, sized) and isinstance(right, sized):
        if len(left) + len(right) > MAX_ITEMS:
            _refuse(f"the template made a value of more than {MAX_ITEMS:,} items")
    elif operator == "%" and isinstance(left, str):
        _check_format(left)
        _check_arguments(right if isinstance(right, tuple) else (right,), {})


@functools.lru_cache(maxsize=8)
def _compiled_template(template: str):
    """One compiled template per text: instruction tuning renders tens of thousands of conversations."""
    from datetime import datetime

    try:
        import jinja2
        from jinja2 import nodes
        from jinja2.sandbox import ImmutableSandboxedEnvironment
        from jinja2.visitor import NodeTransformer
    except ImportError:
        raise ValueError("chat templates need jinja2 (pip install jinja2)") from None

    def guarded(name: str, node):
        return nodes.Call(nodes.Name(name, "load"), [node], [], None, None).set_lineno(node.lineno)

    class Bounded(NodeTransformer):
        """Every loop counts its iterations and every ``~`` concatenation is measured."""

        def visit_For(self, node):
            node = self.generic_visit(node)
            node.iter = guarded("__attentive_loop", node.iter)
            return node

        def visit_Concat(self, node):
            return guarded("__attentive_sized", self.generic_visit(node))

    class ChatSandbox(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**", "+", "%"})

        def _parse(self, source, name, filename):
            tree = Bounded().visit(super()._parse(source, name, filename))
            tree.set_environment(self)
            return tree

        def call_binop(self, context, operator, left, right):
            _step()
            _check_binop(operator, left, right)
            return _check_size(super().call_binop(context, operator, left, right))

        def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - jinja2's own signature
            _step()
            _check_arguments(args, kwargs)
            _check_format(getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None))  # str.format
            return _check_size(super().call(__context, __obj, *args, **kwargs))

    def loop(iterable):
        for item in iterable:
            _step()
            yield item

    def bounded_filter(name: str, fn):
        @functools.wraps(fn)  # keeps jinja2's pass_context / pass_environment marks
        def wrapper(*args, **kwargs):
            _step()
            _check_arguments(args, kwargs)
            if name == "format":
                _check_format(next((a for a in args if isinstance(a, str)), None))
            return _check_size(fn(*args, **kwargs))

        return wrapper

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = ChatSandbox(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda x, indent=None, **_: json.dumps(x, ensure_ascii=False, indent=indent)
    env.filters = {name: bounded_filter(name, fn) for name, fn in env.filters.items()}
    env.globals.update(
        raise_exception=raise_exception,
        strftime_now=lambda fmt: datetime.now().strftime(fmt),
        __attentive_loop=loop,
        __attentive_sized=_check_size,
    )
    try:
        return env.from_string(template)
    except Exception as err:  # a syntax error, or a template nested too deeply to parse
        raise ValueError(f"chat template failed: {_describe(err)}") from None


def chat_prompt(tokenizer: ChatTokenizer, prompt: str | list[dict[str, str]], system: str | None = None) -> list[int]:
    """Token ids of a conversation (one user message, or a message list) ready for the assistant's reply."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if system:
        messages = [{"role": "system", "content": system}] + messages
    return tokenizer.encode(tokenizer.apply_chat_template(messages, add_generation_prompt=True))
