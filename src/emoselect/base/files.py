"""Small file helpers shared by the stages: content digests and atomic writes.

An atomic write goes to a temporary file next to the target and is then renamed over it, so an
interrupted run leaves either the old file or the new one, never a half-written one.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .problems import InputError

if TYPE_CHECKING:
    import pandas as pd


def file_digest(path: str | Path, algorithm: str = "sha1") -> str:
    """Hex digest of a file's bytes (SHA-1 keys the caches; SHA-256 is recorded as provenance)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.cache
def host() -> str:
    """This machine's short name, as temporary files carry it (asked once, not at import)."""
    return socket.gethostname().split(".")[0].replace("-", "_") or "host"


FOREIGN_TEMPORARY_AGE = 24 * 3600  # seconds after which another machine's temporary counts as stale


def temporary_path(path: str | Path) -> Path:
    """The temporary file a write to ``path`` goes through: ``.<name>.<host>-<pid>.tmp<suffix>`` next
    to it (host and process, so that a cache shared by several machines knows whose it is)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{host()}-{os.getpid()}.tmp{path.suffix}")


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(temporary_path)``, then rename the temporary file over ``path`` (folders
    created). If ``write`` fails (a full disk, an interrupt), the temporary file is removed and
    ``path`` keeps its old content: a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(path)
    try:
        write(temporary)
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise _naming_target(error, path, temporary) from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def _naming_target(error: OSError, path: Path, temporary: Path) -> OSError:
    """``error`` as an OSError naming ``path`` (the file the user asked for, not its temporary):
    numpy's "2052 requested and 992 written" on a full disk carries no path and no errno."""
    if error.filename not in (None, str(temporary), temporary):
        return error
    if error.errno is None:  # a short write: the disk is full (or a quota is reached)
        return OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (a short write: {error})", str(path))
    return OSError(error.errno, error.strerror, str(path))


def save_npy_atomic(path: str | Path, array: np.ndarray) -> None:
    """``np.save`` to ``path``, atomically."""
    write_atomic(path, lambda temporary: np.save(temporary, array))


def savez_atomic(path: str | Path, **arrays: np.ndarray) -> None:
    """``np.savez`` to ``path``, atomically."""
    write_atomic(path, lambda temporary: np.savez(temporary, **arrays))  # type: ignore[arg-type]


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path``, atomically."""
    write_atomic(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def write_csv_atomic(path: str | Path, table: pd.DataFrame) -> None:
    """A table (pandas DataFrame) to ``path`` as CSV without its index, atomically."""
    write_atomic(path, lambda temporary: table.to_csv(temporary, index=False))


# ---------------------------------------------------------------------------------------------
# stale temporary files, free space and writability


def _owner_alive(temporary: Path) -> bool:
    """Whether the process that writes a temporary file may still run: a process of this machine
    named in its name (``.<name>.<host>-<pid>.tmp<suffix>``) that runs, or, for another machine's
    file, one younger than a day (its process cannot be asked)."""
    try:
        machine, pid = temporary.name.split(".tmp")[0].rsplit(".", 1)[1].rsplit("-", 1)
        if machine != host() or os.name == "nt":  # Windows: os.kill(pid, 0) would signal the process, not ask
            return time.time() - temporary.stat().st_mtime < FOREIGN_TEMPORARY_AGE
        os.kill(int(pid), 0)
    except (ValueError, IndexError, ProcessLookupError, FileNotFoundError):
        return False
    except PermissionError:  # a process of another user holds that pid
        return True
    return True


def remove_stale_temporaries(folder: str | Path) -> int:
    """Delete temporary files under ``folder`` left by processes that no longer run (a kill -9, a
    power cut); returns how many were removed."""
    removed = 0
    for temporary in Path(folder).rglob(".*.tmp*"):
        if temporary.is_file() and not _owner_alive(temporary):
            temporary.unlink(missing_ok=True)
            removed += 1
    return removed


def check_writable(folder: str | Path, what: str) -> Path:
    """Create ``folder`` if needed and prove it writable with a probe file, or raise one
    :class:`InputError` naming it (read-only, permission denied, no space)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe.{os.getpid()}.tmp"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as error:
        raise InputError(f"{what} {folder} is not writable: {error.strerror or error}") from error
    return folder


def _command_line() -> str:
    """What the lock holder is running, in words: ``emoselect run`` (flags such as -q left out)."""
    command = [word for word in sys.argv[1:] if not word.startswith("-")][:1]
    return " ".join(["emoselect", *command])


def check_free_space(folder: str | Path, needed_bytes: int, what: str) -> None:
    """Raise one :class:`InputError` if the file system of ``folder`` has less than ``needed_bytes``
    free (checked before long work, so that it does not fail at the end)."""
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise InputError(
            f"{what} needs about {size_in_words(needed_bytes)} in {folder}, but only {size_in_words(free)} are free"
        )


def size_in_words(n_bytes: float) -> str:
    """A size for people: 512 bytes, 2.1 kB, 340 MB, 1.25 GB (decimal units)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            value = n_bytes / scale
            return f"{value:.3g} {unit}" if value < 100 else f"{value:,.0f} {unit}"
    return f"{int(n_bytes)} bytes"


def reserve(path: str | Path) -> None:
    """Allocate a (memory-mapped) file's blocks now, so that a full disk is an OSError (ENOSPC) here
    and not a bus error on a later write through the map. A file system without the call is left as is."""
    allocate = getattr(os, "posix_fallocate", None)
    if allocate is None:
        return
    with open(path, "r+b") as handle:
        try:
            allocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)
        except OSError as error:
            if error.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                return
            raise


# ---------------------------------------------------------------------------------------------
# one writer per run folder


_HELD: dict[Path, list] = {}  # run folder -> [open lock file, nesting depth] held by this process


@contextlib.contextmanager
def run_lock(run: str | Path) -> Iterator[Path]:
    """Hold the run folder's lock (``RUN/.lock``, an flock released by the OS when the process ends,
    even after kill -9) while a stage writes. A second process gets one :class:`InputError` naming
    the process that holds it. Nested use in one process is allowed. Readers do not lock."""
    run = Path(run).resolve()
    if run in _HELD:
        _HELD[run][1] += 1
        try:
            yield run
        finally:
            _HELD[run][1] -= 1
        return
    check_writable(run, "the run folder")
    handle = open(run / ".lock", "a+")
    try:
        import fcntl

        exclusive = fcntl.LOCK_EX | fcntl.LOCK_NB
    except ImportError:  # Windows: no flock; runs are not protected against a second writer
        exclusive = 0
    if exclusive:
        try:
            fcntl.flock(handle.fileno(), exclusive)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise InputError(
                f"the run folder {run} is being written by {holder}: wait for it to finish, or write to another folder"
            ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()} ({_command_line()}, since {time.strftime('%H:%M:%S')})")
    handle.flush()
    _HELD[run] = [handle, 1]
    try:
        remove_stale_temporaries(run)
        yield run
    finally:
        del _HELD[run]
        handle.close()
