"""``attentive train --recipe shakespeare-char``, ``generate`` and ``perplexity`` from the command line."""

from __future__ import annotations

import json
import sys

import pytest

from attentive.cli.main import main
from attentive.data.lm import load_tinyshakespeare, split_train_val

TINY = [
    "num_layers=1",
    "d_model=32",
    "num_heads=2",
    "d_ff=64",
    "block_size=32",
    "batch_size=16",
    "eval_tokens=2000",
    "max_minutes=None",
    "progress=False",
    "eval_every=0",
    "lr=0.01",
    "warmup_steps=5",
    "precision=fp32",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("shakespeare")
    assert (
        main(
            ["train", "--recipe", "shakespeare-char", "--out", str(out), "--max-steps", "60", "--device", "cpu", *TINY]
        )
        == 0
    )
    return out


class _Recorder:
    """A stdout that remembers each write, to see text arrive piece by piece."""

    def __init__(self):
        self.writes: list[str] = []

    def write(self, text):
        self.writes.append(text)

    def flush(self):
        pass


def test_generate_streams_the_continuation(run_dir, monkeypatch):
    recorder = _Recorder()
    monkeypatch.setattr(sys, "stdout", recorder)
    assert main(["generate", "--checkpoint", str(run_dir), "ROMEO:", "--max-new-tokens", "30", "--seed", "1"]) == 0
    text = "".join(recorder.writes)
    assert text.startswith("ROMEO:") and text.endswith("\n")
    assert len([w for w in recorder.writes if w]) > 10  # streamed, not printed at the end


def _generate(run_dir, capsys, *args):
    code = main(["generate", "--checkpoint", str(run_dir), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_generate_options_and_reproducibility(run_dir, capsys):
    args = [
        "ROMEO:",
        "--max-new-tokens",
        "40",
        "--temperature",
        "0.9",
        "--top-k",
        "20",
        "--top-p",
        "0.95",
        "--repetition-penalty",
        "1.1",
        "--seed",
        "3",
    ]
    first, second = _generate(run_dir, capsys, *args), _generate(run_dir, capsys, *args)
    assert first[0] == 0 and first[1] == second[1]
    greedy = _generate(run_dir, capsys, "ROMEO:", "--greedy", "--max-new-tokens", "20", "--cache", "static")
    assert greedy[1] == _generate(run_dir, capsys, "ROMEO:", "--temperature", "0", "--max-new-tokens", "20")[1]
    code, out, _ = _generate(run_dir, capsys, "ROMEO:", "--no-echo", "--max-new-tokens", "10", "--seed", "1")
    assert code == 0 and not out.startswith("ROMEO:")


def test_generate_stop_string(run_dir, capsys):
    code, out, _ = _generate(
        run_dir, capsys, "ROMEO:", "--max-new-tokens", "200", "--seed", "2", "--stop", "\n", "--no-echo", "--verbose"
    )
    assert code == 0 and "\n" not in out[:-1]


def test_generate_empty_prompt_starts_from_bos(run_dir, capsys):
    code, out, _ = _generate(run_dir, capsys, "", "--max-new-tokens", "15", "--seed", "0")
    assert code == 0 and len(out) > 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--temperature", "-1"], "temperature"),
        (["--top-p", "1.5"], "top_p"),
        (["--top-p", "0"], "top_p"),
        (["--top-k", "0"], "top_k"),
        (["--max-new-tokens", "-3"], "max_new_tokens"),
    ],
)
def test_generate_rejects_nonsensical_sampling(run_dir, capsys, args, message):
    code, _, err = _generate(run_dir, capsys, "ROMEO:", *args)
    assert code == 2 and message in err and "Traceback" not in err


def test_generate_names_unknown_characters(run_dir, capsys):
    code, _, err = _generate(run_dir, capsys, "ROMEO: ☃ #")
    assert code == 2 and "'☃'" in err and "'#'" in err


def test_generate_long_prompt_is_truncated_with_a_warning(run_dir, capsys):
    code, _, err = _generate(run_dir, capsys, "ROMEO: " * 20, "--max-new-tokens", "5", "--no-echo")
    assert code == 0 and "warning" in err and "longer than the context" in err


def test_generate_needs_a_checkpoint(tmp_path, capsys):
    assert main(["generate", "ROMEO:"]) == 2
    assert "give --model SPEC" in capsys.readouterr().err
    assert main(["generate", "--checkpoint", str(tmp_path / "missing"), "ROMEO:"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_perplexity_command(run_dir, tmp_path, capsys):
    _, val = split_train_val(load_tinyshakespeare())
    path = tmp_path / "val.txt"
    path.write_text(val[:5000], encoding="utf-8")
    assert main(["perplexity", "--checkpoint", str(run_dir), str(path)]) == 0
    assert "perplexity" in capsys.readouterr().out
    assert main(["perplexity", "--checkpoint", str(run_dir), str(path), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["tokens"] == 4999 and 1.0 < record["perplexity"] < 69


def test_perplexity_errors(run_dir, tmp_path, capsys):
    assert main(["perplexity", "--checkpoint", str(run_dir), str(tmp_path / "none.txt")]) == 2
    assert "no text file" in capsys.readouterr().err
    bad = tmp_path / "bad.txt"
    bad.write_text("hello ☃", encoding="utf-8")
    assert main(["perplexity", "--checkpoint", str(run_dir), str(bad)]) == 2
    assert "'☃'" in capsys.readouterr().err


def test_generate_streams_past_the_context_with_a_window_and_sinks(run_dir, capsys):
    """The model's context is 32 characters; --window 16 --sinks 4 generates 300 greedy characters
    through a bounded cache, the same as the library call."""
    import attentive
    from attentive.decode import generate
    from attentive.text import load_tokenizer

    args = ["generate", "--checkpoint", str(run_dir), "ROMEO:", "--seed", "1", "--max-new-tokens", "300", "--no-echo"]
    assert main(args + ["--window", "16", "--sinks", "4"]) == 0
    text = capsys.readouterr().out
    model, tok = attentive.load(run_dir).eval(), load_tokenizer(run_dir)
    want = generate(model, tok, "ROMEO:", max_new_tokens=300, temperature=0.8, seed=1, window=16, sinks=4)
    assert text == want.text + "\n" and len(want.tokens[0]) > 32


@pytest.mark.parametrize(
    "args, message",
    [
        (["--window", "8", "--sinks", "9"], r"sinks \(9\) must not exceed the window \(8\)"),
        (["--window", "8", "--cache", "static"], "use cache='dynamic'"),
        (["--rope-scaling", "rope_type=cubic,factor=2"], "rope_scaling type 'cubic' is not one of"),
        (["--rope-scaling", "rope_type=linear,factor=0.5"], "factor must be >= 1 .*got 0.5"),
        (["--rope-scaling", "{bad json"], "is not valid JSON"),
    ],
)
def test_generate_rejects_bad_context_options(run_dir, capsys, args, message):
    import re

    assert main(["generate", "--checkpoint", str(run_dir), "ROMEO:", "--max-new-tokens", "3", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert re.search(message, err) and "\n" not in err


def test_generate_with_rope_scaling(run_dir, capsys):
    assert (
        main(
            [
                "generate",
                "--checkpoint",
                str(run_dir),
                "ROMEO:",
                "--greedy",
                "--max-new-tokens",
                "20",
                "--rope-scaling",
                '{"rope_type": "yarn", "factor": 2.0}',
                "--context",
                "64",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.startswith("ROMEO:")


def test_perplexity_streams_a_file_through_a_window(run_dir, tmp_path, capsys):
    import attentive
    from attentive.evaluate.perplexity import stream_perplexity
    from attentive.text import load_tokenizer

    _, val = split_train_val(load_tinyshakespeare())
    path = tmp_path / "val.txt"
    path.write_text(val[:600], encoding="utf-8")
    assert (
        main(["perplexity", "--checkpoint", str(run_dir), str(path), "--window", "16", "--sinks", "4", "--json"]) == 0
    )
    record = json.loads(capsys.readouterr().out)
    model, tok = attentive.load(run_dir).eval(), load_tokenizer(run_dir)
    want = stream_perplexity(model, tok.encode(val[:600]), window=16, sinks=4)
    # the command line reads the model prepared for CPU decoding (fp32 panels): float rounding apart
    assert record["stream"] and record["tokens"] == 599 and abs(record["perplexity"] - want.perplexity) < 1e-5
    assert (
        main(
            [
                "perplexity",
                "--checkpoint",
                str(run_dir),
                str(path),
                "--window",
                "16",
                "--sinks",
                "4",
                "--json",
                "--plain",
            ]
        )
        == 0
    )
    plain = json.loads(capsys.readouterr().out)
    assert abs(plain["perplexity"] - want.perplexity) < 1e-9  # --plain: the model as saved, exactly
    assert main(["perplexity", "--checkpoint", str(run_dir), str(path), "--sinks", "4"]) == 2
    assert "add --window" in capsys.readouterr().err
