"""``attentive explore``: one command serves a working page for a run folder, ``--export`` writes one
self-contained HTML file, and bad input is a one-line error."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi", reason="the explorer needs fastapi (pip install 'attentive[explore]')")

from attentive import save  # noqa: E402
from attentive.cli.main import main  # noqa: E402
from attentive.models import DecoderLM  # noqa: E402
from attentive.text.char import CharTokenizer  # noqa: E402

from helpers import tiny_gpt2  # noqa: E402

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder as training leaves it: config.json, model.safetensors, tokenizer.json."""
    out = tmp_path_factory.mktemp("lm")
    tokenizer = CharTokenizer.train("abcdefghijklmnopqrstuvwxyz .,")
    torch.manual_seed(0)
    save(DecoderLM(tiny_gpt2(vocab_size=tokenizer.vocab_size)), out)
    tokenizer.save(out)
    return out


def test_export_writes_one_self_contained_page(run_dir, tmp_path, capsys):
    page = tmp_path / "page.html"
    assert main(["explore", "--model", str(run_dir), "--export", str(page), "the cat sat."]) == 0
    assert "wrote" in capsys.readouterr().out
    html = page.read_text(encoding="utf-8")
    assert "window.EXPLORER_STATIC" in html and 'src="static/' not in html and "connect-src 'none'" in html
    start = html.index("window.EXPLORER_STATIC = ") + len("window.EXPLORER_STATIC = ")
    data = json.loads(html[start : html.index(";</script>", start)].replace("<\\/", "</"))
    assert data["text"] == "the cat sat." and data["analysis"]["tokens"][:3] == ["t", "h", "e"]
    assert any(key.startswith("attention ") for key in data["answers"])


def test_notebook_shows_the_page_in_an_iframe(run_dir):
    from attentive.explore import load_subject, notebook

    shown = notebook(load_subject(str(run_dir)), "the cat.")._repr_html_()
    assert shown.startswith("<iframe srcdoc=") and "window.EXPLORER_STATIC" in shown


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "no/such/run"], "no/such/run does not exist: it is not a file or folder"),
        (["--model", "{run}", "--export", "{tmp}/page.txt", "the cat"], "the file name should end in .html"),
        (["--model", "{run}", "--export", "{tmp}/page.html"], "--export needs the input"),
        (["--model", "{run}", "--export", "{tmp}/page.html", ""], "enter some text first"),
        (["--model", "{run}", "the cat"], "an input is only for --export"),
    ],
)
def test_bad_arguments_are_one_line(run_dir, tmp_path, capsys, args, message):
    args = [a.format(run=run_dir, tmp=tmp_path) for a in args]
    assert main(["explore", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_command_serves_the_page_and_its_api(run_dir):
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    command = [sys.executable, "-m", "attentive", "explore", "--model", str(run_dir), "--port", str(port)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    page = response.read().decode()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the server did not start: {proc.stdout.read() if proc.stdout else ''}")
                time.sleep(0.2)
        assert '<canvas id="head-canvas">' in page
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/static/js/headview.js", timeout=5) as response:
            assert b"Head view" in response.read()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/analyze",
            data=b'{"text": "the cat."}',
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            summary = json.loads(response.read())
        assert summary["tokens"] == list("the▁cat.") and summary["stacks"][0]["layers"] == 2
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert f"at http://127.0.0.1:{port}/" in proc.stdout.read()
