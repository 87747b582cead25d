"""Small file helpers shared by the stages: content digests and atomic writes.

An atomic write goes to a temporary file next to the target and is then renamed over it, so an
interrupted run leaves either the old file or the new one, never a half-written one.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np


def file_digest(path: str | Path, algorithm: str = "sha1") -> str:
    """Hex digest of a file's bytes (SHA-1 keys the caches; SHA-256 is recorded as provenance)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")


def write_atomic(path: str | Path, write) -> Path:
    """Call ``write(temporary_path)``, then rename the temporary file over ``path`` (folders
    created). If ``write`` fails (a full disk, an interrupt), the temporary file is removed and
    ``path`` keeps its old content: a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary(path)
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def save_npy_atomic(path: str | Path, array: np.ndarray) -> None:
    """``np.save`` to ``path``, atomically."""
    write_atomic(path, lambda temporary: np.save(temporary, array))


def savez_atomic(path: str | Path, **arrays: np.ndarray) -> None:
    """``np.savez`` to ``path``, atomically."""
    write_atomic(path, lambda temporary: np.savez(temporary, **arrays))


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path``, atomically."""
    write_atomic(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def write_csv_atomic(path: str | Path, table) -> None:
    """A table (pandas DataFrame) to ``path`` as CSV without its index, atomically."""
    write_atomic(path, lambda temporary: table.to_csv(temporary, index=False))
