"""End to end through the command line: train a tiny translator on a small subset, then translate,
evaluate, average and plot attention with it; bad input gives one-line errors."""

from __future__ import annotations

import io
import json

import pytest

from attentive.cli.main import main

TRAIN = [
    "--max-steps",
    "40",
    "--device",
    "cpu",
    "train_limit=400",
    "valid_limit=30",
    "test_limit=6",
    "vocab_size=500",
    "d_model=32",
    "num_heads=4",
    "d_ff=64",
    "num_encoder_layers=1",
    "num_decoder_layers=1",
    "max_len=48",
    "max_tokens=800",
    "lr=3e-3",
    "warmup_steps=10",
    "max_minutes=None",
    "eval_every=20",
    "checkpoint_every=10",
    "log_every=5",
    "val_bleu_sentences=4",
    "eval_beam=2",
    "max_len_b=6",
    "average_last=3",
    "progress=false",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("translation") / "run"
    assert main(["train", "--out", str(out), *TRAIN]) == 0
    return out


def test_train_writes_a_complete_run_folder(run_dir):
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "translation.json",
        "metrics.jsonl",
        "loss.png",
        "results.json",
    ):
        assert (run_dir / name).exists(), name
    results = json.loads((run_dir / "results.json").read_text())
    assert {"test_2016_flickr", "test_2017_flickr", "bleu_signature", "averaged"} <= set(results)
    assert results["test_2016_flickr"]["sentences"] == 6
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_loss = [r["loss"] for r in records if r["split"] == "train"]
    assert train_loss[-1] < train_loss[0]
    assert any(r["split"] == "val" and "bleu" in r for r in records)
    assert all("tok_per_s" in r and "lr" in r for r in records if r["split"] == "train")


def test_translate_arguments_file_and_stdin(run_dir, tmp_path, capsys, monkeypatch):
    assert main(["translate", "--checkpoint", str(run_dir), "--beam", "2", "Ein Hund rennt durch den Park.", ""]) == 0
    lines = capsys.readouterr().out.split("\n")
    assert len(lines) == 3 and lines[0] and lines[1] == "" and lines[2] == ""  # empty in -> empty out
    src = tmp_path / "in.de"
    src.write_text("Ein Hund.\n\nZwei Frauen sitzen auf einer Bank.\n", encoding="utf-8")
    assert main(["translate", "--checkpoint", str(run_dir), "--file", str(src), "--beam", "1"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    monkeypatch.setattr("sys.stdin", io.StringIO("Ein Mann.\nEine Frau.\n"))
    assert main(["translate", "--checkpoint", str(run_dir)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_long_sentence_is_truncated_with_a_warning(run_dir, capsys):
    long = " ".join(["Hund"] * 80)
    assert main(["translate", "--checkpoint", str(run_dir), "--beam", "1", long]) == 0
    captured = capsys.readouterr()
    assert "truncated" in captured.err and len(captured.out.splitlines()) == 1


def test_evaluate_split_and_user_files(run_dir, tmp_path, capsys):
    assert (
        main(["evaluate", "--checkpoint", str(run_dir), "--split", "test_2016_flickr", "--limit", "5", "--beam", "1"])
        == 0
    )
    out = capsys.readouterr().out
    assert "BLEU" in out and "chrF" in out and "nrefs:1|case:mixed|eff:no|tok:13a" in out
    (tmp_path / "s.de").write_text("Ein Hund.\nZwei Männer.\n", encoding="utf-8")
    (tmp_path / "r.en").write_text("A dog.\nTwo men.\n", encoding="utf-8")
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(run_dir),
                "--src",
                str(tmp_path / "s.de"),
                "--ref",
                str(tmp_path / "r.en"),
                "--json",
                "--output",
                str(tmp_path / "hyp.en"),
            ]
        )
        == 0
    )
    scores = json.loads(capsys.readouterr().out)
    assert scores["sentences"] == 2 and 0 <= scores["bleu"] <= 100
    assert len((tmp_path / "hyp.en").read_text().splitlines()) == 2
    (tmp_path / "r.en").write_text("A dog.\n", encoding="utf-8")
    assert (
        main(
            ["evaluate", "--checkpoint", str(run_dir), "--src", str(tmp_path / "s.de"), "--ref", str(tmp_path / "r.en")]
        )
        == 2
    )
    assert "line counts differ" in capsys.readouterr().err


def test_attention_heatmap(run_dir, tmp_path, capsys):
    png = tmp_path / "att.png"
    assert main(["attention", "--checkpoint", str(run_dir), "Ein Hund rennt.", "--png", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["attention", "--checkpoint", str(run_dir), "Ein Hund.", "--png", str(png), "--average"]) == 0
    assert main(["attention", "--checkpoint", str(run_dir), "Ein Hund.", "--png", str(png), "--layer", "5"]) == 2
    assert "out of range" in capsys.readouterr().err


def test_resume_continues_the_run(run_dir, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    args = [a if a != "40" else "50" for a in TRAIN]
    assert main(["train", "--out", str(copy), "--resume", *args]) == 0
    results = json.loads((copy / "results.json").read_text())
    assert results["step"] == 50


@pytest.mark.parametrize("damage", ["missing", "config", "weights", "tokenizer"])
def test_bad_checkpoints_give_one_line_errors(run_dir, tmp_path, capsys, damage):
    import shutil

    ckpt = tmp_path / "ckpt"
    if damage != "missing":
        shutil.copytree(run_dir, ckpt, ignore=shutil.ignore_patterns("checkpoints"))
        target = {"config": "config.json", "weights": "model.safetensors", "tokenizer": "tokenizer.json"}[damage]
        (ckpt / target).write_text("not what it should be")
    for command in (
        ["translate", "Ein Hund."],
        ["evaluate", "--limit", "2"],
        ["attention", "Ein Hund.", "--png", str(tmp_path / "a.png")],
    ):
        assert main([command[0], "--checkpoint", str(ckpt), *command[1:]]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err and str(ckpt) in err, err
