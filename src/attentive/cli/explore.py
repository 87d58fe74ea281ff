"""``attentive explore``: the attention explorer in the browser, served on this machine.

    attentive explore --model runs/multi30k-de-en              # http://127.0.0.1:8001
    attentive explore --model smollm2 --port 8002              # the shipped SmolLM2 GGUF
    attentive explore --model runs/shakespeare-char --export page.html "ROMEO: But soft"

``--model`` takes any model spec: a run folder or checkpoint (language model, translation, ViT), a
GGUF file, a Hugging Face or CTranslate2 folder, a hub id, or a bundled model's short name
(``smollm2``, ``minilm``, ``whisper-tiny.en``; ``attentive models`` lists them). ``--export``
writes one HTML file for the given input (text, or an image / WAV file for vision and speech
models) instead of serving.
"""

from __future__ import annotations

from pathlib import Path

from ..device import resolve_device
from .common import add_device, add_model


def run(args) -> int:
    from ..explore import create_app, export_html, load_subject

    subject = load_subject(args.model, device=resolve_device(args.device))
    if args.export:
        if args.input is None:
            raise ValueError("--export needs the input: a text, or an image / WAV file for vision and speech models")
        value = args.input
        if subject.input_kind != "text":
            path = Path(args.input)
            if not path.is_file():
                raise ValueError(f"{args.input}: no such file ({subject.name} reads {subject.input_kind} files)")
            value = path.read_bytes()
        out = export_html(subject, value, args.export)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): open it in a browser, no server needed")
        return 0
    if args.input is not None:
        raise ValueError("an input is only for --export; the page takes inputs itself")
    import uvicorn

    app = create_app(subject)
    print(f"attentive explore: {subject.name} ({subject.family}) at http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def register(sub) -> None:
    p = sub.add_parser("explore", help="attention explorer in the browser (or --export one HTML file)")
    add_model(p, "the model to look inside", required=True)
    p.add_argument("input", nargs="?", help="with --export: the text (or the image / WAV file) to show")
    p.add_argument("--export", metavar="PAGE.html", help="write one self-contained HTML file instead of serving")
    p.add_argument("--port", type=int, default=8001, help="port on 127.0.0.1 (default 8001)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    add_device(p)
    p.set_defaults(func=run)
