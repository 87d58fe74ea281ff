"""Tiny models saved as folders, and a real ``attentive serve`` in a subprocess, for the serve tests.

Every model here is random (no training) but made with spread-out weights, so the gap between
its two most likely tokens is far above float rounding: greedy output is the same in any batch.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import torch

from attentive.checkpoint import save_model
from attentive.models import DecoderLM, DecoderLMConfig, EncoderDecoder, EncoderDecoderConfig
from attentive.models.vit import ViTConfig, VisionTransformer

API_KEY = "test-key"  # the key the shared tiny server requires
SRC = Path(__file__).resolve().parents[2] / "src"
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TEXT = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
    "foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, "
    "it was the season of Darkness, it was the spring of hope, it was the winter of despair."
)
SENTENCES = [
    "Ein Hund rennt durch den Park.",
    "Eine Frau sitzt auf einer Bank.",
    "Zwei Kinder spielen im Sand.",
    "Ein Mann liest ein Buch.",
    "A dog runs through the park.",
    "A woman sits on a bench.",
]


def _spread(model: torch.nn.Module, seed: int, std: float = 0.5) -> torch.nn.Module:
    """Re-draw every matrix with a large std (norm weights stay 1): clear argmax gaps."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=generator) * std / p.shape[-1] ** 0.5 * 4)
    return model.eval()


def byte_bpe(vocab_size: int = 320, specials=("<|endoftext|>", "<|im_start|>", "<|im_end|>")):
    """A Hugging Face byte-level BPE ``tokenizers.Tokenizer`` learnt from a paragraph."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(specials),
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    hf.train_from_iterator([TEXT] * 4, trainer=trainer)
    return hf


def make_chat_lm(folder: Path, max_len: int = 512, seed: int = 0) -> Path:
    """A 2-layer LLaMA-style LM with a ChatML template (an attentive checkpoint + HF tokenizer files)."""
    from attentive.interop.pretrained import Pretrained
    from attentive.text import PretrainedTokenizer

    hf = byte_bpe()
    tokenizer = PretrainedTokenizer(
        hf, bos_token="<|endoftext|>", eos_tokens=["<|im_end|>"], pad_token="<|endoftext|>", chat_template=CHATML
    )
    config = DecoderLMConfig(
        vocab_size=hf.get_vocab_size(),
        num_layers=2,
        d_model=32,
        num_heads=4,
        d_ff=64,
        max_len=max_len,
        dropout=0.0,
        attention_dropout=0.0,
        positional="rope",
        norm="rmsnorm",
        ffn="swiglu",
        tie_embeddings=False,
    )
    torch.manual_seed(seed)
    model = _spread(DecoderLM(config), seed)
    with torch.no_grad():  # single bytes and special tokens get logit 0, below the best merged piece:
        model.head.weight[: len(pre_tokenizers_alphabet()) + 3] = 0  # readable text, no early end
    Pretrained(model, tokenizer, "test", "attentive").save(folder)
    return folder


def pre_tokenizers_alphabet() -> list[str]:
    from tokenizers import pre_tokenizers

    return pre_tokenizers.ByteLevel.alphabet()


def make_encoder(folder: Path, seed: int = 4) -> Path:
    """A 1-layer mean-pooled, normalised sentence encoder with a byte-level BPE tokenizer."""
    from attentive.interop.pretrained import Pretrained
    from attentive.models.encoder import Encoder, EncoderConfig
    from attentive.text import PretrainedTokenizer

    hf = byte_bpe(specials=("[PAD]",))
    config = EncoderConfig(
        vocab_size=hf.get_vocab_size(),
        num_layers=1,
        d_model=32,
        num_heads=4,
        d_ff=64,
        max_len=64,
        dropout=0.0,
        attention_dropout=0.0,
    )
    torch.manual_seed(seed)
    Pretrained(Encoder(config).eval(), PretrainedTokenizer(hf, pad_token="[PAD]"), "test", "attentive").save(folder)
    return folder


def make_char_lm(folder: Path, seed: int = 1) -> Path:
    """A GPT-2-shaped character LM saved as a run folder (config.json, model.safetensors, tokenizer.json)."""
    from attentive.text.char import CharTokenizer
    from attentive.text.special import SPECIAL_TOKENS

    tokenizer = CharTokenizer.train(TEXT)
    config = DecoderLMConfig(
        vocab_size=tokenizer.vocab_size,
        num_layers=1,
        d_model=32,
        num_heads=2,
        d_ff=64,
        max_len=128,
        dropout=0.0,
        attention_dropout=0.0,
    )
    torch.manual_seed(seed)
    model = _spread(DecoderLM(config), seed)
    with torch.no_grad():
        model.head.weight[: len(SPECIAL_TOKENS)] = 0  # no special tokens in the output (tied: as input, neither)
    save_model(model, folder)
    tokenizer.save(folder)
    return folder


def make_translator(folder: Path, seed: int = 2) -> Path:
    """A 1+1-layer encoder-decoder with an attentive BPE tokenizer, as a translation run leaves it."""
    from attentive.text.bpe import BPETokenizer

    tokenizer = BPETokenizer.train(SENTENCES * 3, vocab_size=300, min_frequency=1)
    config = EncoderDecoderConfig(
        src_vocab_size=tokenizer.vocab_size,
        tgt_vocab_size=tokenizer.vocab_size,
        d_model=32,
        num_heads=4,
        d_ff=64,
        num_encoder_layers=1,
        num_decoder_layers=1,
        max_len=48,
        dropout=0.0,
        attention_dropout=0.0,
    )
    torch.manual_seed(seed)
    save_model(_spread(EncoderDecoder(config), seed), folder)
    tokenizer.save(folder)
    return folder


def make_vit(folder: Path, seed: int = 3) -> Path:
    """A 1-layer ViT for 28x28 grey digits, as the vit-mnist recipe's run folder holds it."""
    config = ViTConfig(num_layers=1, d_model=32, num_heads=2, d_ff=64, dropout=0.0, attention_dropout=0.0)
    torch.manual_seed(seed)
    save_model(_spread(VisionTransformer(config), seed, std=0.2), folder)
    return folder


