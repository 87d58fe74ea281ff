"""A pretrained model's tokenizer and chat template (``attentive.text.pretrained``, ``attentive.text.chat``):
the template runs in a sandbox, the tokenizer files round-trip, and what HF folders vary in is read."""

from __future__ import annotations

import json

import pytest

from attentive.text import PretrainedTokenizer, chat_prompt, render_chat

TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}<a>{% endif %}"
)


def _hf_tokenizer():
    tokenizers = pytest.importorskip("tokenizers")
    vocab = {"<s>": 0, "</s>": 1, "<pad>": 2, "<unk>": 3, "hello": 4, "world": 5}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.add_special_tokens(["<s>", "</s>", "<pad>", "<unk>"])
    return tok


def test_chat_template_runs_in_a_sandbox():
    assert render_chat(TEMPLATE, [{"role": "user", "content": "hi"}]) == "<user>hi<a>"
    with pytest.raises(ValueError, match="chat template failed"):  # the immutable sandbox forbids mutation
        render_chat("{{ messages.append(1) }}", [])
    with pytest.raises(ValueError, match="attribute '__class__' of 'list' object is unsafe"):
        render_chat("{{ messages.__class__.__mro__ }}", [])  # Python internals are not reachable


def test_chat_prompt_puts_the_system_message_first():
    tokenizer = PretrainedTokenizer(
        _hf_tokenizer(), chat_template="{% for m in messages %}{{ m['content'] }} {% endfor %}"
    )
    assert chat_prompt(tokenizer, "world", system="hello") == [4, 5]
    with pytest.raises(ValueError, match="this model has no chat template"):
        chat_prompt(PretrainedTokenizer(_hf_tokenizer()), "hello")


def test_save_and_load_keep_the_special_tokens_and_template(tmp_path):
    tokenizer = PretrainedTokenizer(
        _hf_tokenizer(),
        bos_token="<s>",
        eos_tokens=["</s>", "</s>", None],
        pad_token="<pad>",
        chat_template=TEMPLATE,
        unk_token="<unk>",
    )
    assert (tokenizer.bos_id, tokenizer.eos_ids, tokenizer.pad_id, tokenizer.unk_id) == (0, [1], 2, 3)
    tokenizer.save(tmp_path)
    back = PretrainedTokenizer.load(tmp_path)
    assert (back.bos_id, back.eos_ids, back.pad_id, back.unk_id) == (0, [1], 2, 3)
    assert back.chat_template == TEMPLATE and back.encode("hello world") == [4, 5]
    assert back.special_tokens() == {"<s>": 0, "</s>": 1, "<pad>": 2, "<unk>": 3}


def test_hf_folder_variants_are_read(tmp_path):
    """Token objects instead of strings, named templates, a template file, stop ids from the generation config."""
    _hf_tokenizer().save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "bos_token": {"content": "<s>"},
                "eos_token": "</s>",
                "chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template": TEMPLATE}],
            }
        )
    )
    loaded = PretrainedTokenizer.load(tmp_path, stop_ids=[2])
    assert loaded.bos_token == "<s>" and loaded.eos_tokens == ["</s>", "<pad>"] and loaded.chat_template == TEMPLATE
    (tmp_path / "tokenizer_config.json").write_text("{}")
    (tmp_path / "chat_template.jinja").write_text(TEMPLATE)
    assert PretrainedTokenizer.load(tmp_path).chat_template == TEMPLATE


def test_unreadable_files_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match=r"tokenizer\.json is not a readable tokenizer"):
        PretrainedTokenizer.load(tmp_path)
    _hf_tokenizer().save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"tokenizer_config\.json is not valid JSON \(Expecting"):
        PretrainedTokenizer.load(tmp_path)
