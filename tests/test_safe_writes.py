"""Writes that nothing outside the writer can turn against a file: a scoring shard's `.partial` file
and a training run's lock are never written through a symbolic link; the temporary files that
writers killed mid-write (kill -9) leave are removed by the next write of the same file; a full disk
during a checkpoint is one line and leaves the last whole checkpoint for the resume."""

import builtins
import errno
import io
import os
import signal
import subprocess
import sys

import pytest
from test_scoring import SIZE, candidates, digits, settings  # noqa: F401 (fixtures)

from blockswap import BlockswapError
from blockswap.cli import main
from blockswap.locks import exclusive, run_lock
from blockswap.provenance import atomic_write_text, temporary_name
from blockswap.search.scoring import score_candidates
from blockswap.training import checkpoint
from blockswap.training.checkpoint import CHECKPOINT_FORMAT, safe_load
from blockswap.training.run_files import METRICS_FILE
from blockswap.training.runs import CHECKPOINT_FILE

# --- a .partial file (and a run lock) that is a symbolic link ---------------------------------------


@pytest.mark.parametrize("points_at", ["another file", "the shard itself", "nowhere"])
def test_a_partial_file_that_is_a_link_is_never_written_through(tmp_path, digits, candidates, points_at):  # noqa: F811
    """Following the link would append the scores to whatever it points at (creating it if need be)."""
    out = tmp_path / "s.csv"
    partial = tmp_path / "s.csv.partial"
    target = {"another file": tmp_path / "notes.txt", "the shard itself": out, "nowhere": tmp_path / "gone"}[points_at]
    if points_at == "another file":
        target.write_text("mine\n")
    partial.symlink_to(target)
    with pytest.raises(BlockswapError, match=rf"{partial} is a symbolic link; it is never written through"):
        score_candidates(candidates.head(1), settings(), digits, out, progress=False)
    assert partial.is_symlink() and not out.exists()
    assert (target.read_text() == "mine\n") if points_at == "another file" else not target.exists()


def test_a_partial_link_is_one_line_from_the_command_line(tmp_path, capsys):
    argv = ["--arch", "wrn-10-2", "--dataset", "digits", "--image-size", str(SIZE)]
    assert main(["sample", *argv, "--budget", "60000", "--samples", "2", "--out", str(tmp_path / "c.csv")]) == 0
    (tmp_path / "s.csv.partial").symlink_to(tmp_path / "c.csv")
    before = (tmp_path / "c.csv").read_bytes()
    capsys.readouterr()
    code = main(
        ["score", str(tmp_path / "c.csv"), *argv, "--device", "cpu", "--quiet", "--out", str(tmp_path / "s.csv")]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "is a symbolic link" in err, err
    assert (tmp_path / "c.csv").read_bytes() == before and not (tmp_path / "s.csv").exists()


def test_locks_refuse_links_and_odd_files(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("x")
    (tmp_path / ".run.lock").symlink_to(victim)
    with pytest.raises(BlockswapError, match=r"\.run\.lock is a symbolic link"), run_lock(tmp_path / "run"):
        pass
    assert victim.read_text() == "x" and (tmp_path / ".run.lock").is_symlink()
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(BlockswapError, match="fifo is not a regular file"), exclusive(tmp_path / "fifo", "busy"):
        pass


# --- temporary files of writers that were killed -----------------------------------------------------

WRITER = """
import sys, time
from pathlib import Path
from blockswap.provenance import atomic_write

def write(tmp):
    print(tmp, flush=True)
    time.sleep(600)

atomic_write(Path(sys.argv[1]), write)
"""


def writer(target):
    """A process writing `target` atomically, stopped mid-write; and its temporary file."""
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    tmp = process.stdout.readline().strip()
    assert tmp, "the writer did not start"
    return process, tmp


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    """Only the dead writer's file of this result goes: a live writer's stays, and so do another
    result's and anything that is not a plain file."""
    target = tmp_path / "metrics.json"
    killed, stale = writer(target)
    alive, busy = writer(target)
    try:
        assert os.path.basename(stale).startswith(f".metrics.json.{killed.pid}-") and stale.endswith(".tmp")
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        # A dead writer's temporary file of another result, and a link named like one: not this
        # write's to remove.
        other = temporary_name(tmp_path / "other.json", pid=killed.pid)
        other.write_text("")
        link = temporary_name(target, pid=killed.pid)
        link.symlink_to(tmp_path / "other.json")
        atomic_write_text(target, "{}\n")
        assert target.read_text() == "{}\n"
        assert not os.path.exists(stale)
        assert os.path.exists(busy), "a live writer's temporary file was taken"
        assert other.exists() and link.is_symlink()
        atomic_write_text(tmp_path / "other.json", "{}\n")
        assert not other.exists()
    finally:
        alive.kill()
        alive.wait()
    atomic_write_text(target, "{}\n")  # its writer is gone now too
    assert {p.name for p in tmp_path.iterdir()} == {"metrics.json", "other.json", link.name}


# --- a full disk while a checkpoint is written --------------------------------------------------------


class FillingDisk(io.RawIOBase):
    """A file on a disk with `room` bytes left: what does not fit is refused with ENOSPC."""

    def __init__(self, path, room: int):
        self.file, self.room = builtins.open(path, "wb", buffering=0), room

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if len(data) and not self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = self.file.write(bytes(data[: self.room]))
        self.room -= n
        return n

    def fileno(self) -> int:
        return self.file.fileno()

    def close(self) -> None:
        self.file.close()
        super().close()


@pytest.mark.parametrize("room", [0, 100_000])
def test_a_full_disk_during_a_checkpoint_is_one_line_and_the_last_checkpoint_stays(tmp_path, monkeypatch, capsys, room):
    """torch.save reports a failed write as a RuntimeError ("unexpected pos ..."); with room for part
    of the file, the OSError is seen only inside torch.save (closing the file succeeds)."""
    out = tmp_path / "run"
    argv = ["train", "--arch", "wrn-10-1", "--dataset", "digits", "--image-size", str(SIZE), "--epochs", "2"]
    argv += ["--batch-size", "256", "--device", "cpu", "--quiet", "--out", str(out)]
    saves = []

    def full_after_the_first(path, mode="r", *args, **kwargs):
        """The disk fills up after the first checkpoint."""
        if mode == "wb":
            saves.append(path)
            if len(saves) > 1:
                return io.BufferedWriter(FillingDisk(path, room))
        return builtins.open(path, mode, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "open", full_after_the_first, raising=False)
    code = main(argv)
    err = capsys.readouterr().err
    assert len(saves) == 2
    assert code == 2 and err == f"blockswap: error: {out / CHECKPOINT_FILE}: No space left on device\n"
    assert safe_load(out / CHECKPOINT_FILE, CHECKPOINT_FORMAT)["epoch"] == 1  # the last whole one
    assert sorted(p.name for p in out.iterdir()) == [CHECKPOINT_FILE]  # no temporary file left
    monkeypatch.undo()  # space freed: the run resumes after epoch 1
    assert main(argv) == 0
    assert "resuming" in capsys.readouterr().out and (out / METRICS_FILE).exists()
