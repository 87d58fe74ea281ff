"""Hugging Face folders (what ``snapshot_download`` fetches) for LLaMA and Whisper, on tiny random models.

The real models arrive as GGUF and CTranslate2 files; these tests cover the HF-folder path
of the same families: ``save_pretrained`` writes config.json + model.safetensors, and our
classes must reproduce transformers' outputs from them.
"""

import json

import pytest
import torch

from pretrained_paths import need_whisper_ct2

transformers = pytest.importorskip("transformers")


def _word_tokenizer(folder, words: list[str]) -> None:
    """A word-level tokenizer.json whose first ids are <s>, </s>, <pad>."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {w: i for i, w in enumerate(["<s>", "</s>", "<pad>", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(["<s>", "</s>", "<pad>"])
    tok.save(str(folder / "tokenizer.json"))


def test_llama_folder_matches_transformers(tmp_path):
    from attentive import from_pretrained
    from attentive.text.chat import chat_prompt

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=40,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        intermediate_size=96,
        rope_theta=500000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        max_position_embeddings=128,
        bos_token_id=0,
        eos_token_id=1,
    )
    hf = transformers.LlamaForCausalLM(config).eval()
    hf.save_pretrained(tmp_path)
    _word_tokenizer(tmp_path, ["user", "hello", "world"])
    template = "{% for m in messages %}<s>{{ m['role'] }} {{ m['content'] }}</s>{% endfor %}"
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps(
            {"bos_token": "<s>", "eos_token": {"content": "</s>"}, "pad_token": "<pad>", "chat_template": template}
        )
    )

    ours = from_pretrained(tmp_path)
    assert (ours.kind, ours.format) == ("decoder-lm", "huggingface")
    assert (ours.config.head_dim, ours.config.rope_base, ours.config.tie_embeddings) == (32, 500000.0, False)
    ids = torch.randint(0, 40, (2, 20))
    with torch.no_grad():
        diff = (ours.model(ids) - hf(ids).logits).abs().max().item()
    assert diff <= 1e-5
    assert ours.tokenizer.eos_ids == [1] and ours.tokenizer.pad_id == 2
    assert chat_prompt(ours.tokenizer, "hello world") == [0, 3, 4, 5, 1]


def test_whisper_folder_matches_transformers(tmp_path):
    import shutil

    from attentive import from_pretrained

    torch.manual_seed(0)
    config = transformers.WhisperConfig(
        vocab_size=51864,
        d_model=64,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        num_mel_bins=80,
        suppress_tokens=[1, 2],
        begin_suppress_tokens=[220, 50256],
    )
    hf = transformers.WhisperForConditionalGeneration(config).eval()
    hf.save_pretrained(tmp_path)
    shutil.copy(need_whisper_ct2() / "tokenizer.json", tmp_path / "tokenizer.json")

    ours = from_pretrained(tmp_path)
    assert (ours.kind, ours.format) == ("speech", "huggingface")
    assert ours.config.start_ids == [50257, 50362] and ours.config.suppress_tokens == [1, 2]
    features = torch.randn(1, 80, 3000)
    ids = torch.tensor([[50257, 50362, 400, 500]])
    with torch.no_grad():
        memory = ours.model.encode(features).hidden
        ref_memory = hf.model.encoder(features).last_hidden_state
        logits = ours.model.head(ours.model.decode(ids, memory).hidden)
        ref_logits = hf(encoder_outputs=(ref_memory,), decoder_input_ids=ids).logits
    assert (memory - ref_memory).abs().max().item() <= 1e-4
    assert (logits - ref_logits).abs().max().item() <= 1e-4


@pytest.mark.parametrize(
    "scaling",
    [
        {"rope_type": "dynamic", "factor": 2.0},
        {"type": "yarn", "factor": 3.0, "original_max_position_embeddings": 16, "beta_fast": 16},
        {"rope_type": "linear", "factor": 4.0},
    ],
    ids=lambda s: s.get("rope_type", s.get("type")),
)
def test_llama_folder_with_rope_scaling_maps_over_and_matches(tmp_path, scaling):
    """A config.json's rope_scaling arrives unchanged and the logits past the training length
    (40 tokens, max_position_embeddings 16) match transformers'; ``from_pretrained(rope_scaling=)``
    replaces it."""
    from attentive import from_pretrained

    torch.manual_seed(0)
    config = dict(
        vocab_size=40,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=96,
        max_position_embeddings=16,
        tie_word_embeddings=False,
    )
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**config, rope_scaling=dict(scaling))).eval()
    hf.save_pretrained(tmp_path)
    _word_tokenizer(tmp_path, ["hello"])
    ours = from_pretrained(tmp_path)
    assert {k: v for k, v in ours.config.rope_scaling.items() if k in scaling} == scaling
    ids = torch.randint(0, 40, (2, 40))
    with torch.no_grad():
        assert (ours.model(ids) - hf(ids).logits).abs().max().item() <= 1e-5
        other = {
            "rope_type": "llama3",
            "factor": 4.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 2.0,
            "original_max_position_embeddings": 8,
        }
        swapped = from_pretrained(tmp_path, rope_scaling=other)
        hf_other = transformers.LlamaForCausalLM(transformers.LlamaConfig(**config, rope_scaling=dict(other))).eval()
        hf_other.load_state_dict(hf.state_dict())
        assert swapped.config.rope_scaling == other
        assert (swapped.model(ids) - hf_other(ids).logits).abs().max().item() <= 1e-5
