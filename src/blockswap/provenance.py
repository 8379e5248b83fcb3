"""Provenance stamped into every result file, atomic writes so no partial file is left behind, and
seals: the sha256 of every result file as written, recorded in its sidecar and checked by readers,
so a file damaged or edited after it was written is named instead of silently changing a result.
"""

from __future__ import annotations

import ast
import errno
import fcntl
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import secrets
import stat
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from .errors import BlockswapError
from .version import __version__

PACKAGE_ROOT = Path(__file__).resolve().parent
# A CSV, PNG or other file that cannot hold its own provenance gets it in a sidecar JSON beside it.
PROVENANCE_SUFFIX = ".provenance.json"
DIGEST_CHUNK = 1 << 20  # bytes read at a time when hashing an input
# The sidecar key holding the sha256 of the file as it was written (its seal).
SEAL_KEY = "sha256"
# Mode asked for when a result file is created; the kernel takes the user's umask off it, as for
# any file the user creates (0644 under umask 022, 0640 under 027).
FILE_MODE = 0o666


@functools.lru_cache(maxsize=1)  # fixed for the life of a process; every file stamps it
def code_version() -> str:
    """Package version, plus the git commit (and '-dirty') when run from a checkout."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(PACKAGE_ROOT), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return __version__
    if commit.returncode != 0 or not commit.stdout.strip():
        return __version__
    return f"{__version__}+{commit.stdout.strip()}"


def device_name(device=None) -> str:
    """The device a result was computed on. A process that never loaded torch (a table, a
    selection) ran on the CPU without torch's threads, and says only which CPU."""
    if device is None and "torch" not in sys.modules:
        return f"cpu:{platform.processor() or platform.machine()}"
    import torch

    device = torch.device(device or "cpu")
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"{device.type}:{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


@functools.lru_cache(maxsize=1)  # fixed for the life of a process, as code_version
def torch_version() -> str:
    """The torch this process runs, or would run, with its build tag (2.14.1+cu130). A process that
    never imported torch (a table, a selection) reads it from torch/version.py as a constant:
    importing torch to ask is about a second."""
    if "torch" in sys.modules:
        return sys.modules["torch"].__version__
    spec = importlib.util.find_spec("torch")
    folders = (spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        try:
            tree = ast.parse((Path(folder) / "version.py").read_text())
        except (OSError, SyntaxError, ValueError):
            continue
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets):
                if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                    return node.value.value
    return importlib.metadata.version("torch")


