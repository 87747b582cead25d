"""Recording responses: one pass over each picture, cached by content.

For every picture and tuning site the response of a unit is the spatial mean of its activation map
(float32); the readout features are the flattened input of the readout layer; four low-level image
statistics are recorded on the way (:func:`emoselect.tensors.image_statistics`).

The cache holds one small file per picture, named by the SHA-1 of the picture file, in a folder named
by a hash of everything that determines the numbers (model, weight-file hash or seed, preprocessing,
probe sites). So a second call is a cache hit, an interrupted call resumes where it stopped, a changed
picture is recomputed, and each file is written atomically (never left half-written).

The run folder receives ``responses/<dataset>/<site>.npy`` (float32 [n_images, n_units], rows in
stimuli.csv order), ``responses/<dataset>/<readout site>.npy`` and ``responses/<dataset>/image_stats.csv``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..analysis.records import Responses
from ..base.files import remove_stale_temporaries, reserve, save_npy_atomic, temporary_path, write_csv_atomic
from ..base.problems import InputError
from ..pictures.images import ImageProblem, Preprocessing, load_rgb
from ..pictures.stimuli import Stimuli
from .forward import record
from .network import Network
from .tensors import IMAGE_STATISTICS, image_statistics, normalise, to_tensor

RESPONSE_DEFINITION = 3  # bump when the meaning of a cached vector changes (2: channels-last forward;
# 3: image statistics in float64, independent of the batch size)
FORWARD_BATCH = 8  # pictures in every forward pass: the CPU kernels' numbers depend on the batch's size
# (a picture's responses at batch 1, 2, 3 or 5 differ from batch 8 by up to ~1e-6), never on the other
# pictures in a batch of fixed size, so a short batch is padded: responses do not depend on --batch-size,
# on how many pictures were missing from the cache, or on the order a resumed run fills it (part of
# the cache key)


def default_cache_dir() -> Path:
    """``$EMOSELECT_CACHE``, else ``$XDG_CACHE_HOME/emoselect``, else ``~/.cache/emoselect``."""
    if os.environ.get("EMOSELECT_CACHE"):
        return Path(os.environ["EMOSELECT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "emoselect"


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` -> CUDA if available, else Apple MPS, else CPU; otherwise the named device."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError as error:
        raise InputError(f"--device {device!r}: unknown device (use auto, cpu, cuda, cuda:1, mps)") from error
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device!r}: PyTorch sees no CUDA GPU here")
    if chosen.type == "cuda" and chosen.index is not None and chosen.index >= torch.cuda.device_count():
        raise InputError(f"--device {device!r}: PyTorch sees {torch.cuda.device_count()} CUDA GPU(s) here")
    if chosen.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError(f"--device {device!r}: Apple MPS is not available here")
    return chosen


def response_key(network: Network) -> str:
    """Hash of everything that determines a picture's recorded vector."""
    description = network.describe()
    identity = {
        "definition": RESPONSE_DEFINITION,
        "model": network.name,
        "weights": description["weights_sha256"]
        or (
            f"random seed {network.seed} torch {torch.__version__}" if network.weights == "random" else network.weights
        ),
        "preprocessing": description["preprocessing"],
        "sites": description["sites"],
        "site_paths": network.sites,
        "readout": [network.readout_site, network.readout_dim],
        "forward_batch": FORWARD_BATCH,
    }
    if "precision" in description:  # bf16/fp16 responses are other numbers (absent for fp32: keys stay)
        identity["precision"] = description["precision"]
    if "site_layouts" in description:  # transformers: how units are read (absent for CNNs: their keys stay)
        identity["layouts"] = {"sites": network.layouts, "readout": network.readout_layout}
        identity["tokens"] = [description.get("token_pool"), description.get("prefix_tokens")]
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]


