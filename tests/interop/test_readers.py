"""Readers for real pretrained files: SmolLM2 GGUF -> HF LLaMA, Whisper CTranslate2 -> HF."""

import struct
import subprocess
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from attentive.interop.ctranslate2 import read_ct2_folder, read_ct2_model, whisper_ct2_to_hf
from pretrained_paths import need_espeak, need_minilm, need_smollm2, need_whisper_ct2

transformers = pytest.importorskip("transformers")


# ---------------------------------------------------------------- GGUF (SmolLM2-135M Q4_1)


@pytest.fixture(scope="module")
def smollm2():
    from attentive.interop.gguf import load_gguf_llama

    return load_gguf_llama(need_smollm2())


def test_gguf_config_values(smollm2):
    c = smollm2.config
    assert (c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads, c.ffn_size) == (30, 576, 9, 3, 1536)
    assert (c.vocab_size, c.context_length, c.head_dim) == (49152, 8192, 64)
    assert c.rope_theta == 100000.0 and c.rms_norm_eps == 1e-5
    assert c.tie_word_embeddings and (c.bos_token_id, c.eos_token_id) == (1, 2)


def test_gguf_names_complete_and_shapes_match_hf_llama(smollm2):
    cfg = transformers.LlamaConfig(**smollm2.config.to_hf())
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(cfg)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in smollm2.state_dict.items()}
    assert got == expected
    assert all(v.dtype == torch.float32 for v in smollm2.state_dict.values())
    assert smollm2.state_dict["lm_head.weight"] is smollm2.state_dict["model.embed_tokens.weight"]
    assert all(torch.isfinite(v).all() for v in smollm2.state_dict.values())


def test_unpermute_inverts_llama_cpp_permutation():
    from attentive.interop.gguf import unpermute_rotary

    heads, head_dim, cols = 3, 8, 5
    hf = torch.randn(heads * head_dim, cols)
    # llama.cpp's converter: reshape(heads, 2, d/2, ...) then swap axes 1 and 2.
    gguf_rows = hf.reshape(heads, 2, head_dim // 2, cols).transpose(1, 2).reshape(hf.shape)
    assert torch.equal(unpermute_rotary(gguf_rows, heads), hf)


def test_gguf_unsupported_quant_type_is_one_line_error():
    gguf = pytest.importorskip("gguf")
    from attentive.interop.gguf import dequantize_tensor

    fake = SimpleNamespace(
        name="blk.0.attn_q.weight",
        tensor_type=gguf.GGMLQuantizationType.IQ2_XXS,
        shape=np.array([256, 1]),
        data=np.zeros((1, 66), np.uint8),
    )
    with pytest.raises(ValueError, match=r"IQ2_XXS; supported: F32, .*Q4_1") as err:
        dequantize_tensor(fake)
    assert "\n" not in str(err.value)


def test_gguf_not_a_gguf_file(tmp_path):
    need_smollm2()
    from attentive.interop.gguf import load_gguf_llama

    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(ValueError, match="not a readable GGUF file"):
        load_gguf_llama(bad)


def test_gguf_tokenizer_and_chat_template(smollm2):
    tok = smollm2.tokenizer
    pieces = tok.convert_ids_to_tokens(tok.encode("Hello 2024"))
    assert pieces == ["Hello", "Ġ", "2", "0", "2", "4"]  # one token per digit
    assert tok.encode("<|im_start|>user") == [1, 4093]
    text = "Grüße, world!  Tabs\tand 12 digits."
    assert tok.decode(tok.encode(text)) == text
    assert smollm2.chat_template.startswith("{% for message in messages %}")
    ids = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    ids = ids["input_ids"] if not isinstance(ids, list) else ids
    assert tok.decode(ids).endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


def test_gguf_weights_answer_paris_in_hf_llama(smollm2):
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**smollm2.config.to_hf()))
    model.load_state_dict(smollm2.state_dict, strict=True)
    model.eval()
    tok = smollm2.tokenizer
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True)
    ids = torch.tensor([ids["input_ids"] if not isinstance(ids, list) else ids])
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=8, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids.shape[1] :])


# ---------------------------------------------------------- CTranslate2 (Whisper tiny.en)


@pytest.fixture(scope="module")
def whisper_ct2():
    return read_ct2_folder(need_whisper_ct2())


