"""Fuzz attentive's readers of outside files: mutated inputs, each read in a guarded child process.

Every input must end in a clean error (a ValueError / OSError subclass whose message is one line
and names the file) or a load; anything else is counted as a failure: a crash (the child died on a
signal), a hang (past ``--timeout``), an over-allocation (MemoryError or torch's "can't allocate"
under the child's RLIMIT_AS, far beyond any seed file), or an exception of another type.

Targets are a registry, ``TARGETS = {name: fn}``; ``fn(rng)`` builds one mutated input (in a
temporary folder) and reads it with ``run_in_child(...)``, returning that outcome dict. This file
holds the binary model readers (GGUF, safetensors checkpoints, Hugging Face folders, CTranslate2
``model.bin``); ``fuzz_text_targets.py`` beside it, when present, adds its own ``TARGETS`` (text,
JSON, WAV, image, JSONL, run folders), using ``run_in_child`` and ``scratch`` from here (``import
fuzz_readers``), and may append ``(name, call)`` pairs to ``fuzz_readers.WARMUP`` (run once in each
new child, so that lazy imports are not timed as a hang).

    .venv/bin/python benchmarks/reliability/fuzz_readers.py --seconds 300            # every target
    .venv/bin/python benchmarks/reliability/fuzz_readers.py --targets gguf --inputs 200

Writes ``benchmarks/reliability/fuzz_readers.json`` (``--out``): per target, inputs tried, outcomes,
clean errors by message class, and the distinct failures (exception type + reader line) with one
reproducing input each (copied into ``--keep``).
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import random
import re
import resource
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
OUT = HERE / "fuzz_readers.json"
CHILD_MEMORY = 2 << 30  # bytes of address space a child may add to what it holds after imports
CLEAN = (ValueError, OSError)

# ============================================================================ the guarded child


class _Worker:
    """One child process (``--worker``) that runs reader calls sent as JSON lines, under RLIMIT_AS.

    Kept alive between inputs (importing torch costs seconds); restarted after a crash or hang.
    """

    def __init__(self, memory: int = CHILD_MEMORY):
        self.memory = memory
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(REPO / "src"), os.environ.get("PYTHONPATH", "")])
        )
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", str(self.memory)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=str(REPO),
        )
        ready = self._readline(300)
        if ready is None or json.loads(ready).get("ready") is not True:
            raise RuntimeError("the fuzz worker did not start")

    def _readline(self, timeout: float) -> str | None:
        assert self.proc is not None and self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.proc.stdout.readline()
        return line.decode() if line else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def call(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()
        line = self._readline(timeout)
        if line is None:
            self.stop()
            return {"status": "hang"}
        if line == "":
            code = self.proc.wait()
            self.proc = None
            name = signal.Signals(-code).name if code < 0 and -code in signal.Signals._value2member_map_ else code
            return {"status": "crash", "signal": str(name)}
        return json.loads(line)


_WORKER: _Worker | None = None


def run_in_child(
    call: str, args: list | None = None, kwargs: dict | None = None, *, file: str | Path, timeout: float | None = None
) -> dict[str, Any]:
    """Run ``call`` ("module:function", e.g. "attentive:load") on JSON ``args`` in the guarded child.

    ``file`` is the input (a file or folder) a clean error message must name; ``timeout`` defaults
    to ``--timeout``. Returns
    ``{"outcome": load | clean_error | unclear_error | wrong_exception | over_allocation | crash | hang,
    ...}`` with the exception's type, message, message class and reader line where there is one.
    """
    global _WORKER
    if _WORKER is None:
        _WORKER = _Worker()
    raw = _WORKER.call({"call": call, "args": args or [], "kwargs": kwargs or {}}, timeout or _TIMEOUT)
    return classify(raw, Path(file))


def classify(raw: dict[str, Any], file: Path) -> dict[str, Any]:
    status = raw["status"]
    if status in ("hang", "crash", "load"):
        return {"outcome": status, **{k: v for k, v in raw.items() if k != "status"}}
    message = raw["message"]
    out = {"type": raw["type"], "message": message[:300], "where": raw["where"]}
    if raw["memory"]:
        return {"outcome": "over_allocation", **out}
    if not raw["clean_type"]:
        return {"outcome": "wrong_exception", **out}
    named = str(file) in message or file.name in message
    if "\n" in message.strip() or not named:
        return {"outcome": "unclear_error", **out, "why": "several lines" if named else "does not name the file"}
    return {"outcome": "clean_error", **out, "class": message_class(message, file)}


def message_class(message: str, file: Path) -> str:
    """A message with the file, quoted names and numbers blanked: what kind of error it is."""
    text = message.replace(str(file), "<FILE>").replace(file.name, "<FILE>")
    text = re.sub(r"/[\w./+-]+", "<PATH>", text)
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
    text = re.sub(r"\b\d[\d_.e+-]*\b", "N", text)
    text = re.sub(r"\([^()]*\)", "(…)", text)
    return text[:120]


def _worker_main(memory: int) -> None:
    """The child: import the readers, cap the address space, then serve requests."""
    import attentive  # noqa: F401  (first: it sets OpenMP's wait policy before torch loads)
    import torch
    import attentive.interop.ctranslate2  # noqa: F401
    import attentive.interop.gguf  # noqa: F401

    torch.set_num_threads(1)
    all_targets()  # fuzz_text_targets, when there, may add to WARMUP
    warm_up()
    with open("/proc/self/statm") as f:
        held = int(f.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (held + memory, resource.RLIM_INFINITY))
    out = sys.stdout
    sys.stdout = io.StringIO()  # readers' prints must not break the protocol
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout = io.StringIO()
        try:
            module, _, name = request["call"].partition(":")
            fn: Any = importlib.import_module(module)
            for part in name.split("."):
                fn = getattr(fn, part)
            fn(*request["args"], **request["kwargs"])
            reply: dict[str, Any] = {"status": "load"}
        except BaseException as err:  # noqa: BLE001 - everything is an outcome here
            if isinstance(err, (KeyboardInterrupt, SystemExit)):
                raise
            reply = {"status": "error", **describe(err)}
        out.write(json.dumps(reply) + "\n")
        out.flush()


WARMUP: list[tuple[str, Callable[[], Any]]] = []  # (name, call): run once in each child before it serves


def warm_up() -> None:
    """Read each seed once in a new child, so that its first input is not timed with the lazy
    imports (tokenizers, transformers, kernels) that cost seconds: a restarted child's first input
    would otherwise count as a hang."""
    import attentive

    seeds = build_seeds()
    calls = [
        lambda: attentive.from_pretrained(seeds / "q8_0.gguf"),
        lambda: attentive.from_pretrained(seeds / "hf"),
        lambda: attentive.load(seeds / "checkpoint"),
        lambda: read_ct2_whisper(str(seeds / "ct2" / "model.bin")),
    ]
    for call in calls + [c for _, c in WARMUP]:
        try:
            call()
        except Exception:  # noqa: BLE001 - a warm-up that fails still imported what it could
            pass


def describe(err: BaseException) -> dict[str, Any]:
    """Type, message, the line that raised it (innermost frame in attentive, else innermost) and
    whether it is an allocation failure."""
    frames = traceback.extract_tb(err.__traceback__)
    ours = [f for f in frames if "/attentive/" in f.filename]
    frame = (ours or frames or [None])[-1]
    where = f"{frame.filename.split('/src/')[-1].split('site-packages/')[-1]}:{frame.lineno}" if frame else "?"
    raiser = frames[-1] if frames else None
    if raiser is not None and raiser is not frame:
        where += f" (raised at {raiser.filename.split('site-packages/')[-1].split('/src/')[-1]}:{raiser.lineno})"
    message = str(err)
    memory = isinstance(err, MemoryError) or (
        type(err).__name__ in ("RuntimeError", "OutOfMemoryError") and "alloc" in message.lower()
    )
    return {
        "type": f"{type(err).__module__}.{type(err).__qualname__}".removeprefix("builtins."),
        "message": message,
        "where": where,
        "memory": memory,
        "clean_type": isinstance(err, CLEAN) and not memory,
    }


# ============================================================================ seeds and mutations

_SCRATCH: Path | None = None


def scratch() -> Path:
    """A fresh empty folder for one input (under one temporary root, emptied between inputs)."""
    global _SCRATCH
    if _SCRATCH is None:
        _SCRATCH = Path(tempfile.mkdtemp(prefix="fuzz_readers_"))
    case = _SCRATCH / "case"
    shutil.rmtree(case, ignore_errors=True)
    case.mkdir()
    return case


SEEDS = Path(tempfile.gettempdir()) / "attentive-fuzz-seeds"  # built once per machine, reused


def interesting(value: int, bits: int, signed: bool, size: int, rng: random.Random) -> int:
    """A value chosen to break size checks: 0, 1, -1, the extremes, off-by-one, the file size."""
    top = 1 << bits
    choices = [
        0,
        1,
        2,
        3,
        7,
        255,
        256,
        0x7FFF,
        0xFFFF,
        0x7FFFFFFF,
        0xFFFFFFFF,
        1 << 32,
        (1 << 63) - 1,
        1 << 63,
        top - 1,
        value + 1,
        value - 1,
        value * 2,
        value * 1000,
        value << 16,
        size,
        size - 1,
        size + 1,
        size * 2,
        -1,
        -2,
        rng.randrange(top),
    ]
    v = rng.choice(choices)
    if signed:
        v = ((v + (top >> 1)) % top) - (top >> 1)
    else:
        v %= top
    return v


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """Unstructured: truncate, flip bits, overwrite, insert, delete, duplicate a span."""
    b = bytearray(data)
    how = rng.choice(["truncate", "flip", "flip", "overwrite", "insert", "delete", "splice", "zero"])
    n = len(b)
    if how == "truncate" or n < 2:
        return bytes(b[: rng.randrange(max(n, 1))])
    i = rng.randrange(n)
    if how == "flip":
        for _ in range(rng.choice([1, 1, 2, 4, 16])):
            j = rng.randrange(n)
            b[j] ^= 1 << rng.randrange(8)
    elif how == "overwrite":
        chunk = rng.choice(
            [
                b"\xff" * 8,
                b"\x00" * 8,
                b"\x7f\xff\xff\xff",
                b"\xff\xff\xff\x7f",
                bytes(rng.randrange(256) for _ in range(8)),
            ]
        )
        b[i : i + len(chunk)] = chunk
    elif how == "insert":
        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.choice([1, 4, 8, 100])))
    elif how == "delete":
        del b[i : i + rng.choice([1, 4, 8, 100])]
    elif how == "splice":
        j = rng.randrange(n)
        b[i:i] = b[j : j + rng.randrange(1, 64)]
    else:
        b[i : i + rng.randrange(1, 64)] = bytes(min(64, n - i))
    return bytes(b)


# ---------------------------------------------------------------------------- GGUF

_GGUF_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B", 10: "<Q", 11: "<q", 12: "<d"}


class HeaderWalk:
    """A cursor through a binary header that records every number it reads as (offset, struct
    format, role), and a length-prefixed name's bytes as "text": what structured mutation edits."""

    def __init__(self, data: bytes, pos: int = 0):
        self.data, self.pos = data, pos
        self.fields: list[tuple[int, str, str]] = []

    def num(self, fmt: str, role: str) -> int:
        (v,) = struct.unpack_from(fmt, self.data, self.pos)
        self.fields.append((self.pos, fmt, role))
        self.pos += struct.calcsize(fmt)
        return v

    def string(self, length_fmt: str, role: str, nul: bool = False, longest: int | None = None) -> None:
        """A name after its length; ``nul``: the length counts a trailing NUL, not part of the text."""
        n = self.num(length_fmt, role)
        text = n - 1 if nul else n
        if 0 < text and (longest is None or text < longest):
            self.fields.append((self.pos, f"{text}s", "text"))
        self.pos += n


