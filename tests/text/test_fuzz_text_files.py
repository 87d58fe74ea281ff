"""Fuzzing the readers of outside text-like files: tokenizer and config JSON, chat templates, WAV,
images, JSON Lines training data and run folders.

Every input, however mangled, must end in a correct load or a clean one-line error (a ValueError
or OSError naming the file): never another exception type, a hang or an allocation far beyond the
file. Each corpus is a fixed-seed hypothesis run (``derandomize=True``) that starts from real files
(MiniLM's tokenizer folder, SmolLM2's chat template, a WAV, a PNG/JPEG, a two-step run folder) and
mutates them; the named tests below each pin one bug the fuzzing found. The long run is
``benchmarks/reliability/fuzz_readers.py`` with the targets of ``fuzz_text_targets.py``.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import attentive
from attentive.audio import read_wav
from attentive.data.images import load_image_bytes, load_image_file
from attentive.data.instruction import read_examples
from attentive.fileio import read_jsonl
from attentive.text import PretrainedTokenizer, chat, load_tokenizer, render_chat
from attentive.text.files import read_json
from attentive.train.average import write_average
from attentive.train.run_folder import checkpoint_dirs
from pretrained_paths import need_minilm

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "reliability"))
from fuzz_text_targets import IMAGE_SEEDS, tiny_run  # noqa: E402  (the long run's tiny run folder: one recipe for both)

pytestmark = pytest.mark.filterwarnings("ignore")  # Pillow and read_jsonl warn about what they skip

FUZZ = settings(
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported at once, as drawn
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
DEEP = "[" * 100_000 + "]" * 100_000  # more than Python's JSON parser can nest
CLEAN = (ValueError, OSError)
USER = [{"role": "user", "content": "Hello"}]


def clean_or_load(read, path: Path | None, seconds: float = 10.0):
    """Run ``read()``: a load, or a one-line ValueError / OSError naming ``path`` (when given),
    within ``seconds``. Anything else fails the test."""
    start = time.monotonic()
    try:
        result = read()
    except CLEAN as err:
        message = str(err).strip()
        assert message and "\n" not in message, f"not one line: {message!r}"
        if path is not None:
            assert path.name in message, f"does not name {path.name}: {message!r}"
        result = err
    assert time.monotonic() - start < seconds, f"took {time.monotonic() - start:.1f} s"
    return result


# ----------------------------------------------------------------------------- mutations


@st.composite
def mutated_bytes(draw, data: bytes) -> bytes:
    """Truncate, flip bits, overwrite with extreme bytes, insert or delete a span."""
    b = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        n = len(b)
        how = draw(st.sampled_from(["truncate", "flip", "overwrite", "insert", "delete"]))
        if how == "truncate" or n < 2:
            return bytes(b[: draw(st.integers(0, max(n - 1, 0)))])
        i = draw(st.integers(0, n - 1))
        if how == "flip":
            b[i] ^= 1 << draw(st.integers(0, 7))
        elif how == "overwrite":
            chunk = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\xff\xff\xff\x7f", b"\x80"]))
            b[i : i + len(chunk)] = chunk
        elif how == "insert":
            b[i:i] = draw(st.binary(min_size=1, max_size=16))
        else:
            del b[i : i + draw(st.integers(1, 64))]
    return bytes(b)


WEIRD = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, -1, 1, 2**31, 2**63, 10**30, -(2**63), 1.5, float("nan"), float("inf")]),
    st.integers(),
    st.text(max_size=12),
    st.sampled_from(["", "\ud800", "{{", "{% for", "<s>", "\x00"]),
    st.lists(st.integers(-2, 2**40), max_size=3),
    st.dictionaries(st.text(max_size=6), st.integers(), max_size=2),
    st.just([[[[[[]]]]]]),
    st.just({"content": 5}),
)


@st.composite
def mutated_json(draw, doc):
    """One value somewhere in ``doc`` replaced, deleted, wrapped in a list, or a key added."""
    doc = json.loads(json.dumps(doc))
    slots = []

    def walk(node, depth=0):
        if depth > 6:
            return
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in list(items)[:200]:
            slots.append((node, key))
            walk(value, depth + 1)

    walk(doc)
    if not slots:
        return draw(WEIRD)
    parent, key = draw(st.sampled_from(slots))
    how = draw(st.sampled_from(["set", "set", "delete", "wrap", "add"]))
    if how == "delete":
        del parent[key]
    elif how == "wrap":
        parent[key] = [parent[key]]
    elif how == "add" and isinstance(parent, dict):
        parent[draw(st.text(min_size=1, max_size=8))] = draw(WEIRD)
    else:
        parent[key] = draw(WEIRD)
    return doc


def dump(doc) -> str:
    return json.dumps(doc, ensure_ascii=False, allow_nan=True)


def write_text(path: Path, text: str) -> None:
    path.write_bytes(text.encode("utf-8", "surrogatepass"))  # a lone surrogate stays as a bad byte run


# ----------------------------------------------------------------------------- seeds


@pytest.fixture(scope="module")
def minilm():
    return need_minilm()


# SmolLM2-135M-Instruct's chat template, as its GGUF file's metadata holds it (reading that takes
# seconds: test_smollm2_template_seed_is_the_gguf_files checks the copy, in the slow suite)
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def smollm2_template():
    return SMOLLM2_TEMPLATE


@pytest.mark.slow
def test_smollm2_template_seed_is_the_gguf_files():
    from pretrained_paths import need_smollm2

    from attentive.interop.gguf import _reader, read_metadata

    assert read_metadata(_reader(need_smollm2()))["tokenizer.chat_template"] == SMOLLM2_TEMPLATE


def tokenizer_folder(tmp: Path, minilm: Path, config=None, tokenizer: bytes | None = None) -> Path:
    folder = tmp / "tok"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if tokenizer is None:
        (folder / "tokenizer.json").symlink_to(minilm / "tokenizer.json")
    else:
        (folder / "tokenizer.json").write_bytes(tokenizer)
    if config is not None:
        write_text(folder / "tokenizer_config.json", config if isinstance(config, str) else dump(config))
    return folder


def use_tokenizer(folder: Path):
    tok = PretrainedTokenizer.load(folder)
    tok.decode(tok.encode("Hello, world"))
    _ = tok.bos_id, tok.eos_ids, tok.pad_id, tok.unk_id
    if tok.chat_template:
        tok.apply_chat_template(USER)
    return tok


# ----------------------------------------------------------------------------- tokenizer JSON


@settings(FUZZ, max_examples=30)
@given(data=st.data())
def test_fuzz_tokenizer_config(tmp_path, minilm, smollm2_template, data):
    seed = json.loads((minilm / "tokenizer_config.json").read_text())
    seed.update(chat_template=smollm2_template, eos_token={"content": "[SEP]"}, stop_tokens=["[SEP]"])
    config = data.draw(mutated_json(seed))
    folder = tokenizer_folder(tmp_path, minilm, config)
    clean_or_load(lambda: use_tokenizer(folder), None)  # a template's error names no file: it is text


@settings(FUZZ, max_examples=12)
@given(data=st.data())
def test_fuzz_tokenizer_json(tmp_path, minilm, data):
    text = (minilm / "tokenizer.json").read_text()
    if data.draw(st.booleans()):
        raw = data.draw(mutated_bytes(text.encode()))
    else:
        raw = dump(data.draw(mutated_json(json.loads(text)))).encode("utf-8", "surrogatepass")
    folder = tokenizer_folder(tmp_path, minilm, tokenizer=raw)
    clean_or_load(lambda: use_tokenizer(folder), folder / "tokenizer.json")


@settings(FUZZ, max_examples=40)
@given(data=st.data())
def test_fuzz_attentive_tokenizer_json(tmp_path, run_folder, data):
    text = (run_folder / "tokenizer.json").read_text()
    raw = data.draw(
        st.one_of(
            mutated_bytes(text.encode()),
            mutated_json(json.loads(text)).map(lambda d: dump(d).encode("utf-8", "surrogatepass")),
        )
    )
    path = tmp_path / "tokenizer.json"
    path.write_bytes(raw)

    def read():
        tok = load_tokenizer(path)
        tok.decode(tok.encode("".join(tok.id_to_token(i) for i in range(4, min(tok.vocab_size, 12)))))

    clean_or_load(read, path)


# ----------------------------------------------------------------------------- chat templates

HOSTILE = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.system('touch /tmp/pwned') }}",
    "{{ self._TemplateReference__context.cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ ''|attr('__class__')|attr('__mro__') }}",
    "{{ messages.append(1) }}{{ messages.pop() }}",
    "{% for i in range(10**9) %}{% endfor %}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{{ 'a' * 10**10 }}",
    "{{ [0] * 10**10 }}",
    "{{ 99999 ** 99999 }}",
    "{{ 10 ** 10000000 }}",
    "{{ 'x'.ljust(10**10) }}",
    "{{ 'a'|center(10**10) }}",
    "{{ 'a'|indent(10**10) }}",
    "{{ '{:>2000000000}'.format(1) }}",
    "{{ '%2000000000d' % 1 }}",
    "{{ '%*d' % (2000000000, 1) }}",
    "{{ '%2000000000d'|format(1) }}",
    "{{ lipsum(10**9) }}",
    "{{ 'ab'|slice(10**9)|list }}",
    "{% set ns = namespace(s='ab') %}{% for i in range(80) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    "{% set ns = namespace(s=[1]) %}{% for i in range(80) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}",
    "{% macro m(n) %}{{ m(n) }}{{ m(n) }}{% endmacro %}{{ m(1) }}",
    "{% macro m(n) %}{% if n %}{{ m(n - 1) }}{{ m(n - 1) }}{% endif %}{% endmacro %}{{ m(60) }}",
    "{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}",
    "{{" + "(" * 5000 + "1" + ")" * 5000 + "}}",
    "{{ raise_exception('stop') }}",
    "{{ 1 / 0 }}",
    "{{ strftime_now(5) }}",
    "{% for",
    "{{ x.y.z }}",
]


HARMLESS = (
    "{{ self._TemplateReference__context.cycler.__init__.__globals__ }}",
    "{{ ''|attr('__class__')|attr('__mro__') }}",
)


@pytest.mark.parametrize("template", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_chat_templates_end_in_a_clean_error_quickly(template, monkeypatch):
    """Regression: the sandbox lets nothing out (attribute escapes), and a template's loops, numbers,
    strings and recursion are bounded: ``range`` over 10**9 was an OverflowError, ``'a' * 10**10``
    allocated 10 GB, nested loops ran for hours, ``1 / 0`` and recursion leaked raw exceptions."""
    monkeypatch.setattr(chat, "MAX_SECONDS", 1.0)  # the default 5 s, shortened for the suite
    start = time.monotonic()
    try:
        text = render_chat(template, USER)
    except ValueError as err:
        assert str(err).startswith("chat template failed: ") and "\n" not in str(err)
    else:  # an unsafe attribute renders as undefined: nothing of Python's comes out
        assert template in HARMLESS and text == ""
    assert time.monotonic() - start < 3.0
    assert not Path("/tmp/pwned").exists()


def test_ordinary_chat_template_features_still_render():
    text = render_chat(
        "{{ (messages|first).content|upper }} {{ '%s-%d' % ('a', 3) }} {{ 'x' * 3 }} {{ 2 ** 10 }} "
        "{{ [1, 2] + [3] }} {{ 'a' ~ 5 }} {{ '{}!'.format('hi') }} {% for m in messages %}{{ loop.index }}"
        "{% endfor %} {{ messages|tojson }} {{ range(3)|list }} {{ 'ab'|center(6) }}|",
        USER,
    )
    assert text == 'HELLO a-3 xxx 1024 [1, 2, 3] a5 hi! 1 [{"role": "user", "content": "Hello"}] [0, 1, 2]   ab  |'


SNIPPETS = st.sampled_from(
    [
        "{{",
        "}}",
        "{%",
        "%}",
        "{% endfor %}",
        "{% if %}",
        "{{ messages[0] }}",
        "{{ loop.index }}",
        "'",
        '"',
        "|",
        "~",
        "{{ message['content'] * 100000 }}",
        "{% for m in messages %}",
        "{{ raise_exception('x') }}",
        ".__class__",
        "(",
        ")",
    ]
)


@settings(FUZZ, max_examples=60)
@given(data=st.data())
def test_fuzz_chat_template(smollm2_template, data):
    text = smollm2_template
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(text)))
        j = data.draw(st.integers(i, min(len(text), i + 40)))
        text = text[:i] + data.draw(st.one_of(SNIPPETS, st.text(max_size=6), st.just(""))) + text[j:]
    messages = data.draw(
        st.lists(
            st.fixed_dictionaries(
                {"role": st.sampled_from(["system", "user", "assistant"]), "content": st.text(max_size=30)}
            ),
            max_size=4,
        )
    )
    clean_or_load(lambda: render_chat(text, messages, add_generation_prompt=data.draw(st.booleans())), None, 6.0)


# ----------------------------------------------------------------------------- deep and odd JSON


def test_json_nested_too_deeply_is_a_clean_error_everywhere(tmp_path, minilm, run_folder):
    """Regression: 100,000 nested brackets raised RecursionError from every JSON reader."""
    deep = tmp_path / "deep.json"
    deep.write_text(DEEP)
    checks = [(lambda: read_json(deep), deep), (lambda: load_tokenizer(deep), deep)]
    folder = tokenizer_folder(tmp_path, minilm, DEEP)
    checks.append((lambda: PretrainedTokenizer.load(folder), folder / "tokenizer_config.json"))
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text('{"prompt": "a", "completion": "b"}\n' + DEEP + "\n")
    checks.append((lambda: read_examples(jsonl), jsonl))
    ckpt = tmp_path / "ckpt"
    shutil.copytree(run_folder, ckpt)
    (ckpt / "config.json").write_text(DEEP)
    checks.append((lambda: attentive.load(ckpt), ckpt / "config.json"))
    for read, path in checks:
        with pytest.raises(ValueError, match="nested too deeply") as err:
            read()
        assert path.name in str(err.value)
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"step": 1}\n' + DEEP + '\n{"step": 2}\n')
    assert [r["step"] for r in read_jsonl(metrics)] == [1, 2]  # the bad record is skipped, as a torn one is


@pytest.mark.parametrize(
    "config, message",
    [
        ([1, 2], "expected a JSON object, found list"),
        ({"chat_template": 5}, "chat_template must be text"),
        ({"chat_template": [1]}, "chat_template must be text or a list"),
        ({"chat_template": [{"name": "default"}]}, "chat_template must be text or a list"),
        ({"stop_tokens": 5}, "stop_tokens must be a list"),
        ({"stop_tokens": ["[SEP]", 5]}, "stop_tokens must be a token's text"),
        ({"eos_token": {"content": 5}}, "eos_token must be a token's text"),
        ({"bos_token": [1]}, "bos_token must be a token's text"),
        ('{"chat_template": "\xff"}'.encode("latin-1").decode("latin-1"), None),  # valid: a one-char template
    ],
)
def test_tokenizer_config_of_the_wrong_shape_is_a_clean_error(tmp_path, minilm, config, message):
    """Regression: a tokenizer_config.json that was a list, or held a number where a token or a
    template belongs, raised AttributeError / TypeError / KeyError."""
    folder = tokenizer_folder(tmp_path, minilm, config)
    if message is None:
        use_tokenizer(folder)
        return
    with pytest.raises(ValueError, match=message) as err:
        use_tokenizer(folder)
    assert "tokenizer_config.json" in str(err.value)


def test_undecodable_tokenizer_files_name_the_file(tmp_path, minilm):
    """Regression: a chat_template.jinja or tokenizer_config.json that is not UTF-8 raised UnicodeDecodeError."""
    folder = tokenizer_folder(tmp_path, minilm)
    (folder / "chat_template.jinja").write_bytes(b"{{ '\xff\xfe' }}")
    with pytest.raises(ValueError, match="chat_template.jinja is not UTF-8"):
        PretrainedTokenizer.load(folder)
    (folder / "tokenizer.json").unlink()
    (folder / "tokenizer.json").write_bytes(b'{"type": "char", "vocab": "\xff"}')
    with pytest.raises(ValueError, match="tokenizer.json: not UTF-8"):
        load_tokenizer(folder)


# ----------------------------------------------------------------------------- WAV


def wav_bytes(width: int = 2, channels: int = 1, rate: int = 16_000, frames: int = 400) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setsampwidth(width)
        w.setnchannels(channels)
        w.setframerate(rate)
        w.writeframes(np.random.default_rng(0).integers(0, 256, frames * width * channels, dtype=np.uint8).tobytes())
    return buf.getvalue()


# offset, format of the numbers in a canonical 44-byte WAV header
WAV_FIELDS = [(4, "<I"), (16, "<I"), (20, "<H"), (22, "<H"), (24, "<I"), (28, "<I"), (32, "<H"), (34, "<H"), (40, "<I")]


@settings(FUZZ, max_examples=60)
@given(data=st.data())
def test_fuzz_wav(tmp_path, data):
    raw = bytearray(wav_bytes(data.draw(st.sampled_from([1, 2, 3, 4])), data.draw(st.sampled_from([1, 2, 6]))))
    for _ in range(data.draw(st.integers(0, 2))):
        offset, fmt = data.draw(st.sampled_from(WAV_FIELDS))
        bits = 8 * struct.calcsize(fmt)
        value = data.draw(
            st.sampled_from([0, 1, 3, 7, 0xFFFE, 2 ** (bits - 1), 2**bits - 1]) | st.integers(0, 2**bits - 1)
        )
        struct.pack_into(fmt, raw, offset, value)
    raw = data.draw(mutated_bytes(bytes(raw))) if data.draw(st.booleans()) else bytes(raw)
    path = tmp_path / "speech.wav"
    path.write_bytes(raw)
    result = clean_or_load(lambda: read_wav(path), path)
    if not isinstance(result, Exception):
        audio, rate = result
        assert audio.dtype == np.float32 and audio.ndim == 1 and rate > 0
        assert audio.nbytes <= 4 * len(raw)  # never more samples than the file holds


@pytest.mark.parametrize(
    "patch, message",
    [
        ((24, "<I", 0), "sample rate of 0 Hz"),
        ((16, "<I", 0xFFFFFFF0), "not a readable PCM WAV file"),  # a chunk size past the end: a bare RuntimeError
        (None, None),
    ],
)
def test_wav_with_bad_numbers_is_a_clean_error(tmp_path, patch, message):
    """Regression: a zero sample rate passed through (and failed later, naming no file); a chunk size
    past the end of the file raised RuntimeError; a file cut mid-frame raised numpy's reshape error."""
    raw = bytearray(wav_bytes(3, 2))
    path = tmp_path / "bad.wav"
    if patch is None:  # cut mid-frame: the torn frame is dropped
        path.write_bytes(bytes(raw[:-4]))
        audio, rate = read_wav(path)
        assert len(audio) == 399 and rate == 16_000
        return
    struct.pack_into(patch[1], raw, patch[0], patch[2])
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=message) as err:
        read_wav(path)
    assert "bad.wav" in str(err.value)


