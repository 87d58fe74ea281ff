"""Fine-tuning as recipes: ``init=`` pretrained weights (with their tokenizer) and LoRA settings on
the one trainer, and the one-line errors for settings that make no sense."""

from __future__ import annotations

import json

import pytest
import torch

import attentive
from attentive.interop.pretrained import Pretrained
from attentive.lora import lora_config_of
from attentive.recipes import get_recipe
from attentive.train.trainer import Trainer
from chat_helpers import chat_model, chat_tokenizer

QUICK = {
    "max_steps": 2,
    "log_every": 1,
    "eval_every": 0,
    "checkpoint_every": 2,
    "device": "cpu",
    "progress": False,
    "precision": "fp32",
    "max_minutes": None,
}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    folder = tmp_path_factory.mktemp("base") / "chat"
    Pretrained(chat_model(), chat_tokenizer(), "", "attentive").save(folder)
    return folder


@pytest.fixture()
def data(tmp_path):
    path = tmp_path / "train.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": f"Zahl {i}?"}, {"role": "assistant", "content": f"Number {i}."}]}
        for i in range(12)
    ] + [{"prompt": "Hund", "completion": "dog"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_instruct_recipe_trains_lora_from_init_and_leaves_an_adapter(tmp_path, base, data):
    recipe = get_recipe("instruct").build(
        {
            **QUICK,
            "init": str(base),
            "train": str(data),
            "valid_size": 3,
            "lora_rank": 4,
            "lora_targets": "q_proj,down",
            "out_dir": str(tmp_path / "run"),
        }
    )
    assert lora_config_of(recipe.model).rank == 4 and lora_config_of(recipe.model).targets == ("q_proj", "down")
    assert recipe.task.tokenizer.chat_template == chat_tokenizer().chat_template  # the tokenizer came with init
    results = Trainer(recipe.task, recipe.model, recipe.train_config).fit()
    assert results["val_loss"] > 0
    adapter = json.loads((tmp_path / "run" / "adapter.json").read_text())
    assert adapter["base"] == str(base.resolve()) and adapter["rank"] == 4
    trained = attentive.from_pretrained(tmp_path / "run", optimize=False)  # merged into the base it names
    assert trained.model.config == attentive.from_pretrained(base, optimize=False).model.config


def test_full_fine_tuning_trains_every_weight(tmp_path, base, data):
    recipe = get_recipe("instruct").build(
        {**QUICK, "init": str(base), "train": str(data), "finetune": "full", "out_dir": str(tmp_path / "run")}
    )
    assert lora_config_of(recipe.model) is None and all(p.requires_grad for p in recipe.model.parameters())
    before = {k: v.clone() for k, v in recipe.model.state_dict().items()}
    Trainer(recipe.task, recipe.model, recipe.train_config).fit()
    after = attentive.from_pretrained(tmp_path / "run", optimize=False).model.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in ("embed.weight", "stack.layers.0.ffn.up.weight"))


def test_any_recipe_starts_from_pretrained_weights_with_their_tokenizer(tmp_path, base):
    recipe = get_recipe("shakespeare-char").build(
        {
            **QUICK,
            "init": str(base),
            "block_size": 16,
            "batch_size": 2,
            "eval_tokens": 64,
            "out_dir": str(tmp_path / "lm"),
        }
    )
    assert recipe.task.tokenizer.vocab_size == 300 and recipe.model.config.vocab_size == 300
    x, _ = recipe.task.train_batches(0)[0]
    assert int(x.max()) < 300  # tokenised with the pretrained tokenizer, not a fresh char vocabulary


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"lora_rank": 0}, "LoRA rank must be a positive integer, got 0"),
        ({"finetune": "qlora"}, "finetune must be one of ('full', 'lora'), got 'qlora'"),
        (
            {"lora_targets": "q_proj,wq"},
            "LoRA target module 'wq' matches no linear layer of DecoderLM; its linear layers are: self_attn.q_proj",
        ),
        ({"dropout": 0.1}, "takes the model from its weights; model settings (dropout) do not apply"),
    ],
)
def test_bad_fine_tuning_settings_are_one_line_errors(tmp_path, base, data, overrides, message):
    with pytest.raises(ValueError) as err:
        get_recipe("instruct").build(
            {**QUICK, "init": str(base), "train": str(data), "out_dir": str(tmp_path / "r"), **overrides}
        )
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "r").exists()


def test_init_of_another_family_is_refused(tmp_path, data):
    vit = tmp_path / "vit"
    attentive.save(attentive.build("vit-tiny"), vit)
    with pytest.raises(ValueError, match="holds a vit model; this recipe trains decoder-lm models"):
        get_recipe("shakespeare-char").build({**QUICK, "init": str(vit), "out_dir": str(tmp_path / "r")})