def record_fixed(network: Network, batch: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """:func:`record` in forward passes of exactly :data:`FORWARD_BATCH` pictures (the last padded with
    copies of its first picture, their rows dropped): each picture's responses are the same numbers
    whatever batch it came in. ``batch``: normalised [B, 3, H, W]; returns as :func:`record`."""
    means: dict[str, list[torch.Tensor]] = {}
    readouts = []
    for start in range(0, batch.shape[0], FORWARD_BATCH):
        part = batch[start : start + FORWARD_BATCH]
        n = part.shape[0]
        if n < FORWARD_BATCH:
            part = torch.cat([part, part[:1].expand(FORWARD_BATCH - n, *part.shape[1:])])
        site_means, readout = record(network, part)
        for site, values in site_means.items():
            means.setdefault(site, []).append(values[:n])
        readouts.append(readout[:n])
    return {site: torch.cat(parts) for site, parts in means.items()}, torch.cat(readouts)


class ResponseStore:
    """One float32 vector per picture: [all tuning sites' units | readout features | image statistics]."""

    def __init__(self, folder: Path, network: Network) -> None:
        self.folder = Path(folder)
        self.layout: list[tuple[str, int]] = list(network.units.items()) + [
            (network.readout_site, network.readout_dim),
            ("image_stats", len(IMAGE_STATISTICS)),
        ]
        self.width = sum(n for _, n in self.layout)

    def path(self, sha1: str) -> Path:
        return self.folder / sha1[:2] / f"{sha1}.npy"

    def has(self, sha1: str) -> bool:
        return self.path(sha1).is_file()

    def put(self, sha1: str, vector: np.ndarray) -> None:
        save_npy_atomic(self.path(sha1), vector.astype(np.float32, copy=False))

    def get(self, sha1: str) -> np.ndarray | None:
        """The stored vector, or None if absent or unreadable (then it is recomputed)."""
        try:
            vector = np.load(self.path(sha1))
        except (OSError, ValueError, EOFError):
            return None
        return vector if vector.shape == (self.width,) else None

    def split(self, matrix: np.ndarray) -> dict[str, np.ndarray]:
        """[n, width] -> {part: [n, part width]} following the layout."""
        parts, start = {}, 0
        for name, width in self.layout:
            parts[name] = matrix[:, start : start + width]
            start += width
        return parts


class _Pictures(torch.utils.data.Dataset):
    """Pictures as unnormalised tensors [3, crop, crop] in [0, 1], with their SHA-1."""

    def __init__(self, paths: list[str], sha1s: list[str], prep: Preprocessing) -> None:
        self.paths, self.sha1s, self.prep = paths, sha1s, prep

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        try:
            image, _ = load_rgb(self.paths[i], max_pixels=None)  # sizes were checked with the stimuli
        except ImageProblem as problem:
            raise InputError(
                f"{self.paths[i]}: {problem} (it opened when the stimuli were checked: did it change?)"
            ) from problem
        return to_tensor(image, self.prep), self.sha1s[i]


def response_store(network: Network, cache_dir: str | Path | None = None) -> ResponseStore:
    """The network's per-picture cache in ``cache_dir`` (default: :func:`default_cache_dir`)."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    return ResponseStore(cache_dir / "responses" / response_key(network), network)


def prefetch_responses(
    stimuli: Stimuli,
    networks: list[Network],
    cache_dir: str | Path | None = None,
    batch_size: int = 32,
    device: str = "auto",
    workers: int | None = None,
    progress: bool = True,
) -> int:
    """Fill the caches of several networks with one shared picture decoding (see
    :func:`compute_missing_shared`); a later :func:`extract` of each is then a cache read."""
    stores = [response_store(network, cache_dir) for network in networks]
    return compute_missing_shared(stimuli, networks, stores, batch_size, device, workers, progress)


def compute_missing(
    stimuli: Stimuli,
    network: Network,
    store: ResponseStore,
    batch_size: int = 32,
    device: str = "auto",
    workers: int | None = None,
    progress: bool = True,
) -> int:
    """Record every picture the store lacks; returns how many were computed."""
    return compute_missing_shared(stimuli, [network], [store], batch_size, device, workers, progress)


def compute_missing_shared(
    stimuli: Stimuli,
    networks: list[Network],
    stores: list[ResponseStore],
    batch_size: int = 32,
    device: str = "auto",
    workers: int | None = None,
    progress: bool = True,
) -> int:
    """Record, for each network, every picture its store lacks, decoding each picture once for all
    of them (e.g. a network's random-init controls, which share its preprocessing). Returns how
    many pictures were decoded."""
    if len({network.prep for network in networks}) > 1:
        raise ValueError("networks that share picture decoding must share their preprocessing")
    todo, lacking = _lacking(stimuli, stores)
    if todo.empty:
        return 0
    chosen = pick_device(device)
    for network in networks:
        network.to(chosen)
    prep = networks[0].prep
    loader = _picture_loader(todo, prep, batch_size, workers, chosen)
    bar = _progress_bar(networks, len(todo), progress)
    try:
        for batch, names in loader:
            _record_batch(batch, names, prep, chosen, list(zip(networks, stores)), lacking)
            bar.update(len(names))
    finally:
        bar.close()
    return len(todo)


def _lacking(stimuli: Stimuli, stores: list[ResponseStore]) -> tuple[pd.DataFrame, dict[str, list[bool]]]:
    """The pictures (one row per distinct SHA-1, in stimuli order) that at least one store lacks, and
    {sha1: [whether store s lacks it, for each store]} over every distinct picture (one look per file)."""
    first = stimuli.table.drop_duplicates("sha1")
    lacking = {sha1: [not store.has(sha1) for store in stores] for sha1 in first["sha1"]}  # one look per file
    todo = first[[any(lacking[sha1]) for sha1 in first["sha1"]]]
    return todo, lacking


def _picture_loader(
    todo: pd.DataFrame, prep: Preprocessing, batch_size: int, workers: int | None, device: torch.device
) -> torch.utils.data.DataLoader:
    """Batches of (unnormalised pictures float32 [B, 3, crop, crop] in [0, 1], their SHA-1s) of the
    ``todo`` rows, decoded by ``workers`` processes (default: up to 4, one CPU core left free)."""
    workers = max(0, min(4, (os.cpu_count() or 1) - 1)) if workers is None else workers
    return torch.utils.data.DataLoader(
        _Pictures(list(todo["path"]), list(todo["sha1"]), prep),
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )


def _progress_bar(networks: list[Network], total: int, progress: bool) -> tqdm:
    """A progress bar over ``total`` pictures, named by the networks (``x N`` for N of them)."""
    names_shown = ", ".join(dict.fromkeys(network.name for network in networks))
    return tqdm(
        total=total,
        desc=f"responses {names_shown}" + (f" x {len(networks)}" if len(networks) > 1 else ""),
        unit="img",
        disable=not progress,
    )


def _record_batch(
    batch: torch.Tensor,
    names: list[str],
    prep: Preprocessing,
    device: torch.device,
    pairs: list[tuple[Network, ResponseStore]],
    lacking: dict[str, list[bool]],
) -> None:
    """Record one decoded batch (float32 [B, 3, crop, crop] in [0, 1], SHA-1s ``names``) into every
    (network, store) pair that lacks some of its pictures: per picture one float32 vector
    [all sites' units | readout features | image statistics]."""
    stats = image_statistics(batch).to(device)  # on the CPU, in float64: the same numbers everywhere
    batch = batch.to(device, non_blocking=True)
    normalised = normalise(batch, prep)
    for s, (network, store) in enumerate(pairs):
        need = [i for i, sha1 in enumerate(names) if lacking[sha1][s]]
        if not need:
            continue
        part = normalised if len(need) == len(names) else normalised[need]
        means, readout = record_fixed(network, part)
        vectors = torch.cat([means[s] for s in network.units] + [readout, stats[need]], dim=1).cpu().numpy()
        for i, vector in zip(need, vectors):
            store.put(names[i], vector)


def _assemble(rows: pd.DataFrame, store: ResponseStore, folder: Path | None) -> tuple[dict[str, np.ndarray], list[str]]:
    """One dataset's arrays {part: [n_images, width]}, filled picture by picture from the store;
    with ``folder`` the response arrays are temporary .npy files there, so memory stays bounded
    (the few image statistics stay in memory). Also returns the SHA-1s whose entries were unreadable."""
    arrays, unreadable = {}, []
    try:
        for name, width in store.layout:
            shape = (len(rows), width)
            if folder is None or name == "image_stats":
                arrays[name] = np.empty(shape, np.float32)
            else:
                folder.mkdir(parents=True, exist_ok=True)
                temporary = temporary_path(folder / f"{name}.npy")
                arrays[name] = np.lib.format.open_memmap(temporary, "w+", np.float32, shape)
                reserve(temporary)  # a full disk: an OSError now, not a bus error later
        for i, sha1 in enumerate(rows["sha1"]):
            vector = store.get(sha1)
            if vector is None:
                unreadable.append(sha1)
                continue
            for name, part in store.split(vector[None, :]).items():
                arrays[name][i] = part[0]
    except BaseException:  # no temporary file outlives a failure
        for array in arrays.values():
            if isinstance(array, np.memmap):
                Path(str(array.filename)).unlink(missing_ok=True)
        raise
    return arrays, unreadable


def _publish(arrays: dict[str, np.ndarray], folder: Path) -> dict[str, np.ndarray]:
    """Rename the finished temporary .npy files to their names (atomically); reopen them read-only."""
    out = {}
    for name, array in arrays.items():
        if not isinstance(array, np.memmap):
            out[name] = array
            continue
        array.flush()
        temporary = Path(str(array.filename))
        del array
        os.replace(temporary, folder / f"{name}.npy")
        out[name] = np.load(folder / f"{name}.npy", mmap_mode="r")
    return out


def extract(
    stimuli: Stimuli,
    network: Network,
    run: str | Path | None = None,
    cache_dir: str | Path | None = None,
    batch_size: int = 32,
    device: str = "auto",
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, Responses]:
    """Responses of every dataset in ``stimuli``: computed where not cached, then assembled.

    The network is moved to ``device`` (where it stays).

    Parameters
    ----------
    stimuli : Stimuli
        The pictures (``table`` with dataset, path, sha1).
    network : Network
        The network whose probe sites and readout site are recorded.
    run : path, optional
        Write ``responses/<dataset>/<site>.npy`` there and return them memory-mapped.
    cache_dir : path, optional
        The per-picture response cache (default ``$EMOSELECT_CACHE`` or ~/.cache/emoselect).
    batch_size : int
        Pictures per forward pass.
    device : str
        ``auto``, ``cpu``, ``cuda``, ``cuda:1``, ``mps``.
    workers : int, optional
        Picture-decoding processes.
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict[str, Responses]
        Per dataset: ``sites`` {site: float32 [n_pictures, n_units]} (spatial means), ``readout``
        float32 [n_pictures, readout_dim], ``image_stats`` (one row per picture).
    """
    store = response_store(network, cache_dir)
    if store.folder.is_dir():
        remove_stale_temporaries(store.folder)  # left by a killed run
    compute_missing(stimuli, network, store, batch_size, device, workers, progress)
    results = {}
    for dataset in stimuli.datasets:
        rows = stimuli.of(dataset)
        folder = Path(run) / "responses" / dataset if run is not None else None
        arrays, unreadable = _assemble(rows, store, folder)
        if unreadable:  # damaged cache entries: recompute them once
            for sha1 in unreadable:
                store.path(sha1).unlink(missing_ok=True)
            compute_missing(stimuli, network, store, batch_size, device, workers, progress)
            arrays, unreadable = _assemble(rows, store, folder)
            if unreadable:
                raise InputError(f"the response cache in {store.folder} cannot be written or read back")
        if folder is not None:
            arrays = _publish(arrays, folder)
        stats = pd.DataFrame(arrays.pop("image_stats"), columns=list(IMAGE_STATISTICS))
        if folder is not None:
            write_csv_atomic(folder / "image_stats.csv", stats)
        readout = arrays.pop(network.readout_site)
        results[dataset] = Responses(dataset, arrays, network.readout_site, readout, stats)
    return results


def load_responses(run: str | Path, dataset: str, sites: list[str], readout_site: str | None = None) -> Responses:
    """Read one dataset's responses back from a run folder.

    Parameters
    ----------
    run : path
        The run folder.
    dataset : str
        The dataset's name.
    sites : list[str]
        Probe sites to read.
    readout_site : str, optional
        Also read the readout features (else an empty [n, 0] array).

    Returns
    -------
    Responses
        Memory-mapped arrays, rows in stimuli.csv order.
    """
    folder = Path(run) / "responses" / dataset
    if not folder.is_dir():
        raise InputError(f"{folder} not found: run `emoselect extract` for this run folder first")

    def read(name: str) -> np.ndarray:
        path = folder / f"{name}.npy"
        if not path.is_file():
            raise InputError(f"{path} not found: the run's responses are incomplete; rerun `emoselect extract`")
        return np.load(path, mmap_mode="r")

    stats_path = folder / "image_stats.csv"
    stats = pd.read_csv(stats_path) if stats_path.is_file() else pd.DataFrame(columns=list(IMAGE_STATISTICS))
    return Responses(
        dataset,
        {s: np.asarray(read(s)) for s in sites},
        readout_site or "",
        read(readout_site) if readout_site else np.empty((0, 0), np.float32),
        stats,
    )