def gguf_fields(data: bytes) -> list[tuple[int, str, str]]:
    """Every number in a GGUF file's header as (offset, struct format, role), by walking it."""
    walk = HeaderWalk(data, pos=4)

    def value(kind: int, role: str) -> None:
        if kind == 8:
            walk.string("<Q", role + ".strlen", longest=4096)
        elif kind == 9:
            inner = walk.num("<I", "array_type")
            count = walk.num("<Q", "array_len")
            for _ in range(count):
                value(inner, "array_item")
        else:
            walk.num(_GGUF_SCALAR[kind], role)

    walk.num("<I", "version")
    n_tensors = walk.num("<Q", "tensor_count")
    n_kv = walk.num("<Q", "kv_count")
    for _ in range(n_kv):
        walk.string("<Q", "key_len", longest=4096)
        kind = walk.num("<I", "value_type")
        value(kind, "kv_value")
    for _ in range(n_tensors):
        walk.string("<Q", "tensor_name_len", longest=4096)
        dims = walk.num("<I", "n_dims")
        for _ in range(dims):
            walk.num("<Q", "dim")
        walk.num("<I", "ggml_type")
        walk.num("<Q", "data_offset")
    return walk.fields


def mutate_fields(data: bytes, fields: list[tuple[int, str, str]], rng: random.Random, count: int = 1) -> bytes:
    """Structured: set ``count`` numbers of the header (chosen by role first, so rare fields get
    their share) to values that break size checks, in place."""
    by_role: dict[str, list] = {}
    for f in fields:
        by_role.setdefault(f[2], []).append(f)
    b = bytearray(data)
    for _ in range(count):
        offset, fmt, _role = rng.choice(by_role[rng.choice(sorted(by_role))])
        if fmt.endswith("s"):  # a string's bytes, its length kept
            n = int(fmt[:-1])
            other = rng.choice(by_role["text"])
            b[offset : offset + n] = rng.choice(
                [
                    bytes(rng.randrange(256) for _ in range(n)),  # not UTF-8, mostly
                    (b"\xff" * n),
                    (b" " * n),
                    bytes(b[other[0] : other[0] + int(other[1][:-1])])[:n].ljust(n, b"x"),  # another name: a duplicate
                    bytes(b[offset : offset + n])[::-1],
                ]
            )
            continue
        if fmt in ("<f", "<d"):
            v = rng.choice([0.0, -1.0, float("nan"), float("inf"), 1e30, -1e30, 1e-30])
        else:
            (old,) = struct.unpack_from(fmt, b, offset)
            size = struct.calcsize(fmt)
            v = interesting(old, 8 * size, fmt[1].islower(), len(data), rng)
        struct.pack_into(fmt, b, offset, v)
    return bytes(b)