def test_ct2_header_names_and_shapes(whisper_ct2):
    m = whisper_ct2
    assert (m.binary_version, m.spec, m.spec_revision) == (6, "WhisperSpec", 3)
    v = m.variables
    assert v["decoder/embeddings/weight"].shape == (51864, 384)
    assert v["decoder/embeddings/weight"].dtype == torch.float16
    assert v["encoder/conv1/weight"].shape == (384, 80, 3)
    assert v["encoder/layer_0/self_attention/linear_0/weight"].shape == (1152, 384)
    assert v["decoder/layer_3/attention/linear_1/weight"].shape == (768, 384)
    assert v["encoder/position_encodings/encodings"].shape == (1500, 384)
    assert int(v["encoder/num_heads"]) == 6 and int(v["decoder/activation"]) == 3
    assert m.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    assert v["decoder/projection/weight"] is v["decoder/embeddings/weight"]
    assert len(m.vocabulary) == 51864 and m.vocabulary[50257] == "<|startoftranscript|>"
    assert m.config["suppress_ids_begin"] == [220, 50256]


def test_ct2_whisper_to_hf_names_and_split_shapes(whisper_ct2):
    config, sd = whisper_ct2_to_hf(whisper_ct2)
    assert (config["d_model"], config["encoder_layers"], config["decoder_layers"]) == (384, 4, 4)
    with torch.device("meta"):
        hf = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(**config))
    expected = {k: tuple(t.shape) for k, t in hf.state_dict().items()}
    assert {k: tuple(t.shape) for k, t in sd.items()} == expected
    fused = whisper_ct2.variables["decoder/layer_1/self_attention/linear_0/weight"]
    assert torch.equal(sd["model.decoder.layers.1.self_attn.k_proj.weight"], fused[384:768])
    kv = whisper_ct2.variables["decoder/layer_1/attention/linear_1/weight"]
    assert torch.equal(sd["model.decoder.layers.1.encoder_attn.v_proj.weight"], kv[384:])
    assert "model.encoder.layers.0.self_attn.k_proj.bias" not in sd
    assert sd["proj_out.weight"] is sd["model.decoder.embed_tokens.weight"]


@pytest.mark.parametrize("keep", [3, 40, 200, -10])
def test_ct2_truncated_file_is_one_line_error(whisper_ct2, tmp_path, keep):
    data = (need_whisper_ct2() / "model.bin").read_bytes()
    cut = tmp_path / "model.bin"
    cut.write_bytes(data[:keep] if keep > 0 else data[:200_000])
    with pytest.raises(ValueError, match="truncated or corrupt") as err:
        read_ct2_model(cut)
    assert "\n" not in str(err.value)


def test_ct2_bad_version_and_trailing_bytes(tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes(struct.pack("<I", 99) + b"\0" * 16)
    with pytest.raises(ValueError, match="binary version 99; supported: 4, 5, 6"):
        read_ct2_model(bad)
    # A minimal valid file (one float32 scalar, no aliases), then one stray byte.
    name = b"x\0"
    body = (
        struct.pack("<I", 6)
        + struct.pack("<H", 5)
        + b"Spec\0"
        + struct.pack("<I", 1)
        + struct.pack("<I", 1)
        + struct.pack("<H", len(name))
        + name
        + bytes([0, 0])
        + struct.pack("<I", 4)
        + struct.pack("<f", 2.5)
        + struct.pack("<I", 0)
    )
    bad.write_bytes(body)
    assert read_ct2_model(bad).variables["x"].item() == 2.5
    bad.write_bytes(body + b"\0")
    with pytest.raises(ValueError, match="unexpected bytes"):
        read_ct2_model(bad)


def test_minilm_folder_is_found():
    folder = need_minilm()
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()


def test_converted_whisper_transcribes_espeak_clip(whisper_ct2, tmp_path):
    """End to end: espeak clip -> our features -> HF Whisper with converted weights."""
    from tokenizers import Tokenizer

    from attentive.audio import log_mel_spectrogram, read_wav, resample

    wav = tmp_path / "clip.wav"
    said = "Hello world. This is a test of the speech recognition system."
    subprocess.run([need_espeak(), "-w", str(wav), said], check=True)
    audio, rate = read_wav(wav)
    feats = log_mel_spectrogram(resample(audio, rate, 16000))[None]
    config, sd = whisper_ct2_to_hf(whisper_ct2)
    model = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(**config))
    model.load_state_dict({k: t.float() for k, t in sd.items()}, strict=True)
    model.eval()
    ids = [50257, 50362]  # <|startoftranscript|> <|notimestamps|> (English-only model)
    with torch.no_grad():
        enc = model.model.encoder(feats).last_hidden_state
        for _ in range(30):
            logits = model(encoder_outputs=(enc,), decoder_input_ids=torch.tensor([ids])).logits
            if int(logits[0, -1].argmax()) == 50256:
                break
            ids.append(int(logits[0, -1].argmax()))
    text = Tokenizer.from_file(str(whisper_ct2.tokenizer_json)).decode(ids[2:]).lower()
    assert "hello world" in text and "speech recognition system" in text
