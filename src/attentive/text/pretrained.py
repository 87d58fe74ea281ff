"""``PretrainedTokenizer``: a pretrained model's own tokenizer, special tokens and chat template.

A Hugging Face folder keeps its tokenizer as ``tokenizer.json`` (the ``tokenizers`` library's
format) plus ``tokenizer_config.json`` (which tokens are BOS, EOS, padding, unknown; the chat
template, or a ``chat_template.jinja`` beside it). This wrapper reads and writes that pair and
gives ``generate`` and the chat templates (``text.chat``) what they need; ``interop``'s readers
build it for GGUF, CTranslate2 and Hugging Face models alike.
"""

from __future__ import annotations

from pathlib import Path

from attentive.text.chat import render_chat
from attentive.text.files import first_line, read_json_object

TOKENIZER_CONFIG = "tokenizer_config.json"


class PretrainedTokenizer:
    """A Hugging Face ``tokenizers.Tokenizer`` with the special tokens and chat template its model came with.

    ``encode`` adds no special tokens (the caller, e.g. a chat template, places them);
    ``decode`` drops them. ``bos_id`` / ``eos_ids`` / ``pad_id`` are what ``generate`` needs.
    """

    def __init__(
        self,
        hf,
        *,
        bos_token: str | None = None,
        eos_tokens: list[str] = (),
        pad_token: str | None = None,
        chat_template: str | None = None,
        unk_token: str | None = None,
        template_source: str | None = None,
    ):
        self.hf = hf
        self.template_source = template_source  # the file the chat template came from, for its errors
        self.bos_token, self.pad_token, self.chat_template = bos_token, pad_token, chat_template
        self.unk_token = unk_token
        self.eos_tokens = [t for t in dict.fromkeys(eos_tokens) if t is not None]

    def _id(self, token: str | None) -> int | None:
        return None if token is None else self.hf.token_to_id(token)

    @property
    def bos_id(self) -> int | None:
        return self._id(self.bos_token)

    @property
    def eos_ids(self) -> list[int]:
        return [i for i in map(self._id, self.eos_tokens) if i is not None]

    @property
    def eos_id(self) -> int | None:
        return self.eos_ids[0] if self.eos_ids else None

    @property
    def pad_id(self) -> int | None:
        return self._id(self.pad_token)

    @property
    def unk_id(self) -> int | None:
        return self._id(self.unk_token)

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.hf.encode(text, add_special_tokens=add_special_tokens).ids

    def encode_batch(self, texts: list[str], add_special_tokens: bool = False) -> list[list[int]]:
        return [e.ids for e in self.hf.encode_batch(list(texts), add_special_tokens=add_special_tokens)]

    def decode(self, ids, skip_special: bool = True) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=skip_special)

    def special_tokens(self) -> dict[str, int]:
        """Every added (special) token and its id, e.g. ``{"<|endoftext|>": 50256, ...}``."""
        return {tok.content: i for i, tok in self.hf.get_added_tokens_decoder().items()}

    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The prompt text for a conversation, from the model's own template."""
        if not self.chat_template:
            raise ValueError("this model has no chat template; give a plain prompt instead of --chat")
        try:
            return render_chat(
                self.chat_template,
                messages,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token or "",
                eos_token=self.eos_tokens[0] if self.eos_tokens else "",
            )
        except ValueError as err:
            raise ValueError(f"{self.template_source}: {err}" if self.template_source else str(err)) from None

    def save(self, directory: str | Path) -> None:
        """``tokenizer.json`` plus ``tokenizer_config.json`` (special tokens, chat template), HF style."""
        from attentive.checkpoint import save_json  # checkpoint (torch, configs) stays out of text's imports

        directory = Path(directory)
        self.hf.save(str(directory / "tokenizer.json"))
        save_json(
            directory / TOKENIZER_CONFIG,
            {
                "bos_token": self.bos_token,
                "eos_token": self.eos_tokens[0] if self.eos_tokens else None,
                "stop_tokens": self.eos_tokens,
                "pad_token": self.pad_token,
                "chat_template": self.chat_template,
                "unk_token": self.unk_token,
            },
        )

    @classmethod
    def load(cls, folder: str | Path, stop_ids: list[int] = ()) -> PretrainedTokenizer:
        """From ``tokenizer.json`` (+ ``tokenizer_config.json``, ``chat_template.jinja``) in a folder."""
        from tokenizers import Tokenizer

        folder = Path(folder)
        try:
            hf = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as err:  # tokenizers raises plain Exception subclasses
            raise ValueError(f"{folder / 'tokenizer.json'} is not a readable tokenizer ({first_line(err)})") from None
        config = folder / TOKENIZER_CONFIG
        meta = read_json_object(config) if config.is_file() else {}
        template = meta.get("chat_template")
        if isinstance(template, list):  # named templates: take the default one
            named = [t for t in template if isinstance(t, dict) and isinstance(t.get("template"), str)]
            if len(named) != len(template):
                raise ValueError(f'{config}: chat_template must be text or a list of {{"name", "template"}} objects')
            template = next((t["template"] for t in named if t.get("name") == "default"), None)
        if template is not None and not isinstance(template, str):
            raise ValueError(f"{config}: chat_template must be text, got {type(template).__name__}")
        source = str(config) if template is not None else None
        if template is None and (folder / "chat_template.jinja").is_file():
            source = str(folder / "chat_template.jinja")
            try:
                template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"{folder / 'chat_template.jinja'} is not UTF-8 text (byte {err.start})") from None
        stop_tokens = meta.get("stop_tokens") or []
        if not isinstance(stop_tokens, list):
            raise ValueError(f"{config}: stop_tokens must be a list of tokens, got {type(stop_tokens).__name__}")
        stops = [_token_text(meta.get("eos_token"), "eos_token", config)]
        stops += [_token_text(t, "stop_tokens", config) for t in stop_tokens]
        stops += [hf.id_to_token(i) for i in stop_ids]
        return cls(
            hf,
            bos_token=_token_text(meta.get("bos_token"), "bos_token", config),
            eos_tokens=stops,
            pad_token=_token_text(meta.get("pad_token"), "pad_token", config),
            chat_template=template,
            unk_token=_token_text(meta.get("unk_token"), "unk_token", config),
            template_source=source,
        )


def _token_text(value, key: str = "token", source: Path | str = TOKENIZER_CONFIG) -> str | None:
    """HF writes special tokens as strings or as ``{"content": ...}`` objects."""
    text = value.get("content") if isinstance(value, dict) else value
    if text is not None and not isinstance(text, str):
        raise ValueError(f'{source}: {key} must be a token\'s text (or {{"content": text}}), got {value!r:.80}')
    return text
