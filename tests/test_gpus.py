"""The GPU slot allocator, with fake device ids: one device per process, released on exit or kill."""

import os
import signal
import subprocess
import sys
import time

import pytest

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
