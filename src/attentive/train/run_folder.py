"""The run folder: what a training run leaves on disk, and the one place that writes it.

::

    out/config.json, model.safetensors, tokenizer.json   the newest model, ready for inference
    out/checkpoints/step-0001000/                        full checkpoints (model + trainer state)
    out/metrics.jsonl                                    one JSON record per log / evaluation
    out/loss.png, train_config.json, results.json

A checkpoint is written into ``step-N.tmp`` and renamed into place only once every file is on
disk, so a run killed at any moment leaves complete checkpoints and at most a ``.tmp`` folder,
which listing ignores and the next start clears (as it clears the temporary files a kill leaves
beside the run folder's own files). Only the newest ``keep`` checkpoints stay; an old one is
renamed to ``.tmp`` before it is deleted, so a kill mid-deletion never leaves half a checkpoint
listed. Metrics are appended a record at a time; a record torn by a kill is dropped when read.
A write that fails (a full disk, a read-only folder) is a one-line ``RunFolderWriteError`` naming
the folder; the checkpoints already written stay as they were.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import CONFIG_NAME, WEIGHTS_NAME, save_json, save_tensors
from ..fileio import append_jsonl, atomic_write_text, read_jsonl
from ..viz.curves import plot_loss_curve

METRICS = "metrics.jsonl"
RUN_FILES = (METRICS, "results.json", "loss.png")  # what --overwrite clears beside the checkpoints


_CHECKPOINT_NAME = re.compile(r"step-\d+")  # step-0001000; not step-N.tmp, not a stray step-foo


class RunFolderError(ValueError):
    """A fresh run pointed at a folder that already holds another run."""


class RunFolderWriteError(OSError):
    """A write into the run folder failed (no space left, a read-only folder): one line naming it."""


def checkpoint_dirs(root: str | Path) -> list[Path]:
    """Complete checkpoints of the run folder ``root`` (temporary folders excluded), oldest first."""
    folder = Path(root) / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and _CHECKPOINT_NAME.fullmatch(p.name))


def checkpoint_step(path: Path) -> int:
    """``step-0001000`` -> 1000."""
    return int(path.name.split("-", 1)[1])


class RunFolder:
    """The files of one run. Every method that writes is for the main rank only."""

    def __init__(self, root: str | Path, keep: int = 5):
        if not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep_checkpoints must be an integer >= 1, got {keep!r}")
        self.root, self.keep = Path(root), keep

    @property
    def metrics_path(self) -> Path:
        return self.root / METRICS

    def checkpoints(self) -> list[Path]:
        return checkpoint_dirs(self.root)

    def prepare(self, resume: bool, overwrite: bool) -> None:
        """A fresh run never mixes with an old one: its checkpoints would win a later ``--resume``
        and its metrics would run on in ``metrics.jsonl``. So a folder holding a run is an error
        unless the caller resumes it or asks to overwrite it (which deletes it)."""
        found = self.checkpoints()
        if not found:
            # records of a run killed before its first checkpoint: those steps run again
            with self.writing("metrics"):
                self.metrics_path.unlink(missing_ok=True)
            return
        if resume:
            return
        if not overwrite:
            raise RunFolderError(
                f"run folder {self.root} already holds a run (newest checkpoint: {found[-1].name}); "
                "pass --resume to continue it, --overwrite to start it again, or --out for a new folder"
            )
        with self.writing("(deleting the earlier run)"):
            shutil.rmtree(self.root / "checkpoints")
            for name in RUN_FILES:
                (self.root / name).unlink(missing_ok=True)

    def create(self) -> None:
        """Make the folder, and clear what a run killed while writing left: temporary files beside
        the run's files, ``step-N.tmp`` folders (a checkpoint half written, or half deleted). A
        checkpoint moved aside to be replaced by a new copy of the same step goes back in place."""
        with self.writing("the run folder"):
            self.root.mkdir(parents=True, exist_ok=True)
            for stale in self.root.glob(".*.tmp"):  # fileio's atomic writes: ``.NAME.XXXXXXXX.tmp``
                if stale.is_file():
                    stale.unlink(missing_ok=True)
            root = self.root / "checkpoints"
            if root.is_dir():
                for old in root.glob("step-*.old.tmp"):
                    final = root / old.name[: -len(".old.tmp")]
                    if not final.exists():
                        old.rename(final)
                for stale in root.glob("step-*.tmp"):
                    shutil.rmtree(stale, ignore_errors=True)

    @contextlib.contextmanager
    def writing(self, what: str):
        """Turn an OSError of the writes inside into a one-line RunFolderWriteError naming the folder."""
        try:
            yield
        except RunFolderWriteError:
            raise
        except OSError as err:
            reason = (err.strerror or str(err)).lower()  # "no space left on device", "permission denied"
            error = RunFolderWriteError(f"cannot write {what} in run folder {self.root}: {reason}")
            error.errno = err.errno
            raise error from err

    # ------------------------------------------------------------------ checkpoints
    def write_checkpoint(self, step: int, fill: Callable[[Path], None]) -> Path:
        """``fill(folder)`` writes a checkpoint's files; they appear as ``checkpoints/step-N``
        all at once. Older checkpoints beyond the newest ``keep`` are deleted."""
        root = self.root / "checkpoints"
        final = root / f"step-{step:07d}"
        tmp = root / f"step-{step:07d}.tmp"
        with self.writing(f"checkpoint {final.name}"):
            root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)  # left by a run killed while writing
            try:
                tmp.mkdir()
                fill(tmp)
                _fsync_dir(tmp)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)  # the failed write leaves nothing behind
                raise
            old = root / f"step-{step:07d}.old.tmp"
            shutil.rmtree(old, ignore_errors=True)
            if final.exists():  # the same step saved again: move the old copy aside, never delete first
                final.rename(old)
            tmp.rename(final)
            _fsync_dir(root)
            shutil.rmtree(old, ignore_errors=True)
            for stale in self.checkpoints()[: -self.keep]:
                # out of the listing in one rename first: a kill mid-deletion leaves a .tmp folder
                doomed = stale.with_name(stale.name + ".del.tmp")
                stale.rename(doomed)
                shutil.rmtree(doomed, ignore_errors=True)
        return final

    @staticmethod
    def write_model(directory: Path, weights: dict[str, torch.Tensor], config: dict[str, Any]) -> None:
        """``model.safetensors`` + ``config.json``: the layout ``attentive.load`` reads."""
        save_tensors(directory / WEIGHTS_NAME, weights, metadata={"format": "pt"})
        save_json(directory / CONFIG_NAME, config)

    # ------------------------------------------------------------------ metrics and results
    def log(self, record: dict[str, Any]) -> None:
        with self.writing(METRICS):
            append_jsonl(self.metrics_path, record)

    def metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.metrics_path)

    def truncate_metrics(self, step: int) -> None:
        """Keep the records up to ``step`` (resume: the later ones belong to the lost future),
        dropping any record a kill tore."""
        if not self.metrics_path.exists():
            return
        kept = [r for r in self.metrics() if not _later(r.get("step"), step)]
        with self.writing(METRICS):
            atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))

    def write_json(self, name: str, data: Any) -> None:
        with self.writing(name):
            save_json(self.root / name, data)

    def plot(self, title: str) -> None:
        if self.metrics_path.exists():
            with self.writing("loss.png"):
                plot_loss_curve(self.metrics_path, self.root / "loss.png", title=title)


def _later(value: Any, step: int) -> bool:
    """Whether a record's step is after ``step`` (a record with no number for its step is kept)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > step


def _fsync_dir(path: Path) -> None:
    """Make a rename durable: flush the directory entry (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
