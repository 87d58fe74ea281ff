"""``attentive serve``: the loaded models over HTTP, compatible with OpenAI's API.

    attentive serve --model smollm2 --model minilm --model whisper-tiny.en
    attentive serve --model chat=path/to/model.gguf --model runs/multi30k-de-en --port 8080 --api-key KEY

``--model`` takes any model spec (``attentive.from_pretrained``: a bundled model's short name
such as ``smollm2``, a run folder (language model, translation, ViT), a GGUF file, a Hugging
Face or CTranslate2 folder, a hub id), optionally named ``NAME=SPEC``; a model is served under
the name given (``smollm2``), and a bundled one also answers to its longer names. The server binds 127.0.0.1 unless ``--host`` says otherwise; ``--api-key``
(or ``ATTENTIVE_API_KEY``) then requires ``Authorization: Bearer KEY`` on every route but
``/health``. ``--explore`` also serves the attention explorer on the same application, at
``/explore/`` (one app, two faces: the OpenAI endpoints for programs, the page for people). See
the README's "Serving" section for the endpoints and limits.
"""

from __future__ import annotations

import argparse
import sys

from ..device import resolve_device
from .common import MODEL_HELP, add_device, add_quantize

DTYPES = ("float32", "bfloat16", "float16")


def build_settings(args):
    from ..serve.settings import ServeSettings

    return ServeSettings.from_env(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        max_batch=args.max_batch,
        max_queue=args.max_queue,
        cache="dynamic" if args.plain else args.cache,
        compile=args.compile and not args.plain,
        context=args.context,
        prefill_chunk=args.prefill_chunk,
        timeout=args.timeout if args.timeout and args.timeout > 0 else None,
        max_n=args.max_n,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_inputs=args.max_inputs,
        max_audio_seconds=args.max_audio_seconds,
        cors_origins=tuple(args.cors_origin or ()),
    )


def run(args) -> int:
    import torch

    try:
        from ..serve import ModelRegistry, create_app, load_served_model
    except ImportError as err:
        raise ValueError(f"attentive serve needs {err.name}: pip install 'attentive[serve]'") from None

    settings = build_settings(args)  # bad limits fail before any model loads
    if args.explore and settings.api_key is not None:
        raise ValueError(
            "--explore cannot be combined with an API key: the explorer's page sends none "
            "(the server binds 127.0.0.1 by default)"
        )
    if not args.model:
        raise ValueError("give at least one --model (e.g. --model smollm2, or a run folder)")
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = resolve_device(args.device), getattr(torch, args.dtype)
    registry = ModelRegistry()
    for spec in args.model:
        served = load_served_model(spec, device=device, dtype=dtype, quantize=args.quantize, optimize=not args.plain)
        registry.add(served)
        print(
            f"loaded {served.name} ({served.kind}: {', '.join(served.endpoints)}) from {served.source}",
            file=sys.stderr,
            flush=True,
        )
    if settings.host not in ("127.0.0.1", "localhost", "::1") and settings.api_key is None:
        print(
            f"attentive serve: warning: listening on {settings.host} without --api-key: anyone who can reach "
            f"this port can use the models",
            file=sys.stderr,
        )
    app = create_app(registry, settings)
    if args.explore:
        mount_explorer(app, registry)
        print(f"the attention explorer: http://{settings.host}:{settings.port}/explore/", file=sys.stderr, flush=True)
    import uvicorn

    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        access_log=args.log_level == "debug",
        timeout_graceful_shutdown=5,
    )
    return 0


def mount_explorer(app, registry, prefix: str = "/explore") -> None:
    """The explorer's page and endpoints on the serving app, over copies of the served models.

    The explorer taps a model's attention layers with hooks while it runs, and a tapped model
    must not serve a request in another thread at the same time; so the page gets its own copy
    of each model (the memory of the weights once more), and serving is never slowed or changed.
    """
    import copy

    from ..explore.api import Registry, mount
    from ..explore.load import make_subject

    explored = Registry()
    for served in registry:
        if served.kind == "translation":
            translator = served.translator
            explored.add(make_subject(copy.deepcopy(translator.model), translator.tokenizer, served.name))
        else:
            explored.add(make_subject(copy.deepcopy(served.model), served.tokenizer, served.name))
    mount(app, explored, prefix)