def _tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    from attentive.text import PretrainedTokenizer

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=262,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(["a dog runs", "the park", "two men play"] * 3, trainer)
    return PretrainedTokenizer(
        tok, bos_token="<|im_start|>", eos_tokens=["<|im_end|>"], pad_token="<|im_end|>", unk_token="<|endoftext|>"
    )


def tiny_llama(tied: bool = True):
    """A 1-layer LLaMA (32 wide, 2 heads) and a 262-token byte-level tokenizer: seeds of a few KB."""
    import torch

    import attentive

    torch.manual_seed(0)
    tok = _tiny_tokenizer()
    model = attentive.build(
        "llama-tiny",
        vocab_size=tok.vocab_size,
        num_layers=1,
        d_model=32,
        num_heads=2,
        num_kv_heads=1,
        d_ff=64,
        max_len=32,
        tie_embeddings=tied,
    )
    return model.eval(), tok


def build_seeds(folder: Path = SEEDS) -> Path:
    """The seed files, written once: GGUF (f32, q8_0), an attentive checkpoint, a Hugging Face
    folder, a CTranslate2 Whisper model.bin."""
    done = folder / "done"
    if done.is_file():
        return folder
    from attentive import save
    from attentive.interop.gguf_export import export_gguf
    from attentive.interop.hf_export import export_hf

    folder.mkdir(parents=True, exist_ok=True)
    model, tok = tiny_llama(tied=True)
    export_gguf(model, tok, folder / "f32.gguf", dtype="f32")
    untied, _ = tiny_llama(tied=False)
    export_gguf(untied, tok, folder / "q8_0.gguf", dtype="q8_0")
    save(model, folder / "checkpoint")
    export_hf(model, tok, folder / "hf")
    write_ct2(folder / "ct2" / "model.bin", tiny_whisper_ct2())
    done.write_text("ok\n")
    return folder