def test_wav_whose_data_chunk_claims_gigabytes_reads_only_what_is_there(tmp_path):
    """Regression (found by the long fuzz run): a data chunk claiming 4 GiB in a file of 1.6 kB made
    ``wave.readframes`` allocate the claim first (MemoryError under a memory limit)."""
    import tracemalloc

    raw = bytearray(wav_bytes(2, 2))
    struct.pack_into("<I", raw, 40, 0xFFFFFFF0)
    path = tmp_path / "claims.wav"
    path.write_bytes(bytes(raw))
    tracemalloc.start()
    try:
        audio, rate = read_wav(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(audio) == 400 and rate == 16_000
    assert peak < 64 << 20


# ----------------------------------------------------------------------------- images


def image_bytes(mode: str, fmt: str, size=(40, 30)) -> bytes:
    from PIL import Image

    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).convert(
        mode
    )
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


@settings(FUZZ, max_examples=50)
@given(data=st.data())
def test_fuzz_image(tmp_path, data):
    mode, fmt = data.draw(st.sampled_from(IMAGE_SEEDS))
    raw = data.draw(mutated_bytes(image_bytes(mode, fmt)))
    path = tmp_path / f"digit.{fmt.lower()}"
    path.write_bytes(raw)
    result = clean_or_load(lambda: load_image_file(path), path)
    if not isinstance(result, Exception):
        assert result.shape == (1, 28, 28)
    clean_or_load(lambda: load_image_bytes(raw, max_pixels=10**6), None)


