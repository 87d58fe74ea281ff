"""Readers' outputs field by field (each test kills mutants that survived the reader tests: a
config key renamed, a message's path prefix or hint dropped)."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from attentive.interop.ctranslate2 import read_ct2_folder, whisper_ct2_to_hf
from attentive.interop.gguf import LlamaGGUFConfig
from attentive.interop.loading import read_safetensors
from pretrained_paths import need_whisper_ct2

transformers = pytest.importorskip("transformers")


def test_gguf_config_gives_every_llama_config_field_under_its_hf_name():
    config = LlamaGGUFConfig(
        num_layers=3,
        hidden_size=64,
        num_heads=4,
        num_kv_heads=2,
        ffn_size=96,
        rope_theta=12345.0,
        rms_norm_eps=1e-6,
        vocab_size=77,
        context_length=333,
        tie_word_embeddings=False,
        bos_token_id=5,
        eos_token_id=6,
        head_dim=16,
    )
    hf = config.to_hf()
    assert hf == {
        "num_hidden_layers": 3,
        "hidden_size": 64,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 96,
        "rope_theta": 12345.0,
        "rms_norm_eps": 1e-6,
        "vocab_size": 77,
        "max_position_embeddings": 333,
        "head_dim": 16,
        "tie_word_embeddings": False,
        "bos_token_id": 5,
        "eos_token_id": 6,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
    }
    llama = transformers.LlamaConfig(**hf)
    assert (llama.max_position_embeddings, llama.tie_word_embeddings, llama.head_dim) == (333, False, 16)
    assert config.to_dict() == dataclasses.asdict(config)


def test_a_folder_without_safetensors_is_one_line_naming_it_and_any_pickles(tmp_path):
    with pytest.raises(ValueError) as err:
        read_safetensors(tmp_path)
    assert str(err.value) == f"{tmp_path} has no model.safetensors; supported: safetensors weights"
    (tmp_path / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ValueError) as err:
        read_safetensors(tmp_path)
    assert str(err.value) == (
        f"{tmp_path} has no model.safetensors (found pytorch_model.bin: pickle files are never loaded); "
        "supported: safetensors weights"
    )


@pytest.fixture(scope="module")
def whisper_ct2():
    return read_ct2_folder(need_whisper_ct2())


def test_ct2_whisper_suppressed_tokens_come_from_the_files_config(whisper_ct2):
    config, _ = whisper_ct2_to_hf(whisper_ct2)
    assert config["suppress_tokens"] == list(whisper_ct2.config["suppress_ids"]) and config["suppress_tokens"]
    assert config["begin_suppress_tokens"] == [220, 50256]


def test_ct2_whisper_with_wrong_variables_names_the_file(whisper_ct2):
    variables = dict(whisper_ct2.variables)
    del variables["encoder/layer_0/self_attention/linear_0/weight"]  # read directly: a KeyError
    broken = dataclasses.replace(whisper_ct2, variables=variables, aliases={})
    with pytest.raises(
        ValueError, match=rf"^{re.escape(str(whisper_ct2.path))}: the variables do not make a Whisper model \("
    ):
        whisper_ct2_to_hf(broken)
    with pytest.raises(ValueError, match=r"^the variables do not make a Whisper model \(KeyError"):
        whisper_ct2_to_hf({k: v for k, v in variables.items() if isinstance(v, torch.Tensor)})


def test_gguf_q_and_k_rows_are_unpermuted_with_their_own_head_counts():
    from attentive.interop.gguf import to_hf_llama, unpermute_rotary

    config = LlamaGGUFConfig(
        num_layers=1,
        hidden_size=16,
        num_heads=4,
        num_kv_heads=2,
        ffn_size=8,
        rope_theta=1e4,
        rms_norm_eps=1e-5,
        vocab_size=5,
        context_length=32,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=None,
        head_dim=4,
    )
    q = torch.arange(16 * 16, dtype=torch.float32).reshape(16, 16)
    k = torch.arange(8 * 16, dtype=torch.float32).reshape(8, 16)
    v = -torch.arange(8 * 16, dtype=torch.float32).reshape(8, 16)
    embed = torch.ones(5, 16)
    tensors = {"token_embd.weight": embed, "blk.0.attn_q.weight": q, "blk.0.attn_k.weight": k, "blk.0.attn_v.weight": v}
    out = to_hf_llama(tensors, config)
    assert out["lm_head.weight"] is out["model.embed_tokens.weight"]  # tied
    assert torch.equal(out["model.layers.0.self_attn.q_proj.weight"], unpermute_rotary(q, 4))
    assert torch.equal(out["model.layers.0.self_attn.k_proj.weight"], unpermute_rotary(k, 2))
    assert torch.equal(out["model.layers.0.self_attn.v_proj.weight"], v)  # v is never permuted
    assert not torch.equal(unpermute_rotary(q, 4), q)
