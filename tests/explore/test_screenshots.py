"""The README's pictures of the explorer, taken from the real page with real models (slow: minutes).

    python -m pytest -m slow tests/explore/test_screenshots.py          # to test-artifacts/explore/real
    ATTENTIVE_UPDATE_DOCS=1 python -m pytest -m slow tests/explore/test_screenshots.py   # and docs/explore

Models: the shipped SmolLM2-135M (language model), Whisper tiny.en and all-MiniLM-L6-v2 (skipped
when their packages are absent), the translation run at ``runs/multi30k-de-en`` (or
``$ATTENTIVE_TRANSLATION_RUN``; ``bash scripts/run.sh`` trains it), and a Vision Transformer
trained here for a minute (the vit-mnist recipe with ``max_minutes=1``) on the bundled MNIST.
Every page is checked as in ``test_browser.py``: it renders, fetches only from its server, and
logs no console error.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from pretrained_paths import need_espeak, need_minilm, need_smollm2, need_whisper_ct2
from explore_support import ARTIFACTS, IDEAS, ROOT, Page

pytestmark = pytest.mark.slow
OUT = ARTIFACTS / "real"
DOCS = ROOT / "docs" / "explore"


def _serve(subject):
    import uvicorn

    from attentive.explore import create_app

    server = uvicorn.Server(
        uvicorn.Config(create_app(subject), host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return server, f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


class Shots:
    def __init__(self, browser, subject):
        self.server, self.base = _serve(subject)
        self.page = Page(browser)
        self.page.open(f"{self.base}/")

    def shot(self, name: str, selector: str | None = None) -> None:
        OUT.mkdir(parents=True, exist_ok=True)
        path = OUT / f"{name}.png"
        if selector:
            self.page.page.locator(selector).screenshot(path=str(path))
        else:
            self.page.page.screenshot(path=str(path), full_page=False)
        if os.environ.get("ATTENTIVE_UPDATE_DOCS"):
            DOCS.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, DOCS / path.name)

    def close(self) -> None:
        self.page.check_clean(self.base)
        self.server.should_exit = True


def test_language_model_pictures(browser):
    from attentive.explore import load_subject

    need_smollm2()
    shots = Shots(browser, load_subject("smollm2"))
    page = shots.page
    page.rendered("head")
    page.run_text("The cat sat on the mat because it was tired. It slept all day.")
    page.page.select_option("#head-layer", "4")
    page.page.select_option("#head-head", "all")
    canvas = page.page.locator("#head-canvas")
    point = page.page.evaluate("AX.views.head.tokenPoint('q', 9)")
    box = canvas.bounding_box()
    page.page.mouse.move(box["x"] + point["x"], box["y"] + point["y"])
    page.wait("#tooltip:not([hidden]) li")
    shots.shot("head-view", ".view[data-view='head']")
    page.tab("model")
    page.rendered("model")
    shots.shot("model-view")
    page.tab("generate")
    page.page.fill("#gen-temperature", "0.7")
    page.page.click("#gen-start")
    page.wait("#gen-tokens[data-count]")
    for step in range(1, 7):
        page.page.click("#gen-step")
        page.rendered("generate", step)
    shots.shot("generate", ".view[data-view='generate']")
    page.tab("lens")
    page.rendered("lens")
    page.page.click("#lens-tokens .chip[data-index='5']")
    page.rendered("lens", 2)
    shots.shot("logit-lens", ".view[data-view='lens']")
    page.tab("ideas")
    page.rendered("idea-masks")
    shots.shot("idea-masks", "#idea-masks")  # a causal model: padding and causal masks
    shots.shot("idea-residual", "#idea-residual")
    shots.close()


def test_translation_pictures(browser):
    from attentive.explore import load_subject

    run = Path(os.environ.get("ATTENTIVE_TRANSLATION_RUN", ROOT / "runs" / "multi30k-de-en"))
    if not (run / "model.safetensors").is_file():
        pytest.skip(f"no translation run at {run} (bash scripts/run.sh trains it)")
    shots = Shots(browser, load_subject(str(run)))
    page = shots.page
    page.rendered("head")
    page.run_text("Zwei junge Männer spielen Fußball auf einer Wiese.")
    page.tab("cross")
    page.rendered("cross")
    shots.shot("cross-attention-translation", ".view[data-view='cross']")
    page.tab("beams")
    page.rendered("beams")
    shots.shot("beams", ".view[data-view='beams']")
    page.tab("ideas")
    for name in IDEAS:
        page.rendered(f"idea-{name}")
    for name in IDEAS:
        if name not in ("residual", "masks"):  # those two come from the language model
            shots.shot(f"idea-{name.replace('_', '-')}", f"#idea-{name}")
    shots.close()


def test_speech_pictures(browser, tmp_path):
    from attentive.explore import load_subject

    need_whisper_ct2()
    espeak = need_espeak()
    clip = tmp_path / "clip.wav"
    subprocess.run([espeak, "-s", "150", "-w", str(clip), "The quick brown fox jumps over the lazy dog."], check=True)
    shots = Shots(browser, load_subject("whisper"))
    page = shots.page
    page.page.set_input_files("#file", str(clip))
    page.wait("body[data-analysis]")
    page.tab("cross")
    page.rendered("cross")
    shots.shot("cross-attention-whisper", ".view[data-view='cross']")
    shots.close()


def test_encoder_pictures(browser):
    from attentive.explore import load_subject

    need_minilm()
    shots = Shots(browser, load_subject("minilm"))
    page = shots.page
    page.rendered("head")
    page.tab("model")
    page.rendered("model")
    shots.shot("model-view-minilm")
    shots.close()


def test_vision_pictures(browser, tmp_path):
    from PIL import Image

    from attentive.cli.main import main
    from attentive.data.images import load_mnist
    from attentive.explore import load_subject

    run = tmp_path / "vit"
    assert (
        main(
            [
                "train",
                "--recipe",
                "vit-mnist",
                "--out",
                str(run),
                "max_minutes=1",
                "progress=False",
                "eval_every=0",
                "checkpoint_every=0",
            ]
        )
        == 0
    )
    images, labels = load_mnist("test")
    digit = tmp_path / "digit.png"
    buf = io.BytesIO()
    Image.fromarray(images[0].numpy()).resize((112, 112)).save(buf, format="PNG")
    digit.write_bytes(buf.getvalue())
    shots = Shots(browser, load_subject(str(run)))
    page = shots.page
    page.page.set_input_files("#file", str(digit))
    page.wait("body[data-analysis]")
    page.tab("vision")
    page.rendered("vision")
    assert page.page.get_attribute("#vision-side", "data-prediction") == str(int(labels[0]))
    shots.shot("vision", ".view[data-view='vision']")
    shots.close()