def register(sub) -> None:
    from ..serve.settings import CACHES, ServeSettings

    d = ServeSettings()
    p = sub.add_parser("serve", help="serve models over HTTP with an OpenAI-compatible API")
    p.add_argument(
        "--model",
        action="append",
        metavar="SPEC",
        help=f"model to serve, repeatable: SPEC or NAME=SPEC; SPEC is {MODEL_HELP}",
    )
    p.add_argument("--host", default=d.host, help=f"address to bind (default {d.host}: this machine only)")
    p.add_argument("--port", type=int, default=d.port, help=f"port (default {d.port})")
    p.add_argument(
        "--api-key",
        metavar="KEY",
        help="require 'Authorization: Bearer KEY' (default: $ATTENTIVE_API_KEY, else no key)",
    )
    p.add_argument(
        "--max-batch",
        type=int,
        default=d.max_batch,
        metavar="N",
        help=f"rows decoding together per language model (default {d.max_batch}; 1 = one at a time)",
    )
    p.add_argument(
        "--cache",
        choices=CACHES,
        default=d.cache,
        help="auto (default): slots for a model prepared for CPU decoding, else dynamic. slots / "
        "dynamic: requests join the running batch between steps (slots: fixed shapes, a compiled "
        "step, chunked prefill, shared prompt beginnings reused); static / cuda_graph: fixed-shape "
        "steps (a CUDA graph on GPU), a batch runs to its end before the next starts",
    )
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=d.compile,
        help="compile the slots cache's step when the server starts (default on; cached on disk, so "
        "the second start is quick)",
    )
    p.add_argument(
        "--context",
        type=int,
        default=d.context,
        metavar="N",
        help=f"tokens one request may hold (default {d.context}, at most the model's context)",
    )
    p.add_argument(
        "--prefill-chunk",
        type=int,
        default=d.prefill_chunk,
        metavar="N",
        help=f"prompt tokens written a step while others decode (default {d.prefill_chunk})",
    )
    add_quantize(p)
    p.add_argument(
        "--plain",
        action="store_true",
        help="serve the models as loaded (optimize=False, dynamic cache, nothing compiled): the reference path",
    )
    p.add_argument(
        "--max-queue",
        type=int,
        default=d.max_queue,
        metavar="N",
        help=f"requests waiting per model before 429 (default {d.max_queue})",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=d.timeout,
        metavar="S",
        help=f"seconds a request may take, queueing included (default {d.timeout:g}; 0 = no limit)",
    )
    p.add_argument("--max-n", type=int, default=d.max_n, metavar="N", help=f"choices per request (default {d.max_n})")
    p.add_argument(
        "--max-inputs",
        type=int,
        default=d.max_inputs,
        metavar="N",
        help=f"texts or prompts per request (default {d.max_inputs})",
    )
    p.add_argument(
        "--max-body-mb",
        type=float,
        default=d.max_body_bytes / 2**20,
        metavar="MB",
        help=f"JSON body limit (default {d.max_body_bytes / 2**20:g} MiB)",
    )
    p.add_argument(
        "--max-upload-mb",
        type=float,
        default=d.max_upload_bytes / 2**20,
        metavar="MB",
        help=f"audio / image upload limit (default {d.max_upload_bytes / 2**20:g} MiB)",
    )
    p.add_argument(
        "--max-audio-seconds",
        type=float,
        default=d.max_audio_seconds,
        metavar="S",
        help=f"longest audio transcribed (default {d.max_audio_seconds:g})",
    )
    p.add_argument(
        "--explore",
        action="store_true",
        help="also serve the attention explorer's page at /explore/ on the same app (not with --api-key)",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        metavar="ORIGIN",
        help="allow browser pages from ORIGIN (repeatable; default: CORS off)",
    )
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="weights' dtype (default float32)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch (default: torch's choice)")
    p.add_argument(
        "--log-level",
        choices=("critical", "error", "warning", "info", "debug"),
        default="info",
        help="uvicorn's log level (debug also logs every request)",
    )
    add_device(p)
    p.set_defaults(func=run)
