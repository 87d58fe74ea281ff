"""A tiny chat model for the fine-tuning and export tests: a byte-level BPE tokenizer with
SmolLM2's special tokens and chat template, and a 2-layer LLaMA-style model over its vocabulary.
Built in well under a second, no files needed."""

from __future__ import annotations

import functools

import torch

import attentive
from attentive.text import PretrainedTokenizer

# SmolLM2-135M-Instruct's template, as its GGUF carries it.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TEXTS = [
    "Translate to English: Ein Hund rennt durch den Park.",
    "A dog runs through the park.",
    "Zwei Männer spielen Fußball auf dem Rasen.",
    "Two men play football on the grass.",
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
    "system user assistant",
    "The quick brown fox jumps over the lazy dog 0123456789.",
]


@functools.lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TEXTS * 3, trainer)
    return tok.to_str()


def chat_tokenizer() -> PretrainedTokenizer:
    """A fresh tokenizer (callers may change its fields) with SmolLM2's specials and template."""
    from tokenizers import Tokenizer

    return PretrainedTokenizer(
        Tokenizer.from_str(_tokenizer_json()),
        bos_token="<|im_start|>",
        eos_tokens=["<|im_end|>"],
        pad_token="<|im_end|>",
        chat_template=CHAT_TEMPLATE,
        unk_token="<|endoftext|>",
    )


def chat_model(seed: int = 0, **overrides):
    """A 2-layer LLaMA-style model over the chat tokenizer's vocabulary; untied and with its
    matrices scaled up so that greedy decoding wanders over the vocabulary (a fresh tied model
    repeats the last token), which makes token-for-token comparisons mean something."""
    torch.manual_seed(seed)
    vocab = chat_tokenizer().vocab_size
    model = attentive.build("llama-tiny", **{"vocab_size": vocab, "tie_embeddings": False, **overrides})
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(3.0)
    return model.eval()
