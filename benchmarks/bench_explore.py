"""The explorer's time to first render in headless Chromium, for inputs of 64, 256 and 1,024 tokens.

A server (``attentive.explore.create_app``) runs the model on this machine; Debian's Chromium
(driven by Playwright, the test flags) opens the page, then for each length the text is entered and
Run clicked, and the clock stops when the head view has drawn and the browser has painted the next
frame. Each length runs twice:

* ``cold``: the model runs on the text (``/api/analyze``: the forward pass under the attention tap,
  top links and thumbnails of every layer x head), then the page fetches the head view's first
  window and draws it;
* ``warm``: the same text again (the analysis is cached), so only the transfer and the drawing.

The model view (every layer x head) is timed when its tab is opened after the cold run. The table
splits the cold time into the server's part (``/api/analyze``, from the browser's resource timing)
and the rest, and gives the bytes the page received. The peer, measured in the same run just
before each cold render: the model's own forward pass over the same tokens (``model.decode``, its
fused attention, no weights kept), so the ratio is what showing the attention costs on top of
running the model.

    python benchmarks/bench_explore.py --model smollm2            # the shipped SmolLM2-135M (30 x 9 heads)
    python benchmarks/bench_explore.py --model runs/shakespeare-char --lengths 64 256
"""

from __future__ import annotations

import argparse
import os
import shutil
import threading
import time

import torch

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

MEASURE = """async (text) => {
  const frame = () => new Promise((resolve) => requestAnimationFrame(() => resolve()));
  const count = (key) => Number(document.body.dataset[key] || 0);
  const until = async (key, above) => { while (count(key) <= above) await frame(); await frame(); };
  performance.clearResourceTimings();
  const heads = count("renderedHead");
  document.getElementById("text").value = text;
  const t0 = performance.now();
  document.getElementById("run").click();
  await until("renderedHead", heads);
  const total = performance.now() - t0;
  const resources = performance.getEntriesByType("resource");
  const analyze = resources.find((r) => r.name.endsWith("api/analyze"));
  const bytes = resources.filter((r) => r.name.includes("/api/")).reduce((n, r) => n + r.encodedBodySize, 0);
  return { total, analyze: analyze ? analyze.duration : null, bytes,
           tokens: Number(document.getElementById("head-canvas").dataset.tokens) };
}"""

MODEL_VIEW = """async () => {
  const frame = () => new Promise((resolve) => requestAnimationFrame(() => resolve()));
  const before = Number(document.body.dataset.renderedModel || 0);
  const t0 = performance.now();
  document.querySelector("#tabs button[data-view='model']").click();
  while (Number(document.body.dataset.renderedModel || 0) <= before) await frame();
  await frame();
  const ms = performance.now() - t0;
  document.querySelector("#tabs button[data-view='head']").click();
  return { ms, thumbs: document.querySelectorAll("#model-grid canvas.thumb").length };
}"""


def text_of(tokenizer, length: int) -> str:
    """A Shakespeare passage that the tokenizer reads as exactly ``length`` tokens (or just under)."""
    from attentive.data.lm import load_tinyshakespeare

    ids = tokenizer.encode(load_tinyshakespeare()[: 40 * length])[:length]
    text = tokenizer.decode(ids)
    while len(tokenizer.encode(text)) > length:
        ids = ids[:-1]
        text = tokenizer.decode(ids)
    return text


@torch.no_grad()
def forward_seconds(subject, text: str) -> float:
    """The peer: the model's plain forward over the same tokens (no weights kept)."""
    ids = torch.tensor([subject.tokenizer.encode(text)])
    with subject.lock:
        start = time.perf_counter()
        subject.model.decode(ids)
        return time.perf_counter() - start


def serve(app):
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return server, server.servers[0].sockets[0].getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", help="what attentive explore --model takes (default smollm2)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the server (default 2)")
    parser.add_argument("--chromium", default=os.environ.get("ATTENTIVE_CHROMIUM") or shutil.which("chromium"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from playwright.sync_api import sync_playwright

    from attentive.explore import create_app, load_subject

    subject = load_subject(args.model)
    server, port = serve(create_app(subject))
    c = subject.config
    print(
        f"{subject.name}: {subject.family}, {c.num_layers if hasattr(c, 'num_layers') else '?'} layers x "
        f"{c.num_heads} heads; torch threads {args.threads}; Chromium {args.chromium}"
    )
    rows = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector("body[data-ready='1']", state="attached", timeout=120_000)
        for length in args.lengths:
            text = text_of(subject.tokenizer, min(length, subject.max_tokens))
            plain = forward_seconds(subject, text)
            cold = page.evaluate(MEASURE, text)
            model_view = page.evaluate(MODEL_VIEW)
            warm = page.evaluate(MEASURE, text)  # the analysis is cached now: only the page's part
            rows.append((cold["tokens"], plain, cold, warm, model_view))
            print(f"  {cold['tokens']} tokens done", flush=True)
        browser.close()
    server.should_exit = True
    print()
    print(
        "| tokens | model forward alone (s) | first render, cold (s) | cold / forward | of which /api/analyze (s) "
        "| first render, warm (s) | model view (s) | layer x head maps | bytes to the page, cold |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for tokens, plain, cold, warm, model_view in rows:
        print(
            f"| {tokens:,} | {plain:.2f} | {cold['total'] / 1000:.2f} | {cold['total'] / 1000 / plain:.2f}x "
            f"| {cold['analyze'] / 1000:.2f} | {warm['total'] / 1000:.3f} | {model_view['ms'] / 1000:.3f} "
            f"| {model_view['thumbs']} | {cold['bytes'] / 1e6:.2f} MB |"
        )


if __name__ == "__main__":
    main()