# ---------------------------------------------------------------------------- CTranslate2


def tiny_whisper_ct2(d: int = 8, ffn: int = 16, vocab: int = 12, mels: int = 4, positions: int = 6) -> dict:
    """CTranslate2 Whisper variables (name -> numpy array) for a 1+1-layer model, plus the alias."""
    import numpy as np

    r = np.random.default_rng(0)

    def w(*shape):
        return r.standard_normal(shape).astype(np.float16)

    def fused(parts):
        weight, bias = w(parts * d, d), w(parts * d)
        bias[(parts - 2) * d : (parts - 1) * d] = 0  # the key block's bias is zero in Whisper
        return weight, bias

    v: dict[str, Any] = {}

    def norm(prefix):
        v[f"{prefix}/gamma"], v[f"{prefix}/beta"] = w(d), w(d)

    def lin(prefix, out, inp):
        v[f"{prefix}/weight"], v[f"{prefix}/bias"] = w(out, inp), w(out)

    v["encoder/conv1/weight"], v["encoder/conv1/bias"] = w(d, mels, 3), w(d)
    v["encoder/conv2/weight"], v["encoder/conv2/bias"] = w(d, d, 3), w(d)
    for side in ("encoder", "decoder"):
        v[f"{side}/num_heads"] = np.array(2, dtype=np.int32)
        v[f"{side}/position_encodings/encodings"] = w(positions, d)
        sa = f"{side}/layer_0/self_attention"
        v[f"{sa}/linear_0/weight"], v[f"{sa}/linear_0/bias"] = fused(3)
        lin(f"{sa}/linear_1", d, d)
        norm(f"{sa}/layer_norm")
        if side == "decoder":
            ca = f"{side}/layer_0/attention"
            lin(f"{ca}/linear_0", d, d)
            v[f"{ca}/linear_1/weight"], v[f"{ca}/linear_1/bias"] = fused(2)
            lin(f"{ca}/linear_2", d, d)
            norm(f"{ca}/layer_norm")
        lin(f"{side}/layer_0/ffn/linear_0", ffn, d)
        lin(f"{side}/layer_0/ffn/linear_1", d, ffn)
        norm(f"{side}/layer_0/ffn/layer_norm")
        norm(f"{side}/layer_norm")
    v["decoder/embeddings/weight"] = w(vocab, d)
    v["decoder/activation"] = np.array(3, dtype=np.int8)
    return {"variables": v, "aliases": {"decoder/projection/weight": "decoder/embeddings/weight"}}


