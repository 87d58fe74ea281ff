"""PEFT export: ``peft.PeftModel.from_pretrained`` on the Hugging Face export of the base gives the
logits attentive gives with the adapter."""

from __future__ import annotations

import json

import pytest
import torch

import attentive
from attentive.interop.hf_export import export_hf
from attentive.interop.peft_export import export_peft
from attentive.lora import LoRAConfig, add_lora, save_adapter
from chat_helpers import chat_model
from test_export_hf import hf_load

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")


def _adapter(tmp_path, base_folder, targets=("q_proj", "k_proj", "v_proj", "out_proj", "gate", "up", "down")):
    model = add_lora(chat_model(), LoRAConfig(rank=4, alpha=8, targets=targets), base=str(base_folder))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    save_adapter(tmp_path / "lora", model)
    return model.eval()


def test_peft_loads_the_adapter_on_the_exported_base_with_the_same_logits(tmp_path):
    attentive.save(chat_model(), tmp_path / "base")
    export_hf(chat_model(), None, tmp_path / "base-hf")
    ours = _adapter(tmp_path, tmp_path / "base")
    export_peft(tmp_path / "lora", tmp_path / "peft", base_name=str(tmp_path / "base-hf"))
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert config["target_modules"] == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    assert (config["r"], config["lora_alpha"], config["base_model_name_or_path"]) == (4, 8, str(tmp_path / "base-hf"))
    model = peft.PeftModel.from_pretrained(
        hf_load(transformers.AutoModelForCausalLM, tmp_path / "base-hf"), tmp_path / "peft"
    ).eval()
    for length in (1, 8):
        ids = torch.randint(0, 300, (2, length))
        with torch.no_grad():
            assert (model(input_ids=ids).logits - ours(ids)).abs().max() <= 1e-4


def test_peft_export_needs_a_llama_style_adapter(tmp_path):
    gpt2 = attentive.build("gpt2-small", num_layers=1, d_model=32, num_heads=2, d_ff=64, vocab_size=50, max_len=16)
    add_lora(gpt2, LoRAConfig(rank=2, targets=("q_proj",)))
    save_adapter(tmp_path / "lora", gpt2)
    with pytest.raises(ValueError, match="LLaMA .* needs positional='rope'"):
        export_peft(tmp_path / "lora", tmp_path / "peft")
    assert not (tmp_path / "peft").exists()
