"""A sweep file (YAML: picture sets, networks, options) and the stamps that tell whether a network's
run folder finished with the options the sweep asks for.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from ..analysis.experiments import ManipulationOptions
from ..analysis.selectivity import SelectivityOptions
from ..base import manifest
from ..base.files import file_digest, write_text_atomic
from ..base.options import as_dict, from_dict
from ..base.problems import InputError, yaml_error
from ..pictures.stimuli import check_dataset_name
from ..run.config import ExtractOptions

SWEEP_KEYS = ("datasets", "networks", "extract", "selectivity", "manipulation", "controls")


@dataclass(frozen=True, kw_only=True)
class SweepNetwork:
    """One network of a sweep: its extract, selectivity and manipulation options (None: no heads and
    manipulations) and its number of random-init controls."""

    extract: ExtractOptions
    selectivity: SelectivityOptions
    manipulation: ManipulationOptions | None
    controls: int

    def record(self) -> dict:
        """The options as plain data (written beside the network's run; their fingerprint marks it
        finished). The run's seed is also recorded in the selectivity and manipulation sections, as
        earlier versions did, so that a sweep folder they made is still recognised as finished."""
        seed = self.extract.seed
        manipulation = None
        if self.manipulation is not None:
            manipulation = as_dict(self.manipulation)
            manipulation = {**manipulation, "readout": {**manipulation["readout"], "seed": seed}, "seed": seed}
        return {
            "extract": as_dict(self.extract),
            "selectivity": {**as_dict(self.selectivity), "seed": seed},
            "manipulation": manipulation,
            "controls": self.controls,
        }


@dataclass(frozen=True, kw_only=True)
class Sweep:
    """A parsed sweep file: its ``source`` path, one :class:`SweepNetwork` per network name, and the
    ``limit`` of pictures per set it was read with."""

    source: Path
    networks: dict[str, SweepNetwork]
    limit: int | None = None

    def record(self, name: str) -> dict:
        """A network's options as plain data (see :meth:`SweepNetwork.record`)."""
        return self.networks[name].record()


def _mapping(value: object, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"{where} must be a mapping of name: value")
    return dict(value)


def _resolved(path: str, base: Path) -> str:
    """A path of the sweep file, relative to the file's folder; names like random/imagenet as given."""
    if path in ("imagenet", "pretrained", "random") or Path(path).is_absolute():
        return path
    return str((base / path).resolve())


def read_sweep(path: str | Path, limit: int | None = None) -> Sweep:
    """Parse and check a sweep file (see the module docstring); ``limit`` overrides ``extract.limit``.

    Parameters
    ----------
    path : path
        The YAML sweep file.
    limit : int, optional
        A seeded, stratified sample of this many pictures per set (a quick look).

    Returns
    -------
    Sweep
        Every network's options, checked (an unknown key or a bad value is an error naming it).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: sweep file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise yaml_error(path, error) from error
    unknown = [key for key in _mapping(data, str(path)) if key not in SWEEP_KEYS]
    if unknown:
        raise InputError(f"{path}: unknown key {unknown[0]!r} (a sweep file has {', '.join(SWEEP_KEYS)})")
    base = path.parent
    datasets = {
        check_dataset_name(n): _resolved(str(p), base) for n, p in _mapping(data.get("datasets"), "datasets").items()
    }
    networks = _mapping(data.get("networks"), "networks")
    if not datasets or not networks:
        raise InputError(f"{path}: a sweep needs `datasets` and `networks`")
    extract = {**_mapping(data.get("extract"), "extract"), **({"limit": limit} if limit is not None else {})}
    manipulation = data.get("manipulation", {})
    controls = data.get("controls", 2)
    if not isinstance(controls, int) or controls < 0:
        raise InputError(f"{path}: controls must be a whole number >= 0, got {controls!r}")
    entries = {}
    for name, entry in networks.items():
        check_dataset_name(name, "network")  # names a folder of the sweep
        entry = _mapping(entry, f"networks.{name}")
        if "weights" in entry:
            entry["weights"] = _resolved(str(entry["weights"]), base)
        options = from_dict(ExtractOptions, {**extract, **entry, "datasets": datasets}, f"networks.{name}")
        selectivity = from_dict(SelectivityOptions, _mapping(data.get("selectivity"), "selectivity"), "selectivity")
        manipulate = (
            None
            if manipulation is False
            else from_dict(ManipulationOptions, _mapping(manipulation, "manipulation"), "manipulation")
        )
        entries[name] = SweepNetwork(
            extract=options, selectivity=selectivity, manipulation=manipulate, controls=controls
        )
    return Sweep(source=path.resolve(), networks=entries, limit=limit)


def _fingerprint(record: dict) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _finished(run: Path, record: dict) -> bool:
    """Whether a network's run folder finished with these options (its stages' files unchanged)."""
    stamp = run / "sweep-entry.json"
    if not stamp.is_file() or not (run / "report.html").is_file():
        return False
    try:
        if json.loads(stamp.read_text()).get("fingerprint") != _fingerprint(record):
            return False
        manifest.check_finished(run)
        return _inputs_unchanged(run)
    except (InputError, ValueError, OSError, KeyError):
        return False


def _inputs_unchanged(run: Path) -> bool:
    """Whether the run folder's inputs still have the content it was made from: every ratings file's
    SHA-256 (config.yaml) and every analysed picture's SHA-1 (stimuli.csv)."""
    config = yaml.safe_load((run / "config.yaml").read_text()) or {}
    for entry in (config.get("datasets") or {}).values():
        source = Path(entry["ratings_file"])
        recorded = entry.get("ratings_sha256")
        if recorded is not None and (not source.is_file() or file_digest(source, "sha256") != recorded):
            return False
    stimuli = pd.read_csv(run / "stimuli.csv", dtype=str, keep_default_na=False)
    return all(
        Path(path).is_file() and file_digest(path) == sha1 for path, sha1 in zip(stimuli["path"], stimuli["sha1"])
    )


def _stamp(run: Path, sweep: Sweep, name: str) -> None:
    """Mark a network's run folder finished with its options (``sweep-entry.json``)."""
    record = sweep.record(name)
    write_text_atomic(
        run / "sweep-entry.json", json.dumps({"fingerprint": _fingerprint(record), "options": record}, default=str)
    )
