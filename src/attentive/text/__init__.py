"""Tokenizers (byte-level BPE, characters) and the special tokens they share; a pretrained model's own
tokenizer (``PretrainedTokenizer``) and its chat template (``render_chat``, ``chat_prompt``)."""

from attentive.text.bpe import BPETokenizer
from attentive.text.char import CharTokenizer
from attentive.text.chat import chat_prompt, render_chat
from attentive.text.pretrained import PretrainedTokenizer
from attentive.text.special import (
    BOS,
    BOS_ID,
    EOS,
    EOS_ID,
    PAD,
    PAD_ID,
    SPECIAL_TOKENS,
    UNK,
    UNK_ID,
)
from attentive.text.tokenizer import TOKENIZER_FILE, Tokenizer, load_tokenizer

__all__ = [
    "BOS",
    "BOS_ID",
    "BPETokenizer",
    "CharTokenizer",
    "EOS",
    "EOS_ID",
    "PAD",
    "PAD_ID",
    "PretrainedTokenizer",
    "SPECIAL_TOKENS",
    "TOKENIZER_FILE",
    "Tokenizer",
    "UNK",
    "UNK_ID",
    "chat_prompt",
    "load_tokenizer",
    "render_chat",
]
