"""ONNX export: ONNX Runtime computes what PyTorch computes (max abs diff <= 1e-4) at two sequence
lengths including 1, for the language model's prefill and decode-with-past graphs, the ViT and
the sentence encoder; greedy tokens through ONNX Runtime equal attentive's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import attentive
from attentive.decode import generate
from attentive.interop.onnx_export import _LMStep, export_onnx, greedy_onnx
from chat_helpers import chat_model, chat_tokenizer
from pretrained_paths import need_minilm

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
TOL = 1e-4


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _max_diff(onnx_outputs, torch_outputs) -> float:
    return max(float(np.abs(a - b.detach().numpy()).max()) for a, b in zip(onnx_outputs, torch_outputs))


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    model, tok = chat_model(), chat_tokenizer()
    folder = export_onnx(model, tok, tmp_path_factory.mktemp("onnx") / "lm")
    return model, tok, folder


@pytest.mark.parametrize("length", [1, 7])
def test_prefill_and_decode_with_past_match_pytorch(lm, length):
    model, _, folder = lm
    step = _LMStep(model).eval()
    ids = torch.randint(0, 300, (2, length))
    mask = torch.ones(2, length, dtype=torch.long)
    mask[1, : length // 2] = 0  # a left-padded row (none at length 1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        expected = step(ids, mask, positions)  # logits (2, T, V), present keys / values (L, 2, Hkv, T, Dh)
    got = _session(folder / "prefill.onnx").run(
        None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "position_ids": positions.numpy()}
    )
    assert _max_diff(got, expected) <= TOL
    nxt, mask2 = torch.randint(0, 300, (2, 1)), torch.cat([mask, torch.ones(2, 1, dtype=torch.long)], 1)
    with torch.no_grad():
        expected = step(nxt, mask2, positions[:, -1:] + 1, expected[1], expected[2])  # past of `length` tokens
    got = _session(folder / "decode.onnx").run(
        None,
        {
            "input_ids": nxt.numpy(),
            "attention_mask": mask2.numpy(),
            "position_ids": (positions[:, -1:] + 1).numpy(),
            "past_keys": got[1],
            "past_values": got[2],
        },
    )
    assert _max_diff(got, expected) <= TOL


def test_greedy_tokens_through_onnx_runtime_equal_attentives(lm):
    model, tok, folder = lm
    prompt = tok.encode(tok.apply_chat_template([{"role": "user", "content": "Translate to English: Ein Hund."}]))
    ours = generate(model, tok, [prompt], max_new_tokens=20, temperature=0.0, stop_tokens=()).tokens[0]
    assert len(set(ours)) > 5  # a comparison worth making
    assert greedy_onnx(folder, prompt, 20) == ours
    info = json.loads((folder / "onnx.json").read_text())
    assert info["graphs"] == {"prefill": "prefill.onnx", "decode": "decode.onnx"} and info["num_layers"] == 2
    assert (folder / "tokenizer.json").is_file() and (folder / "tokenizer_config.json").is_file()


def test_vit_matches_pytorch_at_two_batch_sizes(tmp_path):
    torch.manual_seed(0)
    model = attentive.build("vit-tiny", num_layers=2).eval()
    with torch.no_grad():
        model.head.weight.normal_(0, 0.5)
    session = _session(export_onnx(model, None, tmp_path / "vit") / "model.onnx")
    for batch in (1, 3):
        pixels = torch.rand(batch, 1, 28, 28)
        with torch.no_grad():
            assert _max_diff(session.run(None, {"pixel_values": pixels.numpy()}), [model(pixels)]) <= TOL


def _check_encoder(model, folder) -> None:
    session = _session(folder / "model.onnx")
    for length in (1, 9):
        ids = torch.randint(1000, 2000, (2, length))
        mask = torch.ones(2, length, dtype=torch.long)
        mask[1, length - length // 3 :] = 0  # right padding, as BERT pads
        with torch.no_grad():
            hidden = model(ids, mask.bool())
            expected = [hidden, model.pool(hidden, mask.bool())]
        got = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
        keep = mask.bool().numpy()
        assert float(np.abs(got[0][keep] - expected[0].numpy()[keep]).max()) <= TOL  # padding positions are free
        assert float(np.abs(got[1] - expected[1].numpy()).max()) <= TOL


def test_sentence_encoder_matches_pytorch_at_two_lengths(tmp_path):
    torch.manual_seed(0)
    model = attentive.build("minilm-l6", num_layers=2, d_model=64, num_heads=4, d_ff=128).eval()
    _check_encoder(model, export_onnx(model, None, tmp_path / "enc"))


@pytest.mark.slow
def test_minilm_matches_pytorch_at_two_lengths(tmp_path):
    pre = attentive.from_pretrained(need_minilm())
    _check_encoder(pre.model, export_onnx(pre.model, pre.tokenizer, tmp_path / "minilm"))


def test_other_families_are_refused_and_nothing_written(tmp_path):
    with pytest.raises(
        ValueError, match="ONNX export covers DecoderLM, ViT and Encoder models; this is a encoder-decoder model"
    ):
        export_onnx(attentive.build("transformer-tiny"), None, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_smollm2_greedy_tokens_through_onnx_runtime_equal_attentives(tmp_path):
    from pretrained_paths import need_smollm2

    pre = attentive.from_pretrained(need_smollm2())
    folder = export_onnx(pre.model, pre.tokenizer, tmp_path / "smollm2")
    prompt = pre.tokenizer.encode(
        pre.tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}])
    )
    ours = generate(pre.model, pre.tokenizer, [prompt], max_new_tokens=16, temperature=0.0).tokens[0]
    assert greedy_onnx(folder, prompt, 16, tuple(pre.tokenizer.eos_ids)) == ours
