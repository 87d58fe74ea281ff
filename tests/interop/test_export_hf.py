"""Hugging Face export: ``transformers`` loads every exported family with no missing or unexpected
weights and computes what attentive computes (max abs diff <= 1e-4, fp32, CPU); a folder read
into attentive and exported again holds the very same tensors; what does not map is refused."""

from __future__ import annotations

import io
import logging
from contextlib import contextmanager

import pytest
import torch

import attentive
from attentive.checkpoint import read_tensors
from attentive.interop.hf_export import export_hf
from chat_helpers import chat_model, chat_tokenizer
from helpers import tiny_gpt2
from pretrained_paths import need_minilm, need_whisper_ct2

transformers = pytest.importorskip("transformers")
TOL = 1e-4


@contextmanager
def _warnings_logged():
    """Everything transformers logs while loading (its load report lists MISSING / UNEXPECTED keys)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = transformers.utils.logging.get_logger()
    logger.addHandler(handler)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)


def hf_load(auto_class, folder):
    """``from_pretrained`` that must load every weight: no missing, unexpected or mismatched keys."""
    with _warnings_logged() as log:
        model, info = auto_class.from_pretrained(folder, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    assert "MISSING" not in log.getvalue() and "UNEXPECTED" not in log.getvalue(), log.getvalue()
    return model.eval()


def _same_tensors(a, b) -> None:
    ta, tb = read_tensors(a / "model.safetensors"), read_tensors(b / "model.safetensors")
    assert ta.keys() == tb.keys()
    for name in ta:
        assert torch.equal(ta[name], tb[name]), name


def _round_trip(folder, tmp_path) -> None:
    """HF folder -> attentive -> HF folder: the same tensors."""
    again = tmp_path / "again"
    pre = attentive.from_pretrained(folder, optimize=False)
    export_hf(pre.model, pre.tokenizer, again)
    _same_tensors(folder, again)


def test_llama_style_decoder_loads_in_transformers_with_its_tokenizer(tmp_path):
    model, tok = chat_model(), chat_tokenizer()
    export_hf(model, tok, tmp_path / "hf")
    hf = hf_load(transformers.AutoModelForCausalLM, tmp_path / "hf")
    assert type(hf).__name__ == "LlamaForCausalLM"
    for length in (1, 9):
        ids = torch.randint(0, 300, (2, length))
        with torch.no_grad():
            assert (hf(ids).logits - model(ids)).abs().max() <= TOL
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    text = "Translate to English: Ein Hund rennt durch den Park."
    assert hf_tok(text, add_special_tokens=False)["input_ids"] == tok.encode(text)
    messages = [{"role": "user", "content": text}]
    assert hf_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == tok.apply_chat_template(
        messages
    )
    assert transformers.GenerationConfig.from_pretrained(tmp_path / "hf").eos_token_id == tok.eos_id
    _round_trip(tmp_path / "hf", tmp_path)


def test_gpt2_style_decoder_loads_in_transformers(tmp_path):
    model = attentive.build(tiny_gpt2(vocab_size=60)).eval()
    export_hf(model, None, tmp_path / "hf")
    hf = hf_load(transformers.AutoModelForCausalLM, tmp_path / "hf")
    assert type(hf).__name__ == "GPT2LMHeadModel"
    ids = torch.randint(0, 60, (2, 11))
    with torch.no_grad():
        assert (hf(ids).logits - model(ids)).abs().max() <= TOL
    _round_trip(tmp_path / "hf", tmp_path)


def test_minilm_round_trips_bit_for_bit_and_transformers_agrees(tmp_path):
    source = need_minilm()
    pre = attentive.from_pretrained(source, optimize=False)
    export_hf(pre.model, pre.tokenizer, tmp_path / "hf")
    original, ours = read_tensors(source / "model.safetensors"), read_tensors(tmp_path / "hf" / "model.safetensors")
    original.pop("embeddings.position_ids")  # a buffer, not a weight
    assert original.keys() == ours.keys() and all(torch.equal(original[k], ours[k]) for k in ours)
    hf = hf_load(transformers.AutoModel, tmp_path / "hf")
    ids = torch.tensor([[101, 7592, 2088, 2003, 1037, 3231, 102], [101, 2023, 2003, 102, 0, 0, 0]])
    mask = ids != 0
    with torch.no_grad():
        assert (hf(ids, attention_mask=mask.long()).last_hidden_state - pre.model(ids, mask))[mask].abs().max() <= TOL
    again = attentive.from_pretrained(tmp_path / "hf", optimize=False)  # sentence-transformers pooling travels with it
    assert (again.model.config.pooling, again.model.config.normalize) == ("mean", True)
    texts = ["A man is eating food.", "Someone is having a meal."]
    from attentive.models.encoder import embed_texts

    assert torch.equal(embed_texts(again.model, again.tokenizer, texts), embed_texts(pre.model, pre.tokenizer, texts))


def test_whisper_exports_to_whisper_for_conditional_generation(tmp_path):
    pre = attentive.from_pretrained(need_whisper_ct2(), optimize=False)
    export_hf(pre.model, pre.tokenizer, tmp_path / "hf")
    hf = hf_load(transformers.WhisperForConditionalGeneration, tmp_path / "hf")
    features = torch.randn(1, 80, 3000)
    ids = torch.tensor([[50257, 50362, 15496, 995, 13]])
    with torch.no_grad():
        memory = pre.model.encode(features).hidden
        assert (hf.model.encoder(features).last_hidden_state - memory).abs().max() <= TOL
        ours = pre.model.head(pre.model.decode(ids, memory).hidden)
        assert (hf(input_features=features, decoder_input_ids=ids).logits - ours).abs().max() <= TOL
    assert transformers.GenerationConfig.from_pretrained(tmp_path / "hf").decoder_start_token_id == 50257
    _round_trip(tmp_path / "hf", tmp_path)


def test_vit_exports_with_its_image_processor(tmp_path):
    torch.manual_seed(0)
    model = attentive.build("vit-tiny", num_layers=2, max_len=30).eval()
    with torch.no_grad():
        model.head.weight.normal_(0, 0.5)  # the ViT head starts at zero: give the logits something to compare
    export_hf(model, None, tmp_path / "hf")
    hf = hf_load(transformers.AutoModelForImageClassification, tmp_path / "hf")
    pixels = torch.rand(3, 1, 28, 28)  # raw 0..1: our model normalises, HF's processor does it before
    processor = transformers.AutoImageProcessor.from_pretrained(tmp_path / "hf")
    normalised = (pixels - processor.image_mean[0]) / processor.image_std[0]
    with torch.no_grad():
        assert (hf(normalised).logits - model(pixels)).abs().max() <= TOL
    _round_trip(tmp_path / "hf", tmp_path)


def test_the_papers_encoder_decoder_exports_to_marian(tmp_path):
    """Post-LN, sinusoidal, one shared vocabulary: MarianMTModel, once the model width is reordered
    to Marian's sines-then-cosines table."""
    model = attentive.build("transformer-tiny", dropout=0.0, attention_dropout=0.0).eval()
    export_hf(model, None, tmp_path / "hf")
    hf = hf_load(transformers.AutoModelForSeq2SeqLM, tmp_path / "hf")
    assert type(hf).__name__ == "MarianMTModel"
    src, tgt = torch.randint(4, 1000, (2, 9)), torch.randint(4, 1000, (2, 6))
    src[1, -3:] = 0  # padding
    with torch.no_grad():
        theirs = hf(input_ids=src, attention_mask=(src != 0).long(), decoder_input_ids=tgt).logits
        assert (theirs - model(src, tgt)).abs().max() <= TOL
    _round_trip(tmp_path / "hf", tmp_path)


