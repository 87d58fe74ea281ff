"""Atomic file writes: a reader (or a rank racing to write the same file) never sees half a file.

Each writer gets its own temporary file beside the target (``mkstemp``), fsyncs it and renames
it over the target, so concurrent writers of identical content (ranks under torchrun caching the
same dataset or tokenizer) cannot trip over one another's temporary file. JSON-lines files
(metrics) are appended a record at a time and read back tolerating a torn last record.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[str], object]) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        # mkstemp creates the file 0600 (and writers such as safetensors' save_file replace the
        # file with a fresh 0600 one): give the result the permissions a plain open() would
        os.chmod(tmp, 0o666 & ~_current_umask())
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def append_jsonl(path: str | Path, record: dict) -> None:
    """Append one JSON record as one line, written and flushed in a single call.

    A kill can still cut the line short; ``read_jsonl`` drops such a torn last line.
    """
    path = Path(path)
    line = (json.dumps(record) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        if os.fstat(fd).st_size and _last_byte(path) != b"\n":
            line = b"\n" + line  # a torn record before us: start ours on its own line
        while line:  # a short write (a disk filling up) goes on; the next write raises ENOSPC
            line = line[os.write(fd, line) :]
    finally:
        os.close(fd)


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


def read_jsonl(path: str | Path) -> list[dict]:
    """The records of a JSON-lines file ([] when there is none).

    A line that does not parse (a record torn by a kill mid-write) is skipped with a warning
    naming the file and line, so a run folder stays readable and resumable after any crash.
    """
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):  # RecursionError: [[[[...]]]] nested too deeply
            warnings.warn(f"{path}:{number}: skipped a torn or corrupt record", stacklevel=2)
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


@contextlib.contextmanager
def atomic_directory(path: str | Path):
    """Yield a fresh temporary folder beside ``path``; once the block ends without an error it
    replaces ``path`` in one rename (an earlier ``path`` is moved aside first, then deleted).
    On an error the temporary folder is removed: ``path`` appears whole or not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_current_umask())  # mkdtemp makes it 0700
        yield tmp
        old = None
        if path.exists() or path.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