def png_claiming(width: int, height: int) -> bytes:
    """A 60-byte PNG whose header claims ``width`` x ``height`` pixels."""
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("width, height", [(100_000, 100_000), (12_000, 12_000), (1, 2**31 - 1)])
def test_image_decompression_bombs_are_refused_before_decoding(tmp_path, width, height):
    """Regression: a file claiming 400 M pixels raised Pillow's DecompressionBombError, and one of
    144 M (under Pillow's own error limit) was decoded into gigabytes of float arrays."""
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(width, height))
    with pytest.raises(ValueError, match=r"pixels.* limit") as err:
        load_image_file(path)
    assert "bomb.png" in str(err.value)
    with pytest.raises(ValueError, match=r"pixels.* limit"):
        load_image_bytes(path.read_bytes())


# ----------------------------------------------------------------------------- JSON Lines training data

GOOD_LINES = [
    {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
        ]
    },
    {"prompt": "2 + 2 =", "completion": " 4"},
]


@settings(FUZZ, max_examples=50)
@given(data=st.data())
def test_fuzz_instruction_jsonl(tmp_path, data):
    lines = []
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["good", "mutated", "mutated", "text", "deep", "huge"]))
        if kind == "good":
            lines.append(dump(data.draw(st.sampled_from(GOOD_LINES))))
        elif kind == "mutated":
            lines.append(dump(data.draw(mutated_json(data.draw(st.sampled_from(GOOD_LINES))))))
        elif kind == "text":
            lines.append(data.draw(st.text(max_size=30)).replace("\n", " "))
        elif kind == "deep":
            depth = data.draw(st.sampled_from([10, 900, 5000, 100_000]))
            lines.append('{"messages": ' + "[" * depth + "]" * depth + "}")
        else:
            lines.append(dump({"prompt": "x" * 2_000_000, "completion": "y"}))
    raw = "\n".join(lines).encode("utf-8", "surrogatepass")
    if data.draw(st.integers(0, 4)) == 0:
        raw = data.draw(mutated_bytes(raw))
    path = tmp_path / "train.jsonl"
    path.write_bytes(raw)
    result = clean_or_load(lambda: read_examples(path), path)
    if not isinstance(result, Exception):
        for example in result:
            for message in example.as_messages():
                message["content"].encode("utf-8")  # every text is encodable: tokenizers take it