_CT2_DTYPE_IDS = {"float32": 0, "int8": 1, "int16": 2, "int32": 3, "float16": 4}


def write_ct2(path: Path, spec: dict, name: str = "WhisperSpec", version: int = 6) -> Path:
    """A ``model.bin`` in CTranslate2's binary layout (see ``attentive.interop.ctranslate2``)."""

    def string(text: str) -> bytes:
        raw = text.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    out = [struct.pack("<I", version), string(name), struct.pack("<I", 3), struct.pack("<I", len(spec["variables"]))]
    for key, array in spec["variables"].items():
        out += [string(key), struct.pack("<B", array.ndim), *(struct.pack("<I", s) for s in array.shape)]
        out += [struct.pack("<B", _CT2_DTYPE_IDS[str(array.dtype)]), struct.pack("<I", array.nbytes), array.tobytes()]
    out.append(struct.pack("<I", len(spec["aliases"])))
    for alias, target in spec["aliases"].items():
        out += [string(alias), string(target)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(out))
    return path


def ct2_fields(data: bytes) -> list[tuple[int, str, str]]:
    """Every number in a ``model.bin`` as (offset, struct format, role) (the data bytes skipped)."""
    walk = HeaderWalk(data)
    walk.num("<I", "version")
    walk.string("<H", "spec_len", nul=True)
    walk.num("<I", "revision")
    for _ in range(walk.num("<I", "var_count")):
        walk.string("<H", "name_len", nul=True)
        rank = walk.num("<B", "rank")
        for _ in range(rank):
            walk.num("<I", "dim")
        walk.num("<B", "dtype")
        nbytes = walk.num("<I", "nbytes")
        if rank == 0:  # flags such as decoder/activation, encoder/num_heads
            walk.fields.append((walk.pos, "<i" if nbytes >= 4 else "<b", "scalar_value"))
        walk.pos += nbytes
    for _ in range(walk.num("<I", "alias_count")):
        walk.string("<H", "alias_len", nul=True)
        walk.string("<H", "target_len", nul=True)
    return walk.fields


# ---------------------------------------------------------------------------- safetensors + JSON

_ST_DTYPES = [
    "F32",
    "F16",
    "BF16",
    "F64",
    "I8",
    "U8",
    "I16",
    "I32",
    "I64",
    "BOOL",
    "F8_E4M3",
    "F8_E5M2",
    "U64",
    "C64",
    "X9",
    "",
    "f32",
]


def _weird(rng: random.Random, value: Any = None, size: int = 1000) -> Any:
    """A JSON value that breaks assumptions: huge, negative, zero, wrong type, nested."""
    choices: list[Any] = [
        0,
        -1,
        1,
        2**31,
        2**32 + 1,
        2**63,
        2**64,
        10**30,
        -(2**63),
        size,
        size + 1,
        1.5,
        float("nan"),
        None,
        True,
        "12",
        "",
        [],
        {},
        [1, 2],
        {"a": 1},
        "\xff",
        [[[[]]]],
    ]
    if isinstance(value, int) and not isinstance(value, bool):
        choices += [value + 1, value - 1, value * 2, value * 1000, -value]
    return rng.choice(choices)


