"""Tests that kill the mutants a sampled mutmut run left alive in ``attentive.interop``
(``benchmarks/reliability/mutation.json``): the GGUF tokenizer and config built from metadata,
a header error's message, and ``generation_config.json`` read from a Hugging Face folder."""

from __future__ import annotations

import json
import struct

import pytest
import torch

pytest.importorskip("gguf")
pytest.importorskip("transformers")

from attentive.interop.gguf import build_tokenizer, check_header, llama_config  # noqa: E402
from attentive.interop.loading import HFFolder  # noqa: E402

TOKENS = ["<s>", "</s>", "h", "i", "Ġ", "hi", "Ġhi"]


def _meta(**extra) -> dict:
    return {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.tokens": TOKENS,
        "tokenizer.ggml.merges": ["h i", "Ġ hi"],
        "tokenizer.ggml.bos_token_id": 0,
        "tokenizer.ggml.eos_token_id": 1,
        **extra,
    }


def test_a_gguf_tokenizer_decodes_byte_level_text_and_keeps_the_chat_template():
    template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    tok = build_tokenizer(_meta(**{"tokenizer.chat_template": template}))
    ids = tok.encode("hi hi", add_special_tokens=False)
    assert ids == [5, 6]
    assert tok.decode(ids) == "hi hi"  # "Ġ" back to a space
    assert tok.chat_template == template


@pytest.mark.parametrize("key", ["bos", "eos", "unknown", "padding"])
def test_a_special_token_id_one_past_the_list_is_refused_by_name(key):
    with pytest.raises(ValueError, match=rf"'tokenizer.ggml.{key}_token_id' is 7, past the 7 tokens"):
        build_tokenizer(_meta(**{f"tokenizer.ggml.{key}_token_id": len(TOKENS)}))
    build_tokenizer(_meta(**{f"tokenizer.ggml.{key}_token_id": len(TOKENS) - 1}))  # the last one is fine


def test_a_llama_config_takes_its_vocabulary_size_from_the_token_list():
    meta = {
        "general.architecture": "llama",
        "llama.embedding_length": 8,
        "llama.attention.head_count": 2,
        "llama.block_count": 1,
        "llama.feed_forward_length": 16,
        "llama.attention.layer_norm_rms_epsilon": 1e-5,
        "tokenizer.ggml.tokens": TOKENS,
    }
    assert llama_config(meta, {"token_embd.weight"}).vocab_size == len(TOKENS)
    assert llama_config({**meta, "llama.vocab_size": 9}, set()).vocab_size == 9


def _string(text: str) -> bytes:
    return struct.pack("<Q", len(text)) + text.encode()


def test_a_gguf_array_of_an_unknown_item_type_is_named(tmp_path):
    path = tmp_path / "bad.gguf"
    kv = _string("general.odd") + struct.pack("<IIQ", 9, 13, 0)  # an array of item type 13
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + kv)
    with pytest.raises(ValueError, match=r"item type 13, not a GGUF value type at byte \d+"):
        check_header(path)


def test_a_hf_folder_reads_its_generation_config(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "model.safetensors"))
    assert HFFolder.read(tmp_path, {}).generation == {}
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [1, 2], "temperature": 0.6}))
    folder = HFFolder.read(tmp_path, {"model_type": "llama"})
    assert folder.generation == {"eos_token_id": [1, 2], "temperature": 0.6} and set(folder.state) == {"w"}