@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda: attentive.build("llama-tiny", positional="alibi"),
            "positional='alibi' has no Hugging Face counterpart",
        ),
        (
            lambda: attentive.build("llama-tiny", norm_first=False),
            "LLaMA .* needs norm_first=True; this model has norm_first=False",
        ),
        (lambda: attentive.build("minilm-l6", num_layers=1, norm_first=True), "needs norm_first=False"),
        (lambda: attentive.build("transformer-tiny", norm_first=True), "Marian .* needs norm_first=False"),
        (
            lambda: attentive.build("transformer-tiny", src_vocab_size=900, tie_embeddings="output"),
            "needs tie_embeddings='all'",
        ),
        (lambda: attentive.build("decision-transformer"), "decision-transformer model has no Hugging Face export"),
    ],
)
def test_what_does_not_map_is_refused_with_one_line_and_nothing_written(tmp_path, build, message):
    with pytest.raises(ValueError, match=message) as err:
        export_hf(build(), None, tmp_path / "out")
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_leaves_no_folder(tmp_path, monkeypatch):
    import attentive.interop.hf_export as hf_export

    def broken(path, text):
        raise OSError("disk full")

    monkeypatch.setattr(hf_export, "atomic_write_text", broken)
    with pytest.raises(OSError, match="disk full"):
        export_hf(chat_model(), chat_tokenizer(), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its temporary twin


@pytest.mark.slow
def test_smollm2_exports_to_llama_for_causal_lm_and_round_trips(tmp_path):
    from pretrained_paths import need_smollm2

    pre = attentive.from_pretrained(need_smollm2(), optimize=False)
    export_hf(pre.model, pre.tokenizer, tmp_path / "hf")
    hf = hf_load(transformers.AutoModelForCausalLM, tmp_path / "hf")
    ids = torch.tensor([pre.tokenizer.encode("The capital of France is Paris, and the capital of Germany is")])
    with torch.no_grad():
        assert (hf(ids).logits - pre.model(ids)).abs().max() <= TOL
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert hf_tok("Zwei Männer spielen 2024.", add_special_tokens=False)["input_ids"] == pre.tokenizer.encode(
        "Zwei Männer spielen 2024."
    )
    _round_trip(tmp_path / "hf", tmp_path)
