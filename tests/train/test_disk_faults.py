"""A run folder on a full disk or a read-only folder: training stops with one line naming the
folder, the last good checkpoint stays whole, nothing half-written is left, and ``--resume``
continues exactly once writes succeed again. Also the regressions the kill harness found."""

from __future__ import annotations

import errno
import json
import os
import stat
import warnings
from pathlib import Path

import pytest
import torch

import attentive
import attentive.checkpoint as checkpoint_module
import kill_harness as kh
from attentive.fileio import append_jsonl, atomic_write, read_jsonl
from attentive.train.average import write_average
from attentive.train.run_folder import RunFolder, RunFolderWriteError, checkpoint_dirs

STEPS = 8


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    torch.set_num_threads(1)
    kh.train_tiny(out, STEPS)
    return out


class Faults:
    """Fails the ``n``-th write under ``root`` with ``error``: a chunk written by ``os.write``
    (metrics), an ``fsync`` of a file (every atomic write: JSON, safetensors), or a safetensors
    ``save_file`` (which first writes half of the file, as a disk filling up would)."""

    def __init__(self, monkeypatch, root: Path, n: int, error: int = errno.ENOSPC):
        self.root, self.n, self.error, self.count = str(root), n, error, 0
        real_write, real_fsync, real_save = os.write, os.fsync, checkpoint_module.save_file

        def ours(fd: int) -> bool:
            try:
                return os.readlink(f"/proc/self/fd/{fd}").startswith(self.root)
            except OSError:
                return False

        def write(fd, data):
            if ours(fd) and self._due():
                half = real_write(fd, bytes(data[: len(data) // 2])) if len(data) > 1 else 0
                if half:
                    self.n = self.count + 1  # the short write goes through; the next one fails
                    return half
                self._raise()
            return real_write(fd, data)

        def fsync(fd):
            if ours(fd) and stat.S_ISREG(os.fstat(fd).st_mode) and self._due():
                self._raise()
            return real_fsync(fd)

        def save_file(tensors, filename, metadata=None):
            if str(filename).startswith(self.root) and self._due():
                real_save(tensors, filename, metadata=metadata)
                with open(filename, "r+b") as f:
                    f.truncate(os.path.getsize(filename) // 2)
                self._raise()
            return real_save(tensors, filename, metadata=metadata)

        monkeypatch.setattr(os, "write", write)
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(checkpoint_module, "save_file", save_file)

    def _due(self) -> bool:
        self.count += 1
        return self.count == self.n

    def _raise(self):
        raise OSError(self.error, os.strerror(self.error))


def _half_files(out: Path) -> list[str]:
    return kh.temp_entries(out)


def _check_stopped_cleanly(out: Path, err: BaseException, reason: str) -> None:
    assert isinstance(err, OSError)
    message = str(err)
    assert "\n" not in message and str(out) in message and reason in message, message
    assert not _half_files(out), _half_files(out)  # nothing half-written left behind
    for path in checkpoint_dirs(out):  # every checkpoint listed is whole and loads
        attentive.load(path)
        json.loads((path / "trainer_state.json").read_text())


# a step makes 10 writes: a metrics line, the run folder's weights and config, then the
# checkpoint's weights, config, trainer state (tensors, JSON). Fail train_config.json (1), a
# metrics line written short and then the run folder's weights (12), its config (15), the
# checkpoint's weights (16) and config (18), its trainer state (19, 21), results.json at the end (83)
@pytest.mark.parametrize("nth", [1, 12, 15, 16, 18, 19, 21, 83])
def test_full_disk_stops_cleanly_and_resume_continues(tmp_path, monkeypatch, reference, nth):
    out = tmp_path / "run"
    faults = Faults(monkeypatch, out, nth)
    with pytest.raises(OSError) as caught:
        kh.train_tiny(out, STEPS)
    assert faults.count >= nth
    _check_stopped_cleanly(out, caught.value, "no space left")
    monkeypatch.undo()  # space comes back
    kh.train_tiny(out, STEPS, resume=True)
    kh.check_finished(out, reference)


def test_no_space_error_is_one_line_from_the_command_line(tmp_path, monkeypatch, capsys):
    """What ``attentive train`` prints: the CLI's one-line error, exit status 2."""
    from attentive.cli import train as train_command
    from attentive.cli.main import main

    class Recipe:
        task, model = kh.tiny_task(), kh.tiny_model()
        train_config = kh.tiny_config(tmp_path / "run", STEPS)

    monkeypatch.setattr(train_command, "get_recipe", lambda name: type("S", (), {"build": lambda self, o: Recipe()})())
    Faults(monkeypatch, tmp_path / "run", 5)
    assert main(["train", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("attentive train: error: cannot write") and "no space left on device" in err, err
    assert str(tmp_path / "run") in err and "\n" not in err


def _deny_writes(monkeypatch, root: Path) -> None:
    """A read-only folder, simulated: creating, replacing or renaming anything under ``root``
    fails with EACCES (chmod does not stop root)."""
    import shutil
    import tempfile

    root = str(root)

    def deny(real, *path_args):
        def call(*args, **kwargs):
            if any(str(args[i]).startswith(root) for i in path_args if i < len(args)):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(args[path_args[0]]))
            return real(*args, **kwargs)

        return call

    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and str(dir).startswith(root):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    real_open = os.open

    def os_open(path, flags, *args, **kwargs):
        if str(path).startswith(root) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(os, "replace", deny(os.replace, 0, 1))
    monkeypatch.setattr(os, "rename", deny(os.rename, 0, 1))
    monkeypatch.setattr(os, "mkdir", deny(os.mkdir, 0))
    monkeypatch.setattr(os, "unlink", deny(os.unlink, 0))
    monkeypatch.setattr(shutil, "rmtree", deny(shutil.rmtree, 0))


def _snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_read_only_run_folder_is_a_clean_error(tmp_path, monkeypatch, reference):
    """Simulated (works as root): resuming in a folder that cannot be written."""
    out = tmp_path / "run"
    kh.train_tiny(out, 4)
    before = _snapshot(out)
    _deny_writes(monkeypatch, out)
    with pytest.raises(OSError) as caught:
        kh.train_tiny(out, STEPS, resume=True)
    _check_stopped_cleanly(out, caught.value, "permission denied")
    monkeypatch.undo()
    assert _snapshot(out) == before  # nothing changed, the last good checkpoint intact
    kh.train_tiny(out, STEPS, resume=True)
    kh.check_finished(out, reference)


def test_fresh_run_in_a_read_only_folder_is_a_clean_error(tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    _deny_writes(monkeypatch, out)
    with pytest.raises(RunFolderWriteError, match=f"in run folder {out}: permission denied"):
        kh.train_tiny(out, STEPS)
    monkeypatch.undo()
    assert list(out.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="chmod does not stop root from writing; the simulated test covers it")
def test_chmod_read_only_run_folder_is_a_clean_error(tmp_path):
    out = tmp_path / "run"
    kh.train_tiny(out, 4)
    modes = {}
    for path in [out, *out.rglob("*")]:
        if path.is_dir():
            modes[path] = path.stat().st_mode
            path.chmod(0o555)
    try:
        with pytest.raises(OSError) as caught:
            kh.train_tiny(out, STEPS, resume=True)
        assert "\n" not in str(caught.value) and str(out) in str(caught.value)
        attentive.load(checkpoint_dirs(out)[-1])
    finally:
        for path, mode in modes.items():
            path.chmod(mode)


# ----------------------------------------------------------------------------- regressions


def test_safetensors_files_get_normal_permissions(tmp_path):
    """safetensors' save_file replaces the file it is given with a fresh 0600 one, so every
    checkpoint's weights were unreadable to other users (the chmod came before the write)."""
    kh.train_tiny(tmp_path, 2)
    umask = os.umask(0o022)
    os.umask(umask)
    for path in [tmp_path / "model.safetensors", *checkpoint_dirs(tmp_path)[-1].iterdir()]:
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


def test_a_short_write_of_a_metrics_record_is_finished_not_torn(tmp_path, monkeypatch):
    """A disk filling up makes write(2) write part of a record and return its length; the rest
    was dropped silently (a torn record). It is written on, so a full disk raises instead."""
    real = os.write
    calls = []

    def short(fd, data):
        calls.append(len(data))
        return real(fd, bytes(data[:5]))  # at most 5 bytes a call

    monkeypatch.setattr(os, "write", short)
    append_jsonl(tmp_path / "m.jsonl", {"step": 1, "loss": 2.5})
    monkeypatch.undo()
    assert read_jsonl(tmp_path / "m.jsonl") == [{"step": 1, "loss": 2.5}] and len(calls) > 1


def test_failed_checkpoint_write_leaves_no_temporary_folder(tmp_path):
    run = RunFolder(tmp_path, keep=2)

    def fill(folder):
        (folder / "model.safetensors").write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(RunFolderWriteError, match=f"checkpoint step-0000003 in run folder {tmp_path}: no space left"):
        run.write_checkpoint(3, fill)
    assert list((tmp_path / "checkpoints").iterdir()) == []


def test_temporary_files_a_kill_left_are_cleared_on_the_next_start(tmp_path):
    """A kill inside an atomic write of the run folder's own files (the model at the top, the
    metrics rewrite) left ``.NAME.XXXX.tmp`` files, as large as the model, which nothing removed."""
    kh.train_tiny(tmp_path, 4)
    (tmp_path / ".model.safetensors.abc123.tmp").write_bytes(b"x" * 100)
    (tmp_path / "checkpoints" / "step-0000005.tmp").mkdir()
    kh.train_tiny(tmp_path, 6, resume=True)
    assert not kh.temp_entries(tmp_path)


def test_a_checkpoint_moved_aside_for_a_new_copy_comes_back_after_a_kill(tmp_path):
    """Saving a step again moves the old copy to ``step-N.old.tmp`` first; a kill before the new
    copy is renamed in left the step only there, and the next save deleted it."""
    kh.train_tiny(tmp_path, 4)
    ckpt = tmp_path / "checkpoints"
    (ckpt / "step-0000004").rename(ckpt / "step-0000004.old.tmp")  # the state such a kill leaves
    (ckpt / "step-0000004.tmp").mkdir()
    RunFolder(tmp_path, keep=kh.KEEP).create()  # what the next start does first
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step-0000003", "step-0000004"]
    attentive.load(ckpt / "step-0000004")
    assert not kh.temp_entries(tmp_path)


def test_rotation_never_lists_a_half_deleted_checkpoint(tmp_path, monkeypatch):
    """Old checkpoints were deleted in place: a kill mid-deletion left a listed checkpoint with
    files missing (``attentive average --last N`` then read it). Now they leave the listing first."""
    import shutil

    kh.train_tiny(tmp_path, 3)
    seen = []
    real = shutil.rmtree

    def watching(path, *args, **kwargs):
        if Path(path).exists():
            seen.append((Path(path), checkpoint_dirs(tmp_path)))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", watching)
    kh.train_tiny(tmp_path, 5, resume=True)
    monkeypatch.undo()
    # no folder was deleted while it was listed as a checkpoint
    assert seen and all(path not in listed for path, listed in seen), seen


def test_metrics_of_a_run_killed_before_its_first_checkpoint_are_not_doubled(tmp_path):
    """With no checkpoint to resume from, the next start appended to the killed run's records,
    so its first steps were logged twice."""
    tmp_path.mkdir(exist_ok=True)
    for step in (1, 2):
        append_jsonl(tmp_path / "metrics.jsonl", {"step": step, "split": "train", "loss": 9.0})
    kh.train_tiny(tmp_path, 3, resume=True)
    assert sorted(kh.train_losses(tmp_path)) == [1, 2, 3]  # train_losses refuses a doubled step
    assert 9.0 not in kh.train_losses(tmp_path).values()


def test_average_output_is_whole_or_absent(tmp_path, monkeypatch):
    """``write_average`` copied config.json into the output and then wrote the weights: a
    failure (or kill) in between left a folder with a config and no weights."""
    kh.train_tiny(tmp_path / "run", 3)
    ckpts = checkpoint_dirs(tmp_path / "run")

    def fail(tensors, filename, metadata=None):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint_module, "save_file", fail)
    with pytest.raises(OSError):
        write_average(ckpts, tmp_path / "avg")
    assert not (tmp_path / "avg").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # and no temporary folder either
    monkeypatch.undo()
    write_average(ckpts, tmp_path / "avg")
    attentive.load(tmp_path / "avg")


def test_atomic_write_cleans_up_after_a_failed_fsync(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(OSError):
        atomic_write(tmp_path / "x.json", lambda tmp: Path(tmp).write_text("{}"))
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(tmp_path.iterdir()) == []


def test_half_written_checkpoint_is_never_picked_as_the_newest(tmp_path, reference):
    """What a kill inside a checkpoint write leaves (a ``step-N.tmp`` folder holding a truncated
    safetensors file and half a JSON file) is not listed, and ``--resume`` takes the newest whole one."""
    kh.train_tiny(tmp_path, 4)
    half = tmp_path / "checkpoints" / "step-0000005.tmp"
    half.mkdir()
    newest = checkpoint_dirs(tmp_path)[-1]
    for name in kh.WEIGHTS_FILES:
        data = (newest / name).read_bytes()
        (half / name).write_bytes(data[: len(data) // 2])
    assert checkpoint_dirs(tmp_path)[-1] == newest
    kh.train_tiny(tmp_path, STEPS, resume=True)
    kh.check_finished(tmp_path, reference)


def test_run_folder_model_is_never_behind_the_newest_checkpoint(tmp_path, monkeypatch):
    """The run folder's own model files were written after the checkpoint: a kill between the two
    at the last step left ``attentive.load(run)`` one checkpoint behind for good, since resuming
    a finished run saves nothing (found by the kill harness: losses equal, weights not)."""
    from attentive.train.run_folder import RunFolder as Folder

    real = Folder.write_checkpoint

    def then_killed(self, step, fill):
        final = real(self, step, fill)
        if step == 4:
            raise KeyboardInterrupt  # the process dies right after the last checkpoint is in place
        return final

    monkeypatch.setattr(Folder, "write_checkpoint", then_killed)
    with pytest.raises(KeyboardInterrupt):
        kh.train_tiny(tmp_path, 4)
    monkeypatch.undo()
    kh.train_tiny(tmp_path, 4, resume=True)
    root, newest = attentive.load(tmp_path).state_dict(), attentive.load(checkpoint_dirs(tmp_path)[-1]).state_dict()
    assert checkpoint_dirs(tmp_path)[-1].name == "step-0000004"
    assert all(torch.equal(root[k], newest[k]) for k in newest)
