"""What each stage wrote to a run folder, so that a later stage never reads a cut or mixed table.

``RUN/manifest.json`` holds one entry per finished stage: its files (SHA-1, bytes, rows) and the
fingerprints of the stages it read. A stage removes its entry when it starts and records it when
all its files are written (each one atomically), so an interrupted stage leaves no entry.
:func:`require` checks an earlier stage before a later one reads it: the entry exists, every file
still has the recorded digest, and the stages it read are the ones now in the folder.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .files import file_digest, write_text_atomic
from .problems import InputError

MANIFEST = "manifest.json"
COMMANDS = {
    "extract": "emoselect extract ... --out {run}",
    "selectivity": "emoselect selectivity {run}",
    "manipulate": "emoselect manipulate {run}",
    "claims": "emoselect selectivity {run}",
}


def read(run: str | Path) -> dict:
    """The run's manifest ({stage: entry}); empty if there is none or it cannot be parsed."""
    path = Path(run) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(run: Path, data: dict) -> None:
    write_text_atomic(run / MANIFEST, json.dumps(data, indent=1, sort_keys=True))


def rows_of(path: Path) -> int | None:
    """Rows of a table (.csv: lines after the header) or an array (.npy: first axis), else None."""
    if path.suffix == ".csv":
        with open(path, "rb") as handle:
            return max(0, sum(1 for _ in handle) - 1)
    if path.suffix == ".npy":
        return int(np.load(path, mmap_mode="r").shape[0])
    return None


def describe(path: Path) -> dict:
    return {"sha1": file_digest(path), "bytes": path.stat().st_size, "rows": rows_of(path)}


def fingerprint(entry: dict) -> str:
    return hashlib.sha1(json.dumps(entry.get("files", {}), sort_keys=True).encode()).hexdigest()


def begin(run: str | Path, stage: str) -> None:
    """A stage starts: its old entry no longer describes the folder, nor does the report (report.html
    shows every stage's results; `emoselect report` or `run` writes it again)."""
    run = Path(run)
    (run / "report.html").unlink(missing_ok=True)
    data = read(run)
    if stage in data:
        del data[stage]
        _write(run, data)


def finish(run: str | Path, stage: str, files: list[Path], inputs: tuple[str, ...] = ()) -> dict:
    """Record a finished stage: its ``files`` (paths inside ``run``) and the stages it read."""
    run = Path(run)
    data = read(run)
    entry = {
        "files": {str(Path(f).relative_to(run)): describe(Path(f)) for f in sorted(files)},
        "inputs": {name: fingerprint(data[name]) for name in inputs if name in data},
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    data[stage] = entry
    _drop_stale_dependents(run, data)
    _write(run, data)
    return entry


def _drop_stale_dependents(run: Path, data: dict) -> None:
    """Remove the entries and files of stages computed from an earlier stage whose files have changed
    since (e.g. manipulations of selective units that selectivity has now redefined)."""
    changed = True
    while changed:
        changed = False
        for name, entry in list(data.items()):
            inputs = entry.get("inputs", {})
            if any(k not in data or fingerprint(data[k]) != v for k, v in inputs.items()):
                for file in entry.get("files", {}):
                    (run / file).unlink(missing_ok=True)
                del data[name]
                changed = True


def require(run: str | Path, stage: str) -> None:
    """Raise one :class:`InputError` unless ``stage`` finished in ``run`` and its files and inputs are
    unchanged since (a file cut short, edited, or left from another run is named)."""
    run = Path(run)
    data = read(run)
    rerun = COMMANDS.get(stage, f"emoselect {stage} {{run}}").format(run=run)
    if stage not in data:
        raise InputError(
            f"{run}: the {stage} stage has not finished there (interrupted, or made by an older "
            f"emoselect): rerun `{rerun}`"
        )
    entry = data[stage]
    for name, recorded in entry.get("files", {}).items():
        path = run / name
        if not path.is_file():
            raise InputError(f"{path} is missing, though the {stage} stage wrote it: rerun `{rerun}`")
        if path.stat().st_size != recorded["bytes"] or file_digest(path) != recorded["sha1"]:
            raise InputError(
                f"{path} differs from what the {stage} stage wrote (cut short or changed since): rerun `{rerun}`"
            )
    for name, recorded in entry.get("inputs", {}).items():
        if name not in data or fingerprint(data[name]) != recorded:
            raise InputError(
                f"{run}: the {stage} results were computed from another {name} stage than the one "
                f"now there: rerun `{rerun}`"
            )


def check_finished(run: str | Path) -> None:
    """:func:`require` the extract stage and every stage recorded in the run's manifest (what a reader
    such as the report uses): a folder without a readable manifest has not finished anything."""
    stages = read(run)
    require(run, "extract")
    for stage in stages:
        require(run, stage)
