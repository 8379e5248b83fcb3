"""The GPU slot allocator, with fake device ids: one device per process, released on exit or kill."""

import os
import signal
import stat
import subprocess
import sys
import time

import pytest
import torch

from blockswap import BlockswapError, gpus

HOLDER = """
import sys, time
from blockswap import gpus
device = gpus.claim(sys.argv[2].split(","), sys.argv[1], wait_seconds=float(sys.argv[3]))
print(device, flush=True)
time.sleep(float(sys.argv[4]))
"""


def holder(lock_dir, ids="0,1", wait=30, hold=30):
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock_dir), ids, str(wait), str(hold)], stdout=subprocess.PIPE, text=True
    )


@pytest.mark.slow
def test_parallel_jobs_get_different_devices_and_a_killed_one_frees_its_slot(tmp_path):
    a, b = holder(tmp_path), holder(tmp_path)
    claimed = {a.stdout.readline().strip(), b.stdout.readline().strip()}
    assert claimed == {"0", "1"}
    c = holder(tmp_path)  # both taken: waits
    time.sleep(1.0)
    assert c.poll() is None
    os.kill(a.pid, signal.SIGKILL)  # a failing job: the kernel releases its lock
    a.wait()
    freed = c.stdout.readline().strip()
    assert freed in {"0", "1"} and freed != ""
    for p in (b, c):
        p.kill()
        p.wait()


@pytest.mark.slow
def test_claim_release_and_timeout(tmp_path):
    device = gpus.claim(["7"], tmp_path, wait_seconds=1)
    try:
        assert device == "7" and (tmp_path / "gpu-7.lock").read_text().strip() == str(os.getpid())
        with pytest.raises(BlockswapError, match="already holds a GPU slot"):
            gpus.claim(["8"], tmp_path)
        other = holder(tmp_path, ids="7", wait=0.5, hold=0)
        out, _ = other.communicate(timeout=30)
        assert other.returncode != 0 and out == ""  # no free GPU: it gave up
    finally:
        gpus.release()
    assert gpus.try_claim(["7"], tmp_path) is not None


# --- the lock folder sits in the shared temporary folder: only the user's own is used ------------


def claimed(lock_dir, ids=("0",)):
    """try_claim's device, its lock file closed again."""
    found = gpus.try_claim(list(ids), lock_dir)
    assert found is not None
    found[1].close()
    return found[0]


def test_the_lock_folder_is_made_private(tmp_path):
    lock_dir = tmp_path / "shared" / "locks"
    assert claimed(lock_dir) == "0"
    info = os.lstat(lock_dir)
    assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) & 0o077 == 0
    assert (lock_dir / "gpu-0.lock").read_text() == f"{os.getpid()}\n"


def test_a_lock_file_linked_to_another_file_is_refused_and_that_file_untouched(tmp_path):
    """Someone who made the folder first links gpu-0.lock to a file of the claimer's: a claim must
    not truncate it and write its pid into it."""
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir(mode=0o700)
    victim = tmp_path / "thesis.tex"
    victim.write_text("years of work\n")
    (lock_dir / "gpu-0.lock").symlink_to(victim)
    with pytest.raises(BlockswapError, match=r"gpu-0\.lock is a symbolic link"):
        gpus.try_claim(["0"], lock_dir)
    assert victim.read_text() == "years of work\n"
    (lock_dir / "gpu-1.lock").symlink_to(tmp_path / "missing")  # a dangling link: nothing is created
    with pytest.raises(BlockswapError, match=r"gpu-1\.lock is a symbolic link"):
        gpus.try_claim(["1"], lock_dir)
    assert not (tmp_path / "missing").exists()


def test_a_lock_file_that_is_no_regular_file_is_refused(tmp_path):
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir(mode=0o700)
    os.mkfifo(lock_dir / "gpu-0.lock")  # would block an open for writing
    with pytest.raises(BlockswapError, match=r"gpu-0\.lock is not a regular file"):
        gpus.try_claim(["0"], lock_dir)


def test_a_lock_folder_others_can_write_is_refused(tmp_path):
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir()
    lock_dir.chmod(0o777)
    with pytest.raises(BlockswapError, match=r"locks is writable by other users \(mode 0777\)"):
        gpus.try_claim(["0"], lock_dir)
    assert list(lock_dir.iterdir()) == []


def test_a_lock_folder_that_is_a_link_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    lock_dir = tmp_path / "locks"
    lock_dir.symlink_to(elsewhere)
    with pytest.raises(BlockswapError, match=r"locks is a symbolic link"):
        gpus.try_claim(["0"], lock_dir)
    assert list(elsewhere.iterdir()) == []


def test_a_lock_path_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "locks").write_text("")
    with pytest.raises(BlockswapError, match=r"locks is not a folder"):
        gpus.try_claim(["0"], tmp_path / "locks")


@pytest.mark.skipif(os.geteuid() != 0, reason="making a folder another user's needs root")
def test_a_lock_folder_of_another_user_is_refused(tmp_path):
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir(mode=0o700)
    os.chown(lock_dir, 4242, 4242)
    with pytest.raises(BlockswapError, match=r"belongs to another user \(uid 4242\)"):
        gpus.try_claim(["0"], lock_dir)
    assert list(lock_dir.iterdir()) == []


def test_a_refused_lock_folder_is_one_line_from_the_command_line(tmp_path, monkeypatch, capsys):
    """What a job that claims a GPU (--device auto on a multi-GPU machine) prints."""
    from blockswap.cli import main

    lock_dir = tmp_path / "locks"
    lock_dir.mkdir()
    lock_dir.chmod(0o777)
    monkeypatch.setenv(gpus.LOCK_DIR_ENV, str(lock_dir))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    argv = ["train", "--arch", "wrn-10-1", "--dataset", "digits", "--epochs", "1", "--device", "auto"]
    code = main([*argv, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"blockswap: error: GPU lock folder {lock_dir} is writable by other users"), err
    assert list(lock_dir.iterdir()) == [] and not (tmp_path / "run").exists()
