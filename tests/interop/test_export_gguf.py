"""GGUF export: the gguf package reads the file back, attentive's own loader gets the same model
(f32 exactly; f16 and q8_0 within stated tolerances), and the keys and tensor names are those of
the shipped SmolLM2 GGUF, so llama.cpp can run it."""

from __future__ import annotations

import re

import pytest
import torch

import attentive
from attentive.interop.gguf_export import export_gguf, permute_rotary
from attentive.lora import LoRAConfig, add_lora
from chat_helpers import chat_model, chat_tokenizer
from pretrained_paths import need_smollm2

gguf = pytest.importorskip("gguf")
# the shipped file's descriptive keys that an export cannot know (who made the model, its licence)
DESCRIPTIVE = {"general.organization", "general.finetune", "general.license", "general.languages"}
# |logit difference| allowed, as a fraction of the largest |logit| (f32 must be exact)
TOLERANCE = {"f32": 0.0, "f16": 5e-3, "q8_0": 5e-2}


def _keys(reader) -> set[str]:
    return {k for k in reader.fields if not k.startswith("GGUF.")}


def _name_patterns(reader) -> set[str]:
    return {re.sub(r"^blk\.\d+\.", "blk.N.", t.name) for t in reader.tensors}


@pytest.fixture(scope="module")
def shipped():
    return gguf.GGUFReader(need_smollm2())


def test_permutation_is_the_inverse_of_the_readers():
    from attentive.interop.gguf import unpermute_rotary

    w = torch.randn(4 * 8, 5)
    assert torch.equal(unpermute_rotary(permute_rotary(w, 4), 4), w)


@pytest.mark.parametrize("dtype", ["f32", "f16", "q8_0"])
@pytest.mark.parametrize("tied", [True, False])
def test_read_back_by_gguf_and_by_attentive(tmp_path, shipped, dtype, tied):
    model, tok = chat_model(tie_embeddings=tied), chat_tokenizer()
    path = export_gguf(model, tok, tmp_path / "m.gguf", dtype=dtype)
    reader = gguf.GGUFReader(path)
    assert _keys(reader) == _keys(shipped) - DESCRIPTIVE
    expected = _name_patterns(shipped) | ({"output.weight"} if not tied else set())
    assert _name_patterns(reader) == expected
    kinds = {t.name: t.tensor_type.name for t in reader.tensors}
    assert kinds["blk.0.attn_norm.weight"] == "F32" and kinds["blk.0.attn_q.weight"] == dtype.upper()
    # llama-tiny's FFN is 172 wide: ffn_down's rows are not whole q8_0 blocks and fall back to f16
    assert kinds["blk.0.ffn_down.weight"] == {"q8_0": "F16"}.get(dtype, dtype.upper())
    assert reader.fields["tokenizer.ggml.pre"].contents() == "smollm"
    back = attentive.from_pretrained(path, optimize=False)
    ids = torch.tensor([tok.encode("Translate to English: Ein Hund rennt durch den Park.")])
    with torch.no_grad():
        ours, theirs = model(ids), back.model(ids)
    assert (theirs - ours).abs().max() <= TOLERANCE[dtype] * ours.abs().max()
    assert back.tokenizer.encode("Zwei Männer spielen 2024 Fußball.") == tok.encode("Zwei Männer spielen 2024 Fußball.")
    assert back.tokenizer.chat_template == tok.chat_template
    assert (back.tokenizer.bos_id, back.tokenizer.eos_ids, back.tokenizer.pad_id) == (
        tok.bos_id,
        tok.eos_ids,
        tok.pad_id,
    )


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: (
                attentive.build(
                    "gpt2-small", num_layers=1, d_model=32, num_heads=2, d_ff=64, vocab_size=300, max_len=16
                ),
                chat_tokenizer(),
            ),
            "needs positional='rope'",
        ),
        (lambda: (add_lora(chat_model(), LoRAConfig()), chat_tokenizer()), "unmerged LoRA adapter"),
        (lambda: (chat_model(), None), "needs the model's Hugging Face tokenizer"),
        (
            lambda: (chat_model(vocab_size=301), chat_tokenizer()),
            "the tokenizer has 300 tokens, the model's vocabulary 301",
        ),
    ],
)
def test_what_gguf_cannot_hold_is_refused_and_nothing_written(tmp_path, make, message):
    model, tok = make()
    with pytest.raises(ValueError, match=message):
        export_gguf(model, tok, tmp_path / "m.gguf")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["f32", "q8_0"])
def test_smollm2_exports_with_the_shipped_files_keys_and_names(tmp_path, shipped, dtype):
    pre = attentive.from_pretrained(need_smollm2(), optimize=False)
    path = export_gguf(pre.model, pre.tokenizer, tmp_path / "smollm2.gguf", dtype=dtype)
    reader = gguf.GGUFReader(path)
    assert _keys(reader) == _keys(shipped) - DESCRIPTIVE
    assert sorted(t.name for t in reader.tensors) == sorted(t.name for t in shipped.tensors)
    for key in (
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.token_type",
        "llama.rope.freq_base",
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.chat_template",
    ):
        assert reader.fields[key].contents() == shipped.fields[key].contents(), key
    back = attentive.from_pretrained(path, optimize=False)
    ids = torch.tensor([pre.tokenizer.encode("The capital of France is Paris, and the capital of Germany is")])
    with torch.no_grad():
        ours, theirs = pre.model(ids), back.model(ids)
    assert (theirs - ours).abs().max() <= TOLERANCE[dtype] * ours.abs().max()
    assert torch.equal(theirs.argmax(-1), ours.argmax(-1))