def _stamp() -> dict:
    """What wrote a file, and when."""
    return {
        "code_version": code_version(),
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def provenance(seed: int | None = None, device=None, seconds: float | None = None, config=None) -> dict:
    record = {
        **_stamp(),
        "python": platform.python_version(),
        "torch": torch_version(),
        "device": device_name(device),
    }
    if seed is not None:
        record["seed"] = seed
    if seconds is not None:
        record["wall_seconds"] = round(seconds, 3)
    if config is not None:
        record["config"] = config
    return record


def make_parent(path: str | Path) -> None:
    """Create the folder `path` goes in, with its parents. A file where one of them should be is
    "Not a directory" naming `path` (mkdir would say "File exists" of the file in the way)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path)) from None


# A temporary file of an atomic write is ".<name>.<writer's pid>-<8 hex digits>.tmp" beside the file
# it becomes: recognisable, so that one a killed writer left is removed by the next write of the same
# file (stale_temporaries).
TMP_SUFFIX = ".tmp"
MAX_PID_DIGITS = 7  # Linux pids are at most 2^22 (kernel.pid_max)
# What the longest name a sealed result needs adds to the result's: its sidecar's temporary file,
# ".<name>.provenance.json.<pid>-<8 hex digits>.tmp".
SEALED_NAME_EXTRA = len(PROVENANCE_SUFFIX) + len(f"..{'9' * MAX_PID_DIGITS}-12345678{TMP_SUFFIX}")


def check_result_name(path: str | Path) -> None:
    """Fail now, before the work, if the file system cannot hold `path` as a sealed result (its
    sidecar and their temporary files have longer names than it). For a step that keeps partial
    work (scoring): a name found too long at the end would leave that work behind for nothing."""
    path = Path(path)
    folder = next((p for p in path.absolute().parents if os.path.isdir(p)), None)
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX") if folder is not None else None
    except (OSError, ValueError):  # the file system does not say
        limit = None
    size = len(os.fsencode(path.name))
    if limit is not None and size + SEALED_NAME_EXTRA > limit:
        raise BlockswapError(
            f"{path}: the name is too long ({size} bytes) to be written with its "
            f"{PROVENANCE_SUFFIX} here (at most {limit - SEALED_NAME_EXTRA} bytes)"
        )


def json_digest(value, tail: str = "") -> str:
    """sha256 (hex) of a JSON value written with sorted keys, then `tail`: the one fingerprint of
    settings and configurations (training runs, scoring shards, searches, config keys)."""
    return hashlib.sha256((json.dumps(value, sort_keys=True, default=str) + tail).encode()).hexdigest()


def temporary_name(path: Path, pid: int | None = None) -> Path:
    """A fresh name for a temporary file of `path`, marked with the writing process's pid."""
    return path.with_name(f".{path.name}.{os.getpid() if pid is None else pid}-{secrets.token_hex(4)}{TMP_SUFFIX}")


def _temporary_pattern(path: Path) -> re.Pattern:
    return re.compile(rf"\.{re.escape(path.name)}\.([0-9]{{1,{MAX_PID_DIGITS}}})-[0-9a-f]{{8}}{re.escape(TMP_SUFFIX)}")


def _alive(pid: int) -> bool:
    """Whether a process `pid` runs on this machine (any user's: a pid reused by another process counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: another user's process
        return True
    return True


def stale_temporaries(path: str | Path) -> list[Path]:
    """Remove the temporary files of `path` that writers killed mid-write left behind (kill -9, a
    crash, a power cut): those of this user whose writer process is gone and whose lock nobody
    holds. A live writer (on this machine or, on a file system with coherent locks, on another)
    holds its file's lock until the rename, so its file is never taken. Returns what was removed."""
    path = Path(path)
    pattern = _temporary_pattern(path)
    try:
        names = [entry.name for entry in os.scandir(path.parent) if pattern.fullmatch(entry.name)]
    except OSError:  # no folder yet, or one we cannot list: nothing to clean
        return []
    removed = []
    for name in names:
        pid = int(pattern.fullmatch(name)[1])
        if pid == os.getpid() or _alive(pid):
            continue
        candidate = path.with_name(name)
        try:
            fd = os.open(candidate, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:  # gone already, a symbolic link, or not ours to read
            continue
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # held by a live writer, or a file system without locks: leave it
                continue
            now = os.lstat(candidate)
            if (now.st_dev, now.st_ino) == (info.st_dev, info.st_ino):
                os.unlink(candidate)
                removed.append(candidate)
        except OSError:
            continue
        finally:
            os.close(fd)
    return removed


def _create_temporary(path: Path) -> tuple[Path, int]:
    """A new, empty temporary file of `path` (created with FILE_MODE, under the umask) and an open
    descriptor holding its lock, which tells stale_temporaries that its writer is alive."""
    while True:
        tmp = temporary_name(path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        except FileExistsError:  # another writer's temporary file: draw another name
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as err:
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                os.close(fd)
                raise
            return tmp, fd  # a file system without locks: nothing is ever cleaned there
        # A cleaner on another machine may have taken the file in the instant before the lock.
        try:
            same = os.lstat(tmp).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return tmp, fd
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """The one way files are written: `write(tmp)` fills a temporary file in the same folder, which
    is then renamed over `path`, so readers never see half a file and a kill leaves the old one.

    The temporary file is created with FILE_MODE and the kernel applies the umask (and any default
    ACL), so results get the permissions the user's other files get; tempfile.mkstemp would force
    0600 and make tables and models unreadable to the user's group. Its name carries the writer's
    pid and the writer holds its lock until the rename: a temporary file of `path` that a killed
    writer left is removed here (stale_temporaries).

    A folder that refuses the file, a name too long or a full disk is an OSError naming `path`, not
    the temporary file (the CLI prints it as one line).
    """
    path = Path(path)
    make_parent(path)
    tmp = None
    try:
        stale_temporaries(path)
        tmp, fd = _create_temporary(path)
        try:
            write(tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)
    except OSError as err:
        if err.filename is None or tmp is None or os.fspath(err.filename) == os.fspath(tmp):
            err.filename, err.filename2 = str(path), None
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Text written atomically (not sealed: for files that are not results, and for sidecars)."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, record) -> None:
    """A result record as indented JSON, written atomically and sealed; the sidecar repeats the
    record's own provenance so that a changed file can be traced to the command that wrote it."""
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    stamp = record.get("provenance") if isinstance(record, dict) else None
    seal(path, {"provenance": stamp} if stamp else None)


def write_result_text(path: str | Path, text: str, record: dict | None = None) -> None:
    """A result file (CSV, table) written atomically and sealed, `record` (its provenance) in its sidecar."""
    atomic_write_text(path, text)
    seal(path, record)


def write_results(texts: dict, record: dict | None = None) -> None:
    """Result files of one command (path -> text: a table as CSV, Markdown and LaTeX), written and
    sealed: all of them or, when one cannot be written, none (those already written are removed)."""
    written = []
    try:
        for path, text in texts.items():
            write_result_text(path, text, record)
            written.append(path)
    except BaseException:
        remove_results(written)
        raise


def seal_all(paths, record: dict | None = None) -> None:
    """Seal files one command wrote together (a figure's PNG and PDF): all of them or, when one
    cannot be sealed, none, and the files are removed."""
    try:
        for path in paths:
            seal(path, record)
    except BaseException:
        remove_results(paths)
        raise


def remove_results(paths) -> None:
    """Take back files this command wrote, with their sidecars, after a later step failed."""
    for path in map(Path, paths):
        for written in (path, provenance_path(path)):
            try:
                written.unlink(missing_ok=True)
            except OSError:  # cannot be there (e.g. a name too long): nothing to take back
                pass


def provenance_path(out: str | Path) -> Path:
    """The sidecar that carries the provenance of `out`."""
    out = Path(out)
    return out.with_name(out.name + PROVENANCE_SUFFIX)


def file_digest(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(DIGEST_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def input_digests(paths) -> dict[str, str]:
    """Each input file and its sha256, so a derived table or figure names exactly what it came from."""
    return {str(p): file_digest(p) for p in paths}


def input_record(paths) -> dict:
    """The `inputs` of a derived file's sidecar, and the folder relative names in it start from:
    what `check_inputs_unchanged` compares with the files on disk when the file is read."""
    return {"inputs": input_digests(paths), "inputs_base": os.getcwd()}


def seal(path: str | Path, record: dict | None = None) -> None:
    """Record the sha256 of `path` as it is now in its sidecar, beside `record` (the provenance of a
    file that cannot carry its own; by default, what wrote it and when). Called right after `path`
    is written: a kill between the two leaves a mismatch, which readers report, never a silent one.
    If the sidecar cannot be written (a name too long for it, a full disk), `path` is removed: no
    result rather than one without its seal."""
    record = dict(record) if record is not None else {"provenance": _stamp()}
    record[SEAL_KEY] = file_digest(path)
    try:
        atomic_write_text(provenance_path(path), json.dumps(record, indent=2) + "\n")
    except BaseException:
        Path(path).unlink(missing_ok=True)
        raise


def read_sidecar(path: str | Path) -> dict | None:
    """The sidecar record of `path`; None if it has none (a file made outside this package)."""
    sidecar = provenance_path(path)
    try:
        record = json.loads(sidecar.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise BlockswapError(
            f"{sidecar} is damaged ({str(err).splitlines()[0]}); delete it and {path}, and rerun "
            "the step that wrote them"
        ) from None
    if not isinstance(record, dict):
        raise BlockswapError(
            f"{sidecar} is damaged (not a JSON object); delete it and {path}, and rerun the step that wrote them"
        )
    return record


def verify(path: str | Path, data: bytes | None = None) -> dict | None:
    """Check `path` (whose bytes are `data`, if already read) against the sha256 its sidecar recorded
    when it was written; return the sidecar record. A file without a sidecar (made by hand or by
    another tool) or with one written before files were sealed is taken as it is."""
    record = read_sidecar(path)
    expected = None if record is None else record.get(SEAL_KEY)
    if expected is None:
        return record
    actual = hashlib.sha256(data).hexdigest() if data is not None else file_digest(path)
    if actual != expected:
        stamp = record.get("provenance")
        command = stamp.get("command") if isinstance(stamp, dict) else None
        # One line whatever the recorded command holds.
        rerun = f"rerun `{' '.join(str(command).split())}`" if command else "rerun the step that wrote it"
        raise BlockswapError(
            f"{path} changed after it was written: {rerun} or delete it (to keep a deliberate edit, "
            f"`blockswap reseal {path}`)"
        )
    check_inputs_unchanged(path, record)
    return record


def check_inputs_unchanged(path: str | Path, record: dict) -> None:
    """A derived file (a table, a figure) records the sha256 of every input it was computed from;
    an input that is still where it was but holds something else now makes the file stale, and
    whatever reads it would silently mix old and new results. Inputs no longer there (a moved or
    cleaned project) are not judged."""
    inputs = record.get("inputs")
    if not isinstance(inputs, dict):
        return
    base = record.get("inputs_base")
    base = Path(base) if isinstance(base, str) else Path.cwd()
    for name, digest in inputs.items():
        try:
            now = file_digest(base / name)
        except OSError:
            continue
        if now != digest:
            raise BlockswapError(
                f"{path} is stale: its input {name} changed after it was made; rebuild it (rerun the step "
                "that wrote it, or the workflow)"
            )


def read_verified(path: str | Path, what: str) -> tuple[bytes, dict | None]:
    """The bytes of an input file, after checking it exists and matches its seal, and its sidecar
    record (None where it has none)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise BlockswapError(f"{what} {path} does not exist") from None
    return data, verify(path, data)


def reseal(path: str | Path) -> dict | None:
    """Accept a deliberate edit of `path`: record its present sha256, marked `edited_by_hand` with
    the time (the digest it was written with is kept as `sha256_as_written`). Returns the new
    sidecar record, or None if the file is unchanged."""
    path = Path(path)
    if path.name.endswith(PROVENANCE_SUFFIX):
        raise BlockswapError(f"{path} is a provenance sidecar; reseal the file it describes")
    if not path.is_file():
        raise BlockswapError(f"{path} does not exist")
    record = read_sidecar(path) or {}
    digest = file_digest(path)
    if record.get(SEAL_KEY) == digest:
        return None
    if SEAL_KEY in record:
        record.setdefault("sha256_as_written", record[SEAL_KEY])
    record.update(
        {"edited_by_hand": True, "edited": datetime.now(timezone.utc).isoformat(timespec="seconds"), SEAL_KEY: digest}
    )
    atomic_write_text(provenance_path(path), json.dumps(record, indent=2) + "\n")
    return record