# ----------------------------------------------------------------------------- a server in a subprocess


def die_with_parent() -> None:
    """In the child, before exec: Linux sends it SIGTERM when the test process dies, however it
    dies, so no server outlives its tests."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: stop() still ends it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m attentive serve ...`` on a free loopback port; ``stop()`` ends it (bounded waits)."""

    def __init__(
        self,
        models: list[str],
        *args: str,
        api_key: str | None = None,
        log: Path | None = None,
        ready_timeout: float = 90.0,
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_key = api_key
        env = dict(
            os.environ,
            PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            OMP_NUM_THREADS="1",
            OMP_WAIT_POLICY="PASSIVE",
            PYTHONUNBUFFERED="1",
        )
        env.pop("ATTENTIVE_API_KEY", None)
        command = [
            sys.executable,
            "-m",
            "attentive",
            "serve",
            "--port",
            str(self.port),
            "--threads",
            "1",
            "--log-level",
            "warning",
            *args,
        ]
        for spec in models:
            command += ["--model", spec]
        if api_key:
            command += ["--api-key", api_key]
        self.log = log
        self._log_file = open(log, "w") if log else subprocess.DEVNULL
        self.process = subprocess.Popen(
            command, env=env, stdout=self._log_file, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
        )
        self._wait_ready(ready_timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}: {self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the server did not answer /health within {timeout} s: {self.tail()}")

    def tail(self) -> str:
        if self.log is None or not Path(self.log).exists():
            return "(no log)"
        return Path(self.log).read_text()[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self._log_file is not subprocess.DEVNULL:
            self._log_file.close()


# ----------------------------------------------------------------------------- raw HTTP (what a client library hides)


def http(
    server: Server,
    method: str,
    path: str,
    body: bytes | str | dict | None = None,
    headers: dict | None = None,
    key: str | None = "default",
    timeout: float = 30.0,
):
    """(status, headers, body bytes) of one request over a fresh connection."""
    import http.client
    import json

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    headers = dict(headers or {})
    if isinstance(body, dict):
        body = json.dumps(body)
        headers.setdefault("Content-Type", "application/json")
    key = server.api_key if key == "default" else key
    if key:
        headers.setdefault("Authorization", f"Bearer {key}")
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def sse_events(raw: bytes) -> list:
    """``data: ...`` events of a Server-Sent Events body; ``[DONE]`` stays a string."""
    import json

    text = raw.decode()
    assert text.endswith("\n\n"), text[-50:]
    events = []
    for block in text.split("\n\n")[:-1]:
        assert block.startswith("data: "), block
        data = block[len("data: ") :]
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


def metric(server: Server, name: str, **labels) -> float:
    """One sample of ``/metrics`` (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    _, _, body = http(server, "GET", "/metrics")
    total = 0.0
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def multipart(
    fields: dict[str, str], file_field: str, filename: str, data: bytes, content_type: str = "application/octet-stream"
) -> tuple[bytes, str]:
    """A multipart/form-data body with text ``fields`` and one file: (body, Content-Type header)."""
    import uuid

    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"
