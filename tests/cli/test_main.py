"""The ``attentive`` entry point: every command registered, --debug everywhere, bugs keep tracebacks."""

from __future__ import annotations

import pkgutil

import pytest

import attentive.cli as cli_package
from attentive.cli import main as cli


def test_every_command_module_is_registered():
    """Commands used to be found with find_spec, which skipped a missing module silently."""
    modules = {m.name for m in pkgutil.iter_modules(cli_package.__path__)} - {"main", "common", "__main__"}
    assert modules == {m.__name__.rsplit(".", 1)[1] for m in cli.COMMANDS}


def test_every_command_takes_debug():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, command in sub.choices.items():
        assert any("--debug" in a.option_strings for a in command._actions), name


def test_a_bad_value_is_one_line_and_exit_code_2(capsys):
    assert cli.main(["train", "--recipe", "shakespeare-char", "lr=abc"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "attentive train: error: lr=abc: expected a float (OptimConfig.lr)"


def test_a_programming_error_keeps_its_traceback(monkeypatch):
    """TypeError used to be caught and printed as a one-line 'error', hiding bugs."""
    from attentive.cli import presets

    def broken(args):
        raise TypeError("unsupported operand")

    monkeypatch.setattr(presets, "run", broken)
    with pytest.raises(TypeError, match="unsupported operand"):
        cli.main(["presets"])


def test_a_device_this_machine_lacks_is_a_one_line_error(capsys):
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    code = cli.main(
        [
            "train",
            "--recipe",
            "shakespeare-char",
            "--device",
            f"cuda:{count}",
            "--max-steps",
            "1",
            "num_layers=1",
            "d_model=32",
            "num_heads=2",
            "d_ff=32",
            "--out",
            "/nonexistent/never-written",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"cuda:{count}" in err


def test_preset_still_runs_a_recipe_with_a_deprecation_message(tmp_path, capsys):
    code = cli.main(
        [
            "train",
            "--preset",
            "shakespeare-char",
            "--out",
            str(tmp_path),
            "--max-steps",
            "1",
            "num_layers=1",
            "d_model=32",
            "num_heads=2",
            "d_ff=32",
            "block_size=16",
            "batch_size=2",
            "eval_every=0",
            "checkpoint_every=0",
            "progress=false",
            "max_minutes=none",
            "eval_tokens=64",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    assert "--preset is deprecated" in capsys.readouterr().err and (tmp_path / "model.safetensors").exists()


def test_recipes_and_presets_each_list_one_kind(capsys):
    assert cli.main(["presets"]) == 0
    presets = capsys.readouterr().out
    assert cli.main(["recipes"]) == 0
    recipes = capsys.readouterr().out
    assert "transformer-base" in presets and "multi30k-de-en" not in presets
    assert "multi30k-de-en" in recipes and "transformer-base" not in recipes
    assert cli.main(["recipes", "shakespeare-char"]) == 0
    shown = capsys.readouterr().out
    assert "lr = 0.003" in shown and "block_size = 256" in shown
