"""Configs and presets: names, builds, checked overrides, validation messages, JSON round trip."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest
import torch

import attentive
from attentive.config import (
    FAMILIES,
    PRESETS,
    config_from_dict,
    get_preset,
    load_config,
    register_model,
    register_preset,
)
from attentive.models import DecoderLM, DecoderLMConfig, EncoderDecoder, EncoderDecoderConfig


def test_presets_listed():
    names = attentive.presets()
    for name in ("transformer-base", "transformer-big", "gpt2-small", "llama-tiny", "smollm2-135m"):
        assert name in names
    assert names == sorted(names)


def test_build_with_overrides():
    model = attentive.build("transformer-tiny", dropout=0.3, num_encoder_layers=1)
    assert isinstance(model, EncoderDecoder)
    assert model.config.dropout == 0.3 and len(model.encoder.layers) == 1
    assert model.encoder.layers[0].self_attn_residual.dropout.p == 0.3
    lm = attentive.build("llama-tiny")
    assert isinstance(lm, DecoderLM) and lm.config.num_kv_heads == 2
    assert lm.stack.layers[0].self_attn.k_proj.out_features == 2 * 16
    # build from a config object too
    assert isinstance(attentive.build(DecoderLMConfig(vocab_size=20, num_layers=1, d_model=16, num_heads=2)), DecoderLM)


def test_preset_configs_are_copies():
    config = attentive.preset_config("transformer-tiny")
    config.d_model = 96
    assert attentive.preset_config("transformer-tiny").d_model == 64
    model = attentive.build("transformer-tiny")
    assert model.config is not attentive.build("transformer-tiny").config


def test_unknown_preset_lists_names():
    with pytest.raises(ValueError) as err:
        attentive.build("transformer-huge")
    msg = str(err.value)
    assert "'transformer-huge'" in msg and "transformer-base" in msg and "gpt2-small" in msg


def test_override_that_is_not_a_field_is_named():
    with pytest.raises(ValueError, match="'d_modle'") as err:
        attentive.build("transformer-tiny", d_modle=128)
    assert "d_model" in str(err.value)  # the valid fields are listed


def test_d_model_not_divisible_by_heads():
    with pytest.raises(ValueError, match=r"d_model \(100\).*num_heads \(8\)"):
        EncoderDecoderConfig(d_model=100, num_heads=8)
    with pytest.raises(ValueError, match=r"d_model \(102\).*num_heads \(4\)"):
        attentive.build("transformer-tiny", d_model=102)


def test_heads_not_divisible_by_kv_heads():
    with pytest.raises(ValueError, match=r"num_heads \(4\).*num_kv_heads \(3\)"):
        attentive.build("llama-tiny", num_kv_heads=3)
    with pytest.raises(ValueError, match="num_kv_heads"):
        DecoderLMConfig(num_kv_heads=0)


@pytest.mark.parametrize(
    "field,value,pattern",
    [
        ("positional", "cosine", "positional"),
        ("ffn", "tanh", "ffn"),
        ("norm", "batchnorm", "norm"),
        ("dropout", 1.5, "dropout"),
        ("num_layers", 0, "num_layers"),
        ("attn_impl", "flash", "attn_impl"),
        ("vocab_size", -1, "vocab_size"),
    ],
)
def test_invalid_fields_named(field, value, pattern):
    with pytest.raises(ValueError, match=pattern):
        DecoderLMConfig(**{field: value})


def test_shared_vocab_tying_needs_equal_vocabularies():
    with pytest.raises(ValueError, match="src_vocab_size=10.*tgt_vocab_size=12"):
        EncoderDecoderConfig(src_vocab_size=10, tgt_vocab_size=12)
    EncoderDecoderConfig(src_vocab_size=10, tgt_vocab_size=12, tie_embeddings="output")
    with pytest.raises(ValueError, match="'some'"):
        EncoderDecoderConfig(tie_embeddings="some")


@pytest.mark.parametrize("name", ["transformer-base", "transformer-big", "gpt2-small", "llama-tiny", "smollm2-135m"])
def test_config_dict_round_trip(name, tmp_path):
    config = attentive.preset_config(name)
    data = json.loads(json.dumps(config.to_dict()))  # through real JSON
    assert data["model_type"] == config.model_type
    again = config_from_dict(data)
    assert type(again) is type(config) and again == config
    assert type(config).from_dict(data) == config
    (tmp_path / "config.json").write_text(json.dumps(data))
    assert load_config(tmp_path) == config


def test_from_dict_rejects_unknown_fields_and_types():
    data = attentive.preset_config("llama-tiny").to_dict()
    with pytest.raises(ValueError, match="'extra'"):
        DecoderLMConfig.from_dict({**data, "extra": 1})
    with pytest.raises(ValueError, match="'mystery'"):
        config_from_dict({**data, "model_type": "mystery"})


def test_load_config_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_config(tmp_path)
    (tmp_path / "config.json").write_text("{oops")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_config(tmp_path)


def test_attn_impl_reaches_every_attention_module():
    model = attentive.build("transformer-tiny", attn_impl="reference")
    impls = {m.impl for m in model.modules() if hasattr(m, "q_proj")}
    assert impls == {"reference"}
    with torch.no_grad():
        fused = attentive.build("transformer-tiny", attn_impl="fused", dropout=0.0, attention_dropout=0.0).eval()
        ref = attentive.build("transformer-tiny", attn_impl="reference", dropout=0.0, attention_dropout=0.0).eval()
        ref.load_state_dict(fused.state_dict())
        src, tgt = torch.randint(1, 1000, (2, 6)), torch.randint(1, 1000, (2, 5))
        assert (fused(src, tgt) - ref(src, tgt)).abs().max() <= 1e-4


def _preset_calls() -> dict[str, str]:
    """preset name -> module, for every ``register_preset("name", ...)`` call in the package."""
    root = Path(attentive.__file__).parent
    found = {}
    for path in sorted(root.rglob("*.py")):
        module = ".".join(["attentive", *path.relative_to(root).with_suffix("").parts]).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "register_preset"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                assert node.args[0].value not in found, f"preset {node.args[0].value!r} is registered twice"
                found[node.args[0].value] = module
    return found


def test_the_tables_name_every_family_and_preset_where_it_is_defined():
    """FAMILIES and PRESETS are read without importing the models: they must agree with the
    @register_model classes and register_preset calls of the modules they name."""
    import attentive.models  # noqa: F401  (every family module)

    registered = {}
    for module in [m for name, m in sys.modules.items() if name.startswith("attentive.models.")]:
        for obj in vars(module).values():
            if isinstance(obj, type) and "config_class" in vars(obj) and obj.__module__ == module.__name__:
                registered[obj.config_class.model_type] = f"{obj.__module__}:{obj.__qualname__}"
    assert registered == FAMILIES
    for model_type in FAMILIES:
        assert config_from_dict({"model_type": model_type}).model_type == model_type
    assert _preset_calls() == PRESETS
    assert attentive.presets() == sorted(PRESETS)
    for name in PRESETS:
        assert get_preset(name).config.model_type in FAMILIES


def test_registering_outside_the_tables_is_refused():
    with pytest.raises(ValueError, match="'not-a-preset' is not in PRESETS"):
        register_preset("not-a-preset", DecoderLMConfig(), "unlisted")
    assert "not-a-preset" not in attentive.presets()

    class Impostor(torch.nn.Module):
        pass

    with pytest.raises(ValueError, match=r"'decoder-lm' to 'attentive.models.decoder_lm:DecoderLM', not to .*Impostor"):
        register_model(DecoderLMConfig)(Impostor)
    assert not hasattr(Impostor, "config_class")
