"""``attentive merge`` and ``attentive export``: results that other tools read, and bad input as
one line (exit status 2) with nothing written."""

from __future__ import annotations

import pytest
import torch

import attentive
from attentive.cli.main import main
from attentive.lora import LoRAConfig, add_lora, save_adapter
from chat_helpers import chat_model, chat_tokenizer


@pytest.fixture()
def lora_run(tmp_path):
    """An attentive base checkpoint (with its tokenizer) and an adapter folder trained on it."""
    base = tmp_path / "base"
    attentive.interop.pretrained.Pretrained(chat_model(), chat_tokenizer(), "", "attentive").save(base)
    model = add_lora(chat_model(), LoRAConfig(rank=4, alpha=8, targets=("q_proj", "down")), base=str(base))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    save_adapter(tmp_path / "lora", model)
    return base, tmp_path / "lora", model.eval()


def _one_line_error(capsys, argv, *fragments) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"attentive {argv[0]}: error: "), err
    for fragment in fragments:
        assert fragment in err, err


def test_merge_writes_a_checkpoint_with_the_adapted_logits(tmp_path, lora_run, capsys):
    _, adapter, model = lora_run
    assert main(["merge", "--adapter", str(adapter), "--out", str(tmp_path / "merged")]) == 0
    merged = attentive.from_pretrained(tmp_path / "merged")
    ids = torch.randint(0, 300, (2, 6))
    with torch.no_grad():
        torch.testing.assert_close(merged.model(ids), model(ids), atol=1e-5, rtol=1e-5)
    assert merged.tokenizer.chat_template == chat_tokenizer().chat_template
    assert "merged" in capsys.readouterr().out


def test_merge_with_a_base_that_does_not_fit(tmp_path, lora_run, capsys):
    _, adapter, _ = lora_run
    other = tmp_path / "other"
    attentive.save(chat_model(d_model=32, num_heads=4, num_kv_heads=2, d_ff=64), other)
    _one_line_error(
        capsys,
        ["merge", "--adapter", str(adapter), "--base", str(other), "--out", str(tmp_path / "m")],
        "stack.layers.0.self_attn.q_proj.lora_A.weight' has shape (4, 64), the model expects (4, 32)",
    )
    _one_line_error(capsys, ["merge", "--adapter", str(other), "--out", str(tmp_path / "m")], "not an adapter folder")
    assert not (tmp_path / "m").exists()


def test_export_every_target_from_the_command_line(tmp_path, lora_run, capsys):
    base, adapter, _ = lora_run
    assert main(["export", str(adapter), "--to", "peft", "--out", str(tmp_path / "peft")]) == 0
    assert {p.name for p in (tmp_path / "peft").iterdir()} == {"adapter_config.json", "adapter_model.safetensors"}
    assert main(["export", str(adapter), "--to", "hf", "--out", str(tmp_path / "hf")]) == 0  # merged on the way
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= {
        p.name for p in (tmp_path / "hf").iterdir()
    }
    assert main(["export", str(base), "--to", "gguf", "--dtype", "q8_0", "--out", str(tmp_path / "m.gguf")]) == 0
    assert attentive.from_pretrained(tmp_path / "m.gguf").model.config.num_layers == 2


def test_export_refusals_are_one_line_and_write_nothing(tmp_path, lora_run, capsys):
    base, adapter, _ = lora_run
    out = str(tmp_path / "out")
    _one_line_error(capsys, ["export", str(base), "--to", "peft", "--out", out], "--to peft exports a LoRA adapter")
    _one_line_error(
        capsys, ["export", str(base), "--to", "hf", "--dtype", "f16", "--out", out], "--dtype is for --to gguf"
    )
    alibi = tmp_path / "alibi"
    attentive.save(attentive.build("llama-tiny", positional="alibi"), alibi)
    _one_line_error(capsys, ["export", str(alibi), "--to", "hf", "--out", out], "positional='alibi'")
    _one_line_error(capsys, ["export", str(alibi), "--to", "gguf", "--out", out], "needs positional='rope'")
    encdec = tmp_path / "encdec"
    attentive.save(attentive.build("transformer-tiny"), encdec)
    _one_line_error(capsys, ["export", str(encdec), "--to", "onnx", "--out", out], "ONNX export covers")
    _one_line_error(capsys, ["export", str(tmp_path / "missing"), "--to", "hf", "--out", out], "missing")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temporary leftovers
