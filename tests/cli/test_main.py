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
    code = cli.main(["train", "--recipe", "shakespeare-char", "--device", f"cuda:{count}", "--max-steps", "1",
                     "num_layers=1", "d_model=32", "num_heads=2", "d_ff=32", "--out", "/nonexistent/never-written"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"cuda:{count}" in err