def test_instruction_text_with_a_lone_surrogate_is_a_clean_error(tmp_path):
    """Regression: JSON's ``\\ud800`` loaded as text no tokenizer can encode (TypeError later, in training)."""
    path = tmp_path / "train.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "a\\ud800"}, {"role": "assistant", "content": "b"}]}\n')
    with pytest.raises(ValueError, match=r"train.jsonl:1: message 0 is not valid Unicode text"):
        read_examples(path)


# ----------------------------------------------------------------------------- run folders


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A two-step run (two checkpoints) with a char tokenizer beside its weights."""
    from attentive.text import CharTokenizer

    out = tmp_path_factory.mktemp("run") / "run"
    tiny_run(out, 2)
    CharTokenizer.train("hello world").save(out)
    return out


RUN_FILES = ["config.json", "trainer_state.json", "metrics.jsonl", "checkpoint_name"]


@settings(FUZZ, max_examples=12)
@given(data=st.data())
def test_fuzz_run_folder_resume_load_and_average(tmp_path, run_folder, data):
    out = tmp_path / "run"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(run_folder, out)
    latest = checkpoint_dirs(out)[-1]
    what = data.draw(st.sampled_from(RUN_FILES))
    if what == "checkpoint_name":
        latest.rename(
            latest.parent / data.draw(st.sampled_from(["step-abc", "step-", "step-1.tmp", "step-00x9", "step--1"]))
        )
        victim = out / "metrics.jsonl"
    else:
        victim = latest / what if what != "metrics.jsonl" else out / what
        text = victim.read_text()
        if what == "metrics.jsonl" or data.draw(st.booleans()):
            victim.write_bytes(data.draw(mutated_bytes(text.encode())))
        else:
            write_text(victim, dump(data.draw(mutated_json(json.loads(text)))))
    if what == "config.json":  # attentive.load names the checkpoint folder
        clean_or_load(lambda: attentive.load(latest), latest)
        clean_or_load(lambda: write_average(checkpoint_dirs(out), tmp_path / "avg"), latest)
    clean_or_load(lambda: tiny_run(out, 3, resume=True), victim, seconds=30)


@pytest.mark.parametrize(
    "progress, message",
    [
        ({"step": "2"}, "progress 'step' must be a number"),
        ({"elapsed": None}, "progress 'elapsed' must be a number"),
        ({"step": -5}, "progress 'step' must be a number"),
        (None, "'progress' must be a JSON object"),
    ],
)
def test_resume_from_a_trainer_state_of_the_wrong_shape_is_a_clean_error(tmp_path, run_folder, progress, message):
    """Regression: a trainer_state.json whose progress held a string step resumed and failed much
    later with TypeError; one whose progress was not an object raised TypeError at once."""
    out = tmp_path / "run"
    shutil.copytree(run_folder, out)
    state = checkpoint_dirs(out)[-1] / "trainer_state.json"
    meta = json.loads(state.read_text())
    meta["progress"] = [] if progress is None else {**meta["progress"], **progress}
    state.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=message) as err:
        tiny_run(out, 3, resume=True)
    assert "cannot resume from" in str(err.value) and "step-0000002" in str(err.value)


def test_a_stray_step_folder_is_not_a_checkpoint(tmp_path, run_folder):
    """Regression: a folder named ``step-abc`` beside the checkpoints was listed as the newest one."""
    out = tmp_path / "run"
    shutil.copytree(run_folder, out)
    (out / "checkpoints" / "step-abc").mkdir()
    assert [p.name for p in checkpoint_dirs(out)] == ["step-0000001", "step-0000002"]
    tiny_run(out, 3, resume=True)
    assert checkpoint_dirs(out)[-1].name == "step-0000003"


def test_resume_from_optimizer_settings_of_the_wrong_shape_is_a_clean_error(tmp_path, run_folder):
    """Regression: a trainer_state.json whose Adam ``betas`` was ``[0.9]`` resumed, and the first
    optimiser step failed with an unpacking error naming no file."""
    out = tmp_path / "run"
    shutil.copytree(run_folder, out)
    state = checkpoint_dirs(out)[-1] / "trainer_state.json"
    meta = json.loads(state.read_text())
    meta["optimizer"]["param_groups"][0]["betas"] = [0.9]
    state.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"trainer_state.json .*'betas' is \[0.9\]"):
        tiny_run(out, 3, resume=True)


def test_errors_inside_json_files_name_the_file(tmp_path, minilm, run_folder):
    """Regression: a char tokenizer.json with a non-character entry, a config.json naming no
    attentive family, and a chat template that does not parse raised errors naming no file."""
    tok = tmp_path / "tokenizer.json"
    tok.write_text(json.dumps({"type": "char", "vocab": ["<pad>", "<s>", "</s>", "<unk>", None]}))
    with pytest.raises(ValueError, match="tokenizer.json: char vocabulary entries must be single characters"):
        load_tokenizer(tok)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"type": "char"}))
    with pytest.raises(ValueError, match="config.json: unknown model_type None"):
        attentive.load_config(config)
    folder = tokenizer_folder(tmp_path, minilm, {"chat_template": "{% for m in messages %}"})
    with pytest.raises(ValueError, match=r"tokenizer_config.json: chat template failed: "):
        PretrainedTokenizer.load(folder).apply_chat_template(USER)


@pytest.mark.parametrize(
    "record",
    [
        '{"split": "train", "loss": 1.0}',
        '{"step": "9", "split": "train", "loss": 2.0}',
        '{"step": 1, "split": "train", "loss": [1]}',
        "[1, 2]",
    ],
)
def test_resume_with_a_mangled_metrics_record_keeps_going(tmp_path, run_folder, record):
    """Regression (found by the long fuzz run): a metrics.jsonl record without a step made the loss
    curve raise KeyError at the end of a resumed run; a string step made the resume's truncation
    raise TypeError."""
    out = tmp_path / "run"
    shutil.copytree(run_folder, out)
    with open(out / "metrics.jsonl", "a") as f:
        f.write(record + "\n")
    tiny_run(out, 3, resume=True)
    assert (out / "loss.png").is_file() and checkpoint_dirs(out)[-1].name == "step-0000003"