def test_a_bad_data_line_stops_the_recipe_before_anything_is_written(tmp_path, base):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"prompt": "a", "completion": "b"}\n{"messages": [{"role": "user", "content": "Hi"}]}\n', encoding="utf-8"
    )
    with pytest.raises(ValueError) as err:
        get_recipe("instruct").build({**QUICK, "init": str(base), "train": str(bad), "out_dir": str(tmp_path / "r")})
    assert str(err.value).startswith(f"{bad}:2: ") and "no assistant turn" in str(err.value)
    assert "\n" not in str(err.value) and not (tmp_path / "r").exists()


def test_a_vision_recipe_starts_from_a_vit_checkpoint_and_trains_lora(tmp_path):
    """init= and LoRA are not for language models alone: the vit-mnist recipe from a ViT folder."""
    small = {"patch_size": 7, "num_layers": 1, "d_model": 32, "num_heads": 2, "d_ff": 64}
    data = {"train_limit": 64, "batch_size": 16, "val_size": 16, "test_limit": 16}
    fresh = get_recipe("vit-mnist").build({**QUICK, **small, **data, "out_dir": str(tmp_path / "fresh")})
    with torch.no_grad():  # a trained classifier (a fresh one starts at zero, which passes no gradient back)
        fresh.model.head.weight.normal_(std=0.1)
    attentive.save(fresh.model, tmp_path / "vit")
    recipe = get_recipe("vit-mnist").build(
        {
            **QUICK,
            **data,
            "init": str(tmp_path / "vit"),
            "finetune": "lora",
            "lora_rank": 2,
            "lora_targets": "q_proj,v_proj",
            "out_dir": str(tmp_path / "run"),
        }
    )
    trainable = {n for n, p in recipe.model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n and ("q_proj" in n or "v_proj" in n) for n in trainable)
    Trainer(recipe.task, recipe.model, recipe.train_config).fit()
    merged = attentive.from_pretrained(tmp_path / "run", optimize=False).model.state_dict()
    base = fresh.model.state_dict()
    assert merged.keys() == base.keys()
    changed = {k for k in base if not torch.equal(base[k], merged[k])}
    assert changed and all(k.endswith(("q_proj.weight", "v_proj.weight")) for k in changed)


TINY_TRANSLATOR = {
    "train_limit": 200,
    "valid_limit": 16,
    "test": "",
    "vocab_size": 300,
    "d_model": 32,
    "num_heads": 2,
    "d_ff": 64,
    "num_encoder_layers": 1,
    "num_decoder_layers": 1,
    "max_tokens": 400,
    "val_bleu_sentences": 0,
    "average_last": 0,
}


def test_a_translation_recipe_starts_from_a_translation_run_with_its_tokenizer(tmp_path):
    first = get_recipe("multi30k-de-en").build({**QUICK, **TINY_TRANSLATOR, "out_dir": str(tmp_path / "first")})
    Trainer(first.task, first.model, first.train_config).fit()
    # another vocabulary size would build another tokenizer: the checkpoint's must win
    again = get_recipe("multi30k-de-en").build(
        {
            **QUICK,
            "train_limit": 200,
            "valid_limit": 16,
            "test": "",
            "vocab_size": 500,
            "max_tokens": 400,
            "val_bleu_sentences": 0,
            "average_last": 0,
            "init": str(tmp_path / "first"),
            "finetune": "lora",
            "lora_rank": 2,
            "out_dir": str(tmp_path / "again"),
        }
    )
    assert again.task.tokenizer.to_json() == first.task.tokenizer.to_json()
    assert again.model.config == first.model.config and lora_config_of(again.model).rank == 2
    Trainer(again.task, again.model, again.train_config).fit()


def test_a_translation_recipe_refuses_a_checkpoint_whose_tokenizer_it_cannot_read(tmp_path):
    model = attentive.build(
        "transformer-base",
        d_model=32,
        num_heads=2,
        d_ff=64,
        num_encoder_layers=1,
        num_decoder_layers=1,
        src_vocab_size=300,
        tgt_vocab_size=300,
    )
    Pretrained(model, chat_tokenizer(), "", "huggingface").save(tmp_path / "mt")
    with pytest.raises(ValueError, match="take an attentive translation checkpoint with its tokenizer.json"):
        get_recipe("multi30k-de-en").build({**QUICK, "init": str(tmp_path / "mt"), "out_dir": str(tmp_path / "r")})
    assert not (tmp_path / "r").exists()
