"""``from_pretrained`` on bad input: every failure is one line saying what was found and what is supported.

Also: the name maps reject unknown names, and hub names go through huggingface_hub only when
the path does not exist. (The chat templates' sandbox: tests/text/test_pretrained_tokenizer.py.)
"""

import json
import shutil

import pytest
import torch

from attentive import from_pretrained
from pretrained_paths import need_minilm, need_smollm2, need_whisper_ct2


def one_line_error(path, match: str) -> str:
    with pytest.raises(ValueError, match=match) as err:
        from_pretrained(path)
    message = str(err.value)
    assert "\n" not in message, message
    return message


def test_file_of_no_supported_format(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    message = one_line_error(notes, "none of the supported formats")
    assert "b'hell'" in message and "GGUF" in message and "CTranslate2" in message
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    one_line_error(empty, "an empty file")


def test_folder_of_no_supported_format(tmp_path):
    (tmp_path / "readme.md").write_text("nothing here")
    message = one_line_error(tmp_path, "a folder with readme.md, none of the supported formats")
    assert "Hugging Face folder" in message


def test_unknown_model_type(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5", "num_layers": 12}))
    message = one_line_error(tmp_path, "model_type 't5'")
    assert "bert, llama, gpt2, whisper, vit, marian" in message


def test_missing_path_that_is_not_a_hub_name(tmp_path):
    one_line_error(tmp_path / "nowhere" / "model", "does not exist")


def test_hub_download_failure_is_one_line(monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'.\nCheck your connection.")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    one_line_error(
        "someone/some-model",
        r"someone/some-model is not a local file or folder, and could not be fetched from the Hugging Face hub "
        r"\(OSError: We couldn't connect",
    )


def _minilm_copy(tmp_path):
    folder = tmp_path / "minilm"
    shutil.copytree(need_minilm(), folder, ignore=shutil.ignore_patterns("model.safetensors"))
    return folder


def test_truncated_safetensors(tmp_path):
    folder = _minilm_copy(tmp_path)
    (folder / "model.safetensors").write_bytes((need_minilm() / "model.safetensors").read_bytes()[:100_000])
    one_line_error(folder, "model.safetensors is not a readable safetensors file")


def test_pickle_only_folder_is_refused(tmp_path):
    folder = _minilm_copy(tmp_path)
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    one_line_error(folder, r"no model\.safetensors \(found pytorch_model\.bin: pickle files are never loaded\)")


def test_truncated_gguf(tmp_path):
    cut = tmp_path / "cut.gguf"
    with open(need_smollm2(), "rb") as f:
        cut.write_bytes(f.read(2_000_000))
    one_line_error(cut, "not a readable GGUF file.*truncated or corrupt")


def test_gguf_with_unsupported_quantisation(tmp_path):
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "iq2.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_embedding_length(256)
    writer.add_head_count(1)
    writer.add_feed_forward_length(256)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(1)
    writer.add_context_length(16)
    block = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.IQ2_XXS][1]  # bytes per 256 weights
    writer.add_tensor(
        "token_embd.weight",
        torch.zeros(1, block, dtype=torch.uint8).numpy(),
        raw_dtype=gguf.GGMLQuantizationType.IQ2_XXS,
    )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    message = one_line_error(path, "GGUF type IQ2_XXS; supported: F32, F16, BF16, Q4_0, Q4_1")
    assert str(path) in message


def test_truncated_ctranslate2_model(tmp_path):
    folder = tmp_path / "whisper"
    shutil.copytree(need_whisper_ct2(), folder, ignore=shutil.ignore_patterns("model.bin"))
    (folder / "model.bin").write_bytes((need_whisper_ct2() / "model.bin").read_bytes()[:300_000])
    one_line_error(folder, "truncated or corrupt")


def test_name_maps_reject_unknown_names():
    from attentive.interop.families import bert, llama
    from attentive.interop.hf_maps import rename

    renamed = rename({"model.layers.3.mlp.gate_proj.weight": torch.zeros(1)}, llama.RULES)
    assert list(renamed) == ["stack.layers.3.ffn.gate.weight"]
    with pytest.raises(ValueError, match="LLaMA weight 'model.layers.0.mlp.extra.weight' has no mapping"):
        rename({"model.layers.0.mlp.extra.weight": torch.zeros(1)}, llama.RULES, family="LLaMA")
    old = bert.read_state(
        {"bert.encoder.layer.0.output.LayerNorm.gamma": torch.ones(2), "cls.predictions.bias": torch.ones(2)}
    )
    assert list(old) == ["stack.layers.0.ffn_residual.norm.weight"]  # gamma -> weight; MLM head not loaded


def test_unsupported_llama_variants():
    from attentive.interop.families.llama import read_config as llama_config

    base = dict(vocab_size=10, num_hidden_layers=1, hidden_size=8, num_attention_heads=2, intermediate_size=16)
    assert llama_config(base).positional == "rope"
    with pytest.raises(ValueError, match="rope type 'longrope' is not supported; supported: default, linear, dynamic"):
        llama_config({**base, "rope_scaling": {"rope_type": "longrope", "factor": 8.0}})
    with pytest.raises(ValueError, match="rope_scaling type 'llama3' needs low_freq_factor, high_freq_factor"):
        llama_config({**base, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}})  # scaling is checked
    assert llama_config({**base, "rope_scaling": {"type": "linear", "factor": 2.0}}).rope_scaling == {
        "type": "linear",
        "factor": 2.0,
    }  # maps over unchanged
    with pytest.raises(ValueError, match="attention_bias or mlp_bias is not supported"):
        llama_config({**base, "attention_bias": True})


def test_generate_chat_is_greedy_unless_a_temperature_is_given():
    from attentive.cli.generate import generation_config
    from attentive.cli.main import build_parser

    def temperature(*argv):
        return generation_config(build_parser().parse_args(["generate", "--model", "x.gguf", *argv]))[0].temperature

    assert temperature("--chat", "Hi") == 0.0
    assert temperature("--chat", "--temperature", "0.7", "Hi") == 0.7
    assert temperature("Hi") == 0.8  # plain continuation keeps its sampling default
