"""Translation by a chat model: one engine batch, outputs in input order, each as that sentence
alone would get; the recipe that fine-tunes for it; ``attentive evaluate --model``."""

from __future__ import annotations

import json

from attentive.cli.main import main
from attentive.decode import generate
from attentive.evaluate.chat_translation import chat_translate
from attentive.interop.pretrained import Pretrained
from attentive.recipes import get_recipe
from attentive.text.chat import chat_prompt
from attentive.train.trainer import Trainer
from chat_helpers import chat_model, chat_tokenizer

SOURCES = ["Ein Hund rennt.", "Zwei Männer spielen Fußball auf dem Rasen.", "", "Der Park."]


def test_batched_replies_equal_each_sentence_alone_in_input_order():
    model, tok = chat_model(), chat_tokenizer()
    batched = chat_translate(model, tok, SOURCES, max_batch=2)
    for source, reply in zip(SOURCES, batched):
        prompt = chat_prompt(tok, f"Translate to English: {source}")
        limit = 2 * len(tok.encode(source)) + 16
        alone = generate(model, tok, [prompt], max_new_tokens=limit, temperature=0.0).texts[0]
        assert reply == " ".join(alone.split()) and "\n" not in reply


def test_the_chat_translation_recipe_trains_and_scores_bleu(tmp_path):
    base = tmp_path / "base"
    Pretrained(chat_model(), chat_tokenizer(), "", "attentive").save(base)
    recipe = get_recipe("smollm2-multi30k-lora").build(
        {
            "init": str(base),
            "train_limit": 16,
            "valid_limit": 4,
            "test_limit": 3,
            "seq_len": 512,
            "max_steps": 1,
            "max_minutes": None,
            "eval_every": 0,
            "checkpoint_every": 1,
            "progress": False,
            "precision": "fp32",
            "device": "cpu",
            "out_dir": str(tmp_path / "run"),
        }
    )
    results = Trainer(recipe.task, recipe.model, recipe.train_config).fit()
    assert results["test_2016_flickr"]["sentences"] == 3 and results["test_2016_flickr"]["search"] == "greedy"
    assert 0.0 <= results["test_2016_flickr"]["bleu"] <= 100.0
    saved = json.loads((tmp_path / "run" / "chat_translation.json").read_text())
    assert saved["prompt"] == "Translate to English: {source}" and saved["src_lang"] == "de"
    # the run folder scores from the command line with the prompt it saved
    assert (
        main(["evaluate", "--model", str(tmp_path / "run"), "--split", "test_2016_flickr", "--limit", "3", "--json"])
        == 0
    )