def mutate_json(obj: Any, rng: random.Random, size: int = 1000) -> Any:
    """Structured: change, delete or add one entry somewhere in a JSON document."""
    obj = json.loads(json.dumps(obj))
    paths: list[tuple[Any, Any]] = []

    def walk(node):
        if isinstance(node, dict):
            for k in list(node):
                paths.append((node, k))
                walk(node[k])
        elif isinstance(node, list):
            for i in range(len(node)):
                paths.append((node, i))
                walk(node[i])

    walk(obj)
    if not paths:
        return _weird(rng, None, size)
    parent, key = rng.choice(paths)
    how = rng.choice(["set", "set", "set", "delete", "add", "swap_type"])
    if how == "delete":
        del parent[key]
    elif how == "add" and isinstance(parent, dict):
        parent[rng.choice(["__metadata__", "extra", str(key) + "_", "x" * 3])] = _weird(rng, None, size)
    elif how == "swap_type":
        parent[key] = json.loads(json.dumps(parent[key])) if isinstance(parent[key], (dict, list)) else [parent[key]]
    else:
        parent[key] = _weird(rng, parent[key], size)
    return obj


def st_split(data: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack_from("<Q", data, 0)
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def st_join(header: Any, body: bytes, rng: random.Random | None = None) -> bytes:
    raw = json.dumps(header, allow_nan=True).encode()
    if rng is not None and rng.random() < 0.1:
        raw += b" " * rng.randrange(8)  # safetensors pads to 8 bytes with spaces
    return struct.pack("<Q", len(raw)) + raw + body


def mutate_safetensors(data: bytes, rng: random.Random) -> bytes:
    """Header length, header JSON (dtype, shape, data_offsets, metadata) or raw bytes."""
    how = rng.choice(["json", "json", "json", "offsets", "length", "garbage", "bytes"])
    header, body = st_split(data)
    if how == "json":
        return st_join(mutate_json(header, rng, len(body)), body, rng)
    if how == "offsets":
        name = rng.choice([k for k in header if k != "__metadata__"])
        entry = header[name]
        choice = rng.choice(["dtype", "shape", "start", "end", "overlap", "reverse"])
        if choice == "dtype":
            entry["dtype"] = rng.choice(_ST_DTYPES)
        elif choice == "shape":
            shape = list(entry["shape"])
            if shape and rng.random() < 0.8:
                shape[rng.randrange(len(shape))] = _weird(rng, shape[0], len(body))
            else:
                shape.append(rng.choice([0, 1, 2**31, -1]))
            entry["shape"] = shape
        elif choice == "start":
            entry["data_offsets"][0] = _weird(rng, entry["data_offsets"][0], len(body))
        elif choice == "end":
            entry["data_offsets"][1] = _weird(rng, entry["data_offsets"][1], len(body))
        elif choice == "overlap":
            other = header[rng.choice([k for k in header if k != "__metadata__"])]
            entry["data_offsets"] = list(other["data_offsets"])
        else:
            entry["data_offsets"] = entry["data_offsets"][::-1]
        return st_join(header, body)
    if how == "length":
        n = struct.unpack_from("<Q", data)[0]
        v = interesting(n, 64, False, len(data), rng)
        return struct.pack("<Q", v) + data[8:]
    if how == "garbage":
        raw = json.dumps(header).encode()
        i = rng.randrange(len(raw))
        raw = raw[:i] + rng.choice([b"\xff\xfe", b"{", b"]", b"\x00", b'"', b"[" * 10000, b"NaN"]) + raw[i + 1 :]
        return struct.pack("<Q", len(raw)) + raw + body
    return mutate_bytes(data, rng)


def mutate_config(path: Path, rng: random.Random) -> None:
    """A config.json with one entry changed (or its text garbled)."""
    text = path.read_text()
    if rng.random() < 0.15:
        path.write_bytes(mutate_bytes(text.encode(), rng))
    else:
        path.write_text(json.dumps(mutate_json(json.loads(text), rng), allow_nan=True))


# ============================================================================ the targets


def _pick_mutation(rng: random.Random) -> str:
    return rng.choice(["structured", "structured", "structured", "bytes", "both"])


def gguf_input(rng: random.Random, case: Path) -> Path:
    seeds = build_seeds()
    source = rng.choice([seeds / "f32.gguf", seeds / "q8_0.gguf"])
    data = source.read_bytes()
    how = _pick_mutation(rng)
    if how != "bytes":
        data = mutate_fields(data, gguf_fields(data), rng, count=rng.choice([1, 1, 1, 2, 3]))
    if how != "structured":
        data = mutate_bytes(data, rng)
    path = case / "model.gguf"
    path.write_bytes(data)
    return path


def target_gguf(rng: random.Random) -> dict[str, Any]:
    """``attentive.from_pretrained(path)`` on a mutated tiny GGUF (the reader, the config, the
    tokenizer, the model build, the quantised blocks)."""
    path = gguf_input(rng, scratch())
    return run_in_child("attentive:from_pretrained", [str(path)], file=path)


def _weights_and_config_input(rng: random.Random, folder: Path, seed: str, choices: list[str]) -> Path:
    """``folder``: a copy of a seed folder with its model.safetensors, its config.json or both mutated."""
    shutil.copytree(build_seeds() / seed, folder)
    what = rng.choice(choices)
    if what != "config":
        weights = folder / "model.safetensors"
        weights.write_bytes(mutate_safetensors(weights.read_bytes(), rng))
    if what != "weights":
        mutate_config(folder / "config.json", rng)
    return folder


def checkpoint_input(rng: random.Random, case: Path) -> Path:
    return _weights_and_config_input(
        rng, case / "ckpt", "checkpoint", ["weights", "weights", "weights", "config", "both"]
    )


def target_checkpoint(rng: random.Random) -> dict[str, Any]:
    """``attentive.load(folder)`` on a tiny checkpoint with mutated model.safetensors / config.json."""
    folder = checkpoint_input(rng, scratch())
    return run_in_child("attentive:load", [str(folder)], file=folder)


def hf_input(rng: random.Random, case: Path) -> Path:
    return _weights_and_config_input(rng, case / "hf", "hf", ["weights", "weights", "config", "both"])


def target_hf_folder(rng: random.Random) -> dict[str, Any]:
    """``attentive.from_pretrained(folder)`` on a Hugging Face LLaMA folder (config.json + model.safetensors)."""
    folder = hf_input(rng, scratch())
    return run_in_child("attentive:from_pretrained", [str(folder)], file=folder)


def ct2_input(rng: random.Random, case: Path) -> Path:
    data = (build_seeds() / "ct2" / "model.bin").read_bytes()
    how = _pick_mutation(rng)
    if how != "bytes":
        data = mutate_fields(data, ct2_fields(data), rng, count=rng.choice([1, 1, 2]))
    if how != "structured":
        data = mutate_bytes(data, rng)
    path = case / "model.bin"
    path.write_bytes(data)
    return path


def read_ct2_whisper(path: str) -> None:
    """What ``from_pretrained`` does with a CTranslate2 folder's model.bin: parse, map to HF Whisper."""
    from attentive.interop.ctranslate2 import read_ct2_model, whisper_ct2_to_hf

    whisper_ct2_to_hf(read_ct2_model(path))


def target_ctranslate2(rng: random.Random) -> dict[str, Any]:
    """``read_ct2_model`` + ``whisper_ct2_to_hf`` on a mutated tiny Whisper model.bin."""
    path = ct2_input(rng, scratch())
    return run_in_child("fuzz_readers:read_ct2_whisper", [str(path)], file=path)


TARGETS: dict[str, Callable[[random.Random], dict[str, Any]]] = {
    "gguf": target_gguf,
    "checkpoint": target_checkpoint,
    "hf_folder": target_hf_folder,
    "ctranslate2": target_ctranslate2,
}


def all_targets() -> dict[str, Callable[[random.Random], dict[str, Any]]]:
    """Ours plus ``fuzz_text_targets.TARGETS`` when that module is there."""
    sys.modules.setdefault("fuzz_readers", sys.modules[__name__])
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    targets = dict(TARGETS)
    if "fuzz_text_targets" in sys.modules:
        return {**targets, **sys.modules["fuzz_text_targets"].TARGETS}
    try:
        extra = importlib.import_module("fuzz_text_targets")
    except ModuleNotFoundError as err:
        if err.name != "fuzz_text_targets":
            raise
    else:
        targets.update(extra.TARGETS)
    return targets


# ============================================================================ the run

FAILURES = ("wrong_exception", "over_allocation", "crash", "hang", "unclear_error")


def fuzz(name: str, fn: Callable, seconds: float | None, inputs: int | None, seed: int, keep: Path | None) -> dict:
    rng = random.Random(f"{name}:{seed}")
    outcomes: Counter = Counter()
    classes: Counter = Counter()
    failures: dict[str, dict[str, Any]] = {}
    start = time.monotonic()
    tried = 0
    while True:
        if inputs is not None and tried >= inputs:
            break
        if seconds is not None and time.monotonic() - start >= seconds:
            break
        case_seed = rng.randrange(1 << 62)
        result = fn(random.Random(case_seed))
        tried += 1
        outcomes[result["outcome"]] += 1
        if result["outcome"] == "clean_error":
            classes[result["class"]] += 1
        elif result["outcome"] in FAILURES:
            key = f"{result['outcome']}: {result.get('type', result.get('signal', ''))} at {result.get('where', '?')}"
            entry = failures.setdefault(key, {"count": 0, "case_seed": case_seed, "example": result})
            entry["count"] += 1
            if keep is not None and entry["count"] == 1 and _SCRATCH is not None:
                dest = keep / name / str(len(failures))
                shutil.copytree(_SCRATCH / "case", dest, dirs_exist_ok=True)
                entry["kept"] = str(dest)
    elapsed = time.monotonic() - start
    return {
        "inputs": tried,
        "seconds": round(elapsed, 1),
        "inputs_per_second": round(tried / elapsed, 2) if elapsed else None,
        "outcomes": dict(outcomes),
        "failures": sum(outcomes[k] for k in FAILURES),
        "distinct_failures": len(failures),
        "failure_list": failures,
        "clean_error_classes": dict(classes.most_common(40)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="*", help="which targets (default: all)")
    parser.add_argument("--seconds", type=float, help="seconds per target")
    parser.add_argument("--inputs", type=int, help="inputs per target")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds before an input counts as a hang")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--keep", type=Path, help="copy one input per distinct failure here")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        _worker_main(args.worker)
        return 0
    if args.seconds is None and args.inputs is None:
        args.inputs = 50
    sys.path.insert(0, str(HERE.parent))
    import context_common

    targets = all_targets()
    chosen = args.targets or list(targets)
    unknown = [t for t in chosen if t not in targets]
    if unknown:
        parser.error(f"unknown targets {unknown}; known: {', '.join(targets)}")
    global _TIMEOUT
    _TIMEOUT = args.timeout
    result: dict[str, Any] = {
        **context_common.provenance(),
        "settings": {
            "seconds": args.seconds,
            "inputs": args.inputs,
            "seed": args.seed,
            "timeout_s": args.timeout,
            "child_memory_bytes": CHILD_MEMORY,
        },
        "figures": {},
        "tables": {},
    }
    rows = []
    try:
        for name in chosen:
            print(f"[fuzz] {name} ...", flush=True)
            stats = fuzz(name, targets[name], args.seconds, args.inputs, args.seed, args.keep)
            result["figures"][name] = stats
            o = stats["outcomes"]
            rows.append(
                [
                    name,
                    stats["inputs"],
                    o.get("load", 0),
                    o.get("clean_error", 0),
                    stats["failures"],
                    stats["distinct_failures"],
                    o.get("crash", 0),
                    o.get("hang", 0),
                    o.get("over_allocation", 0),
                    o.get("wrong_exception", 0),
                    o.get("unclear_error", 0),
                ]
            )
            print(
                f"[fuzz] {name}: {json.dumps({k: stats[k] for k in ('inputs', 'outcomes', 'distinct_failures')})}",
                flush=True,
            )
            for key, entry in stats["failure_list"].items():
                print(f"    {entry['count']:4d}x {key}: {entry['example'].get('message', '')[:160]}", flush=True)
            result["tables"]["outcomes"] = {
                "columns": [
                    "target",
                    "inputs",
                    "load",
                    "clean_error",
                    "failures",
                    "distinct_failures",
                    "crash",
                    "hang",
                    "over_allocation",
                    "wrong_exception",
                    "unclear_error",
                ],
                "rows": rows,
            }
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    finally:
        if _WORKER is not None:
            _WORKER.stop()
        if _SCRATCH is not None:
            shutil.rmtree(_SCRATCH, ignore_errors=True)
    return 1 if any(r[4] for r in rows) else 0


_TIMEOUT = 20.0

if __name__ == "__main__":
    sys.exit(main())
