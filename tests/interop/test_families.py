"""The family table (``interop.families``): every family module reads and writes its Hugging Face
class, and a new family is one module plus one entry, seen by ``from_pretrained`` and ``export_hf``."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

import attentive
from attentive.checkpoint import save_tensors
from attentive.interop.families import HF_FAMILY_MODULES
from attentive.interop.hf_export import export_hf, hf_family
from attentive.interop.hf_maps import invert, rename
from attentive import from_pretrained
from attentive.interop.pretrained import SUPPORTED


@pytest.mark.parametrize("name", sorted(HF_FAMILY_MODULES))
def test_every_family_module_reads_and_writes(name):
    family = HF_FAMILY_MODULES[name]
    for attr in ("NAME", "RULES", "read_config", "read_state", "load", "EXPORTS", "to_hf"):
        assert hasattr(family, attr), f"{name} lacks {attr}"
    assert name in SUPPORTED  # the folder formats error messages list
    hf_names = [hf for hf, _ in family.RULES]
    assert len(set(hf_names)) == len(hf_names) and len({ours for _, ours in family.RULES}) == len(family.RULES)


def test_a_read_table_backwards_keeps_the_first_name():
    assert invert({"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}) == {
        "gelu_tanh": "gelu_new",
        "gelu": "gelu",
    }


def test_one_table_maps_names_both_ways():
    rules = HF_FAMILY_MODULES["whisper"].RULES
    names = {"decoder.layers.1.encoder_attn.k_proj.weight": torch.zeros(1), "encoder.conv2.bias": torch.zeros(1)}
    ours = rename(names, rules)
    assert sorted(ours) == ["conv2.bias", "decoder.layers.1.cross_attn.k_proj.weight"]
    assert rename(ours, rules, reverse=True).keys() == names.keys()
    with pytest.raises(ValueError, match="attentive weight 'nowhere.weight' has no mapping to Whisper names"):
        rename({"nowhere.weight": torch.zeros(1)}, rules, family="Whisper", reverse=True)


def test_a_new_family_is_one_module_and_one_entry(monkeypatch, tmp_path):
    model = attentive.build("decision-transformer").eval()
    toy = SimpleNamespace(
        NAME="Toy",
        EXPORTS=("decision-transformer", None),
        RULES=[],
        load=lambda folder, language, overrides: (model, folder.config["marker"]),
        to_hf=lambda m: ({"model_type": "toy", "marker": "exported"}, {"w": torch.ones(2)}),
    )
    monkeypatch.setitem(HF_FAMILY_MODULES, "toy", toy)
    assert hf_family(model) == "toy"
    export_hf(model, None, tmp_path / "hf")
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["marker"] == "exported"
    (tmp_path / "hf" / "config.json").write_text(json.dumps({"model_type": "toy", "marker": "read"}))
    save_tensors(tmp_path / "hf" / "model.safetensors", {"w": torch.ones(2)})
    loaded = from_pretrained(tmp_path / "hf")
    assert loaded.format == "huggingface" and loaded.model is model and loaded.tokenizer == "read"
