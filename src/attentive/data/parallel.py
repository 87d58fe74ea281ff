"""Parallel corpora: aligned line files (plain or .gz), TSV pairs, and bundled Multi30k.

A corpus is named by a spec (``load_pairs``):

* ``multi30k:SPLIT`` -- the bundled Multi30k task-1 files (train, val, test_2016_flickr,
  test_2017_flickr) in the direction ``src_lang -> tgt_lang``;
* ``PREFIX.{lang}`` -- aligned files whose names differ only in the language code
  (``data/train.{lang}.gz`` reads ``data/train.de.gz`` and ``data/train.en.gz``);
* ``SRC_FILE,TGT_FILE`` -- two aligned files, plain or gzip;
* ``FILE.tsv`` (or ``.tsv.gz``) -- ``source<TAB>target`` lines.

Lines are split on ``\\n`` only (never ``str.splitlines``, which also breaks on U+2028 and
friends and would silently misalign the two sides). A pair with an empty side is skipped
and counted, never shifted.
"""

from __future__ import annotations

import gzip
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from attentive.data.bundle import Traversable, bundled_file

PathLike = str | os.PathLike | Traversable

MULTI30K_SPLITS = ("train", "val", "test_2016_flickr", "test_2017_flickr")
MULTI30K_LANGS = ("de", "en")


@dataclass(frozen=True)
class ParallelCorpus:
    """Aligned (source, target) pairs, and how many pairs were dropped for an empty side."""

    pairs: list[tuple[str, str]]
    skipped_empty: int = 0
    origin: str = field(default="", compare=False)

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.pairs)

    def __getitem__(self, i: int) -> tuple[str, str]:
        return self.pairs[i]


def _read_lines(path: PathLike) -> list[str]:
    """Decoded lines of a UTF-8 text file, .gz allowed; errors name the file (and line)."""
    res = path if hasattr(path, "read_bytes") else Path(path)  # Path or bundled Traversable
    raw = res.read_bytes()
    if res.name.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: not a readable gzip file ({e})") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]  # UTF-8 byte-order mark
    chunks = raw.split(b"\n")
    if chunks and chunks[-1] == b"":
        chunks.pop()  # final newline ends the last line; it does not start a new one
    if not chunks:
        raise ValueError(f"{path}: file is empty")
    lines = []
    for lineno, chunk in enumerate(chunks, start=1):
        try:
            lines.append(chunk.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as e:
            raise ValueError(
                f"{path}:{lineno}: invalid UTF-8 (byte {chunk[e.start : e.start + 1]!r} at column {e.start + 1})"
            ) from None
    return lines


def _keep_nonempty(pairs: list[tuple[str, str]], origin: str) -> ParallelCorpus:
    """Drop pairs with an empty side (after stripping) and report how many."""
    kept = [(s.strip(), t.strip()) for s, t in pairs]
    kept = [(s, t) for s, t in kept if s and t]
    skipped = len(pairs) - len(kept)
    if skipped:
        warnings.warn(f"{origin}: skipped {skipped} pair(s) with an empty side", stacklevel=3)
    return ParallelCorpus(kept, skipped, origin)


def read_parallel(src_path: PathLike, tgt_path: PathLike) -> ParallelCorpus:
    """Pairs from two aligned files (line i of one translates line i of the other)."""
    src, tgt = _read_lines(src_path), _read_lines(tgt_path)
    if len(src) != len(tgt):
        raise ValueError(f"line counts differ: {src_path} has {len(src)} lines, {tgt_path} has {len(tgt)}")
    return _keep_nonempty(list(zip(src, tgt, strict=True)), f"{src_path} + {tgt_path}")


def read_tsv(path: PathLike) -> ParallelCorpus:
    """Pairs from a file of ``source<TAB>target`` lines; blank lines are skipped and counted."""
    pairs = []
    for lineno, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            pairs.append(("", ""))  # counted as skipped
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise ValueError(f"{path}:{lineno}: expected 2 tab-separated fields (source, target), found {len(fields)}")
        pairs.append((fields[0], fields[1]))
    return _keep_nonempty(pairs, str(path))


def load_multi30k(split: str, src: str = "de", tgt: str = "en") -> list[tuple[str, str]]:
    """Bundled Multi30k task-1 pairs: train 29,000, val 1,014, test_2016/2017_flickr 1,000 each."""
    if split not in MULTI30K_SPLITS:
        raise ValueError(f"unknown Multi30k split {split!r}; expected one of {MULTI30K_SPLITS}")
    for lang in (src, tgt):
        if lang not in MULTI30K_LANGS:
            raise ValueError(f"Multi30k language {lang!r} is not bundled; expected one of {MULTI30K_LANGS}")
    if src == tgt:
        raise ValueError(f"source and target language are both {src!r}")
    src_file = bundled_file("multi30k", f"{split}.{src}.gz")
    tgt_file = bundled_file("multi30k", f"{split}.{tgt}.gz")
    return read_parallel(src_file, tgt_file).pairs


# ----------------------------------------------------------------------------- corpus specs


def load_pairs(spec: str, src_lang: str = "de", tgt_lang: str = "en") -> ParallelCorpus:
    """Read a corpus spec (see the module docstring). Errors name the file and line."""
    spec = spec.strip()
    if not spec:
        raise ValueError("empty corpus spec; expected multi30k:SPLIT, PREFIX.{lang}, SRC,TGT or FILE.tsv")
    if spec.startswith("multi30k:"):
        split = spec.split(":", 1)[1]
        if split not in MULTI30K_SPLITS:
            raise ValueError(f"unknown Multi30k split {split!r} in {spec!r}; expected one of {MULTI30K_SPLITS}")
        return ParallelCorpus(load_multi30k(split, src_lang, tgt_lang), 0, spec)
    if "{lang}" in spec:
        src, tgt = spec.replace("{lang}", src_lang), spec.replace("{lang}", tgt_lang)
    elif "," in spec:
        src, tgt = (p.strip() for p in spec.split(",", 1))
    elif spec.endswith((".tsv", ".tsv.gz")):
        _exists(spec)
        return read_tsv(spec)
    else:
        raise ValueError(f"corpus spec {spec!r} is not multi30k:SPLIT, PREFIX.{{lang}}, SRC_FILE,TGT_FILE or FILE.tsv")
    _exists(src)
    _exists(tgt)
    return read_parallel(src, tgt)


def _exists(path: str) -> None:
    if not Path(path).is_file():
        raise FileNotFoundError(f"corpus file {path} does not exist")


def corpus_name(spec: str) -> str:
    """A short label for results: ``multi30k:test_2016_flickr`` -> ``test_2016_flickr``."""
    return spec.split(":", 1)[1] if spec.startswith("multi30k:") else Path(spec.split(",")[0]).name
