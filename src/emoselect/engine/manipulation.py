"""Manipulation: scale chosen channels of one probe site by beta and measure the readout heads.

Because ReLU(beta * x) = beta * ReLU(x) for beta >= 0, a change of ReLU slope (the paper's
attention gain) or a lesion (beta = 0) is a per-channel scale of the site's output. A *condition*
is a gain vector over the units of one site; the engine returns, for every condition, picture and
head, the head's margin (logit of the emotion minus logit of the rest).

The engine (``evaluate``) walks down the network once per chunk of pictures: it runs the network to
the stage that holds a site, keeps that stage's input, and then runs only the rest of the network
for the site's conditions, several conditions per batch. ``evaluate_naive`` is the plain way (a full
forward pass with a scaling hook, one condition at a time); the tests and the benchmark hold the two
equal. Where a network cannot be written as a chain of stages, the engine falls back to the plain way.

A condition may also add a per-unit ``offset`` after the gain (g * x + o): mean-ablation sets units
to their mean response (g = 0, o = the mean). The fast paths below carry offsets exactly where
:func:`emoselect.engine.suffix.affine_passes` holds (the site's output >= 0 and only ReLU, max
pooling or unpadded average pooling before the next convolution or the readout: there the pool of
a constant map is the constant); elsewhere conditions with offsets take the plain scaled path.

How the rest of the network is run for a site's conditions (all exact up to float rounding):

| case | path | cost per condition |
|---|---|---|
| only pooling/ReLU/flatten between site and readout | ``_suffix_rescaled``: margins linear in the gains | one multiply-add per channel |
| a plain convolution next (through pooling/ReLU) | ``_suffix_linear``: conv(g * x) = conv(x) + s * conv(v * x) | the network after that convolution |
| otherwise | ``_suffix_scaled``: scale the site's output, run the rest | the network after the site |
| site inside a stage (e.g. a residual block) | ``_suffix_nested``: a scaling hook in that stage | that stage and the rest |

Where the manipulation happens: at the probe site's output, i.e. after the convolution, its
normalisation (BatchNorm, if any) and its activation.
"""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..analysis.records import Head
from ..base.files import savez_atomic
from ..pictures.images import load_rgb
from .forward import as_input, autocast, gain_shape, record, repeated
from .network import Network
from .replay import block_tensors, replay_source, replaying
from .suffix import (
    HOMOGENEOUS,
    _chain,
    _Margins,
    _next_convolution,
    _run,
    _scaled_copies,
    _scaling_hook,
    _site_stage,
    _suffix_linear,
    _suffix_nested,
    _suffix_rescaled,
    _suffix_scaled,
    affine_passes,
    hook_arrays,
)
from .tensors import normalise, to_tensor


def _chunks(pictures: torch.Tensor | Iterable[torch.Tensor], chunk: int) -> Iterator[torch.Tensor]:
    """Normalised picture batches: from a tensor [n, 3, H, W] or an iterable of tensors."""
    if torch.is_tensor(pictures):
        for start in range(0, len(pictures), chunk):
            yield pictures[start : start + chunk]
    else:
        yield from pictures


def gain_rescales_readout(network: Network, site: str) -> bool:
    """True when only channel-wise positively homogeneous stages (pooling, ReLU, flatten) lie between
    ``site`` and the readout: a gain there only rescales the heads' input features, which a fitted
    linear head can partly absorb, so such cells say little about the network's own processing."""
    if network.stages is None or network.layout(site) != "nchw":
        return False
    index, direct = _site_stage(network, site)
    if not direct:
        return False
    passive = HOMOGENEOUS + (torch.nn.Flatten,)
    return all(isinstance(module, passive) or (name == "global_pool") for name, module in network.stages[index + 1 :])


@torch.inference_mode()
def evaluate(
    network: Network,
    pictures: torch.Tensor | Iterable[torch.Tensor],
    plan: dict[str, np.ndarray],
    heads: list[Head],
    how: Execution | None = None,
    blocks: dict[str, list[tuple[int, int]]] | None = None,
    offsets: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Head margins for every condition of every site, by the suffix engine.

    Memory is bounded by ``how.chunk_images`` pictures and ``how.batch_samples`` picture-conditions
    per pass.
    A site's conditions are evaluated in ``blocks`` (contiguous row ranges of its gains) that share
    the walk down the network but nothing else, so a block's margins are the same numbers whether
    it is evaluated alone or beside others (what lets a cluster shard compute one block).

    Parameters
    ----------
    network : Network
        The network (on its device); without a stage chain, :func:`evaluate_naive` is used.
    pictures : Tensor [n, 3, H, W] or iterable of such batches
        Normalised input.
    plan : dict[str, ndarray]
        {site: gains [n_conditions, n_units]} (1 = intact, 0 = lesioned).
    heads : list[Head]
        Readout heads on the network's readout features.
    how : Execution, optional
        Pictures per walk down the network, picture-conditions per forward pass, a progress bar
        (the numbers do not depend on it).
    blocks : dict[str, list[tuple[int, int]]], optional
        Per site, (start, stop) row ranges covering its conditions in order; default one block.
    offsets : dict[str, ndarray], optional
        {site: [n_conditions, n_units]} added after the gain (g * x + o; in the site's output units);
        a site without one has none.

    Returns
    -------
    dict[str, ndarray]
        {site: float32 [n_conditions, n, n_heads]} margins (logit of the emotion minus logit of the rest).
    """
    how = how or Execution()
    blocks = {site: _checked_blocks(site, (blocks or {}).get(site), len(gains)) for site, gains in plan.items()}
    offsets = _checked_offsets(plan, offsets)
    if network.stages is None and network.replays:
        return _evaluate_replayed(network, pictures, plan, heads, how, blocks, offsets)
    if network.stages is None:  # the plain way: every condition alone, blocks change nothing
        return evaluate_naive(network, pictures, plan, heads, how.chunk_images, how.progress, offsets)
    margins_of = _Margins(heads, network.device)
    order = sorted(plan, key=lambda s: _site_stage(network, s)[0])
    rescales = {site: gain_rescales_readout(network, site) for site in order}
    results: dict[str, list[np.ndarray]] = {site: [] for site in order}
    sweep = _Sweep(
        plan=plan,
        offsets=offsets,
        blocks=blocks,
        order=order,
        rescales=rescales,
        batch_samples=how.batch_samples,
        margins_of=margins_of,
    )
    bar = tqdm(
        total=sum(len(g) for g in plan.values()) * len(pictures) if torch.is_tensor(pictures) else None,
        unit="pass",
        desc="manipulations",
        disable=not how.progress,
    )
    for batch in _chunks(pictures, how.chunk_images):
        with autocast(network):
            _evaluate_chunk(network, as_input(batch.to(network.device)), sweep, results)
        bar.update(sum(len(g) for g in plan.values()) * batch.shape[0])
    bar.close()
    return {site: np.concatenate(parts, axis=1) for site, parts in results.items()}


def _checked_offsets(plan: dict[str, np.ndarray], offsets: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """``offsets`` restricted to sites with a nonzero one, each checked to match its gains' shape."""
    checked = {}
    for site, values in (offsets or {}).items():
        if site not in plan:
            raise ValueError(f"offsets for {site}, which has no gains in the plan")
        values = np.asarray(values, np.float32)
        if values.shape != np.shape(plan[site]):
            raise ValueError(f"offsets of {site} have shape {values.shape}, its gains {np.shape(plan[site])}")
        if values.any():
            checked[site] = values
    return checked


def _checked_blocks(
    site: str, ranges: list[tuple[int, int]] | None, n: int, cover: bool = True
) -> list[tuple[int, int]]:
    """Row ranges [(start, stop), ...] of a site's ``n`` conditions, in order and disjoint (default:
    one block of all); with ``cover`` they must cover every condition."""
    if not ranges:
        return [(0, n)]
    starts, stops = [a for a, _ in ranges], [b for _, b in ranges]
    ordered = starts[0] >= 0 and stops[-1] <= n and all(b <= a for a, b in zip(starts[1:], stops[:-1]))
    covering = starts[0] == 0 and stops[-1] == n and starts[1:] == stops[:-1]
    if not ordered or any(a >= b for a, b in ranges) or (cover and not covering):
        what = "cover its conditions in order" if cover else "be ordered, disjoint row ranges"
        raise ValueError(f"blocks of {site} ({n} conditions) must {what}, got {ranges}")
    return list(ranges)


@dataclass(frozen=True, kw_only=True)
class _Sweep:
    """What :func:`evaluate` keeps fixed over its chunks of pictures: ``plan`` {site: gains
    [n_conditions, n_units]}, ``offsets`` {site: [n_conditions, n_units]} (sites with any),
    ``blocks`` {site: [(start, stop), ...]} (row ranges of its gains), the
    sites in stage ``order``, ``rescales`` {site: :func:`gain_rescales_readout`}, ``batch_samples``
    (picture-conditions per forward pass) and the heads as one map ``margins_of``."""

    plan: dict[str, np.ndarray]
    offsets: dict[str, np.ndarray]
    blocks: dict[str, list[tuple[int, int]]]
    order: list[str]
    rescales: dict[str, bool]
    batch_samples: int
    margins_of: _Margins


@dataclass(frozen=True, kw_only=True)
class _SiteChunk:
    """One site on one chunk of n pictures, as each block of its conditions sees it: ``site``, held by
    stage ``index`` (input ``x`` [n, ...]; ``base``: the stage's output when the site *is* the stage,
    else None); ``per_pass``: conditions per forward pass; ``rescales``: whether its gains only rescale
    the readout features (:func:`gain_rescales_readout`); ``margins_of``: the heads; ``memo``: the
    site's block-independent intermediate results on this chunk (filled by the first block)."""

    site: str
    index: int
    x: torch.Tensor
    base: torch.Tensor | None
    per_pass: int
    rescales: bool
    margins_of: _Margins
    memo: dict[str, torch.Tensor]


def _evaluate_chunk(network: Network, batch: torch.Tensor, sweep: _Sweep, results: dict[str, list[np.ndarray]]) -> None:
    """:func:`evaluate` on one chunk of pictures [n, 3, H, W]: each site's margins (float32
    [n_conditions, n, n_heads]) appended to ``results`` (the walk down the chain, then per block of
    conditions the cheapest exact suffix)."""
    n = batch.shape[0]
    x, position = batch, 0
    per_pass = max(1, sweep.batch_samples // n)
    for site in sweep.order:
        index, direct = _site_stage(network, site)
        stages = _chain(network)
        x = _run(stages[position:index], x)
        position = index
        base = stages[index][1](x) if direct else None
        gains = torch.as_tensor(sweep.plan[site], dtype=torch.float32, device=network.device)
        offsets = sweep.offsets.get(site)
        shifts = torch.as_tensor(offsets, device=network.device) if offsets is not None else None
        at = _SiteChunk(
            site=site,
            index=index,
            x=x,
            base=base,
            per_pass=per_pass,
            rescales=sweep.rescales[site],
            margins_of=sweep.margins_of,
            memo={},  # what every block of the site computes alike, computed once
        )
        margins = [
            _suffix_margins(network, at, gains[a:b], shifts[a:b] if shifts is not None else None)
            for a, b in sweep.blocks[site]
        ]
        results[site].append(torch.cat(margins).float().cpu().numpy())


def _suffix_margins(
    network: Network, at: _SiteChunk, gains: torch.Tensor, offsets: torch.Tensor | None
) -> torch.Tensor:
    """Margins [G, n, n_heads] of one block of conditions (gains [G, units], optional ``offsets``
    [G, units]) at the site ``at`` describes on this chunk."""
    if offsets is not None and not bool((offsets != 0).any()):
        offsets = None
    if at.base is None:
        return _suffix_nested(network, at.site, at.index, at.x, gains, at.per_pass, at.margins_of, offsets)
    stages = _chain(network)
    positive = bool((gains >= 0).all()) and network.layout(at.site) == "nchw"
    j = _next_convolution(stages, at.index) if positive else None
    between = stages[at.index + 1 :] if at.rescales else stages[at.index + 1 : j if j is not None else at.index + 1]
    exact = affine_passes(between, at.base, offsets)
    if positive and at.rescales and exact:
        return _suffix_rescaled(stages, at.index, at.base, gains, at.margins_of, at.memo, offsets)
    if j is not None and exact:
        between, after = stages[at.index + 1 : j], stages[j:]
        return _suffix_linear(between, after, at.base, gains, at.per_pass, at.margins_of, at.memo, offsets)
    layout = network.layout(at.site)
    return _suffix_scaled(stages, at.index, at.base, gains, at.per_pass, at.margins_of, layout, offsets)


def _evaluate_replayed(
    network: Network,
    pictures: torch.Tensor | Iterable[torch.Tensor],
    plan: dict[str, np.ndarray],
    heads: list[Head],
    how: Execution,
    blocks: dict[str, list[tuple[int, int]]],
    offsets: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """:func:`evaluate` for networks whose sites are blocks in one container, or inside such blocks
    (ViTs, CLIP towers: block outputs and MLP activations). Per chunk of pictures one pass records
    each planned block's output (or, for a site inside a block, that block's input); each condition
    then scales the block's output and replays it in place of the block — or feeds the block its
    input with a scaling hook on the inner site — (:func:`emoselect.network.replaying`), so only the
    input stem and the blocks from the site on run. Same arguments and result as :func:`evaluate`."""
    margins_of = _Margins(heads, network.device)
    results: dict[str, list[np.ndarray]] = {site: [] for site in plan}
    sources = {site: replay_source(network, site) for site in plan}
    bar = tqdm(unit="pass", desc="manipulations", disable=not how.progress)
    for batch in _chunks(pictures, how.chunk_images):
        batch = batch.to(network.device)
        n = batch.shape[0]
        per_pass = max(1, how.batch_samples // n)
        tensors = block_tensors(network, batch, set(sources.values()))
        for site, site_gains in plan.items():
            gains = torch.as_tensor(site_gains, dtype=torch.float32, device=network.device)
            shifts = torch.as_tensor(offsets[site], device=network.device) if site in offsets else None
            parts = []
            for block_start, block_stop in blocks[site]:  # passes never mix blocks (see evaluate)
                for start in range(block_start, block_stop, per_pass):
                    rows = slice(start, min(start + per_pass, block_stop))
                    g, o = gains[rows], shifts[rows] if shifts is not None else None
                    features = _replayed(network, site, sources[site][0], tensors[sources[site]], g, batch, o)
                    parts.append(margins_of(features).reshape(len(g), n, -1))
            results[site].append(torch.cat(parts).float().cpu().numpy())
            bar.update(len(gains) * n)
    bar.close()
    return {site: np.concatenate(parts, axis=1) for site, parts in results.items()}


def _replayed(
    network: Network,
    site: str,
    block: str,
    base: torch.Tensor,
    g: torch.Tensor,
    batch: torch.Tensor,
    offsets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Readout features [G * n, d] of G conditions (gains ``g`` [G, units], optional ``offsets``) at
    ``site``: ``base`` is the output of block site ``site`` [n, ...], or the input of ``block``
    holding ``site``."""
    if block == site:
        with replaying(network, site, _scaled_copies(base, g, network.layout(site), offsets)):
            return record(network, batch, sites=[])[1]
    n = base.shape[0]
    scale, shift = hook_arrays(g, offsets, n, network.layout(site))
    with _scaling_hook(network.module(network.sites[site]), scale, shift):
        with replaying(network, block, repeated(base, len(g)), feed=True):
            return record(network, batch, sites=[])[1]


@torch.inference_mode()
def evaluate_naive(
    network: Network,
    pictures: torch.Tensor | Iterable[torch.Tensor],
    plan: dict[str, np.ndarray],
    heads: list[Head],
    batch: int = 32,
    progress: bool = False,
    offsets: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """The plain way: for each condition, a full forward pass (stopped at the readout layer) with a
    hook scaling the site's output (and adding its offset).

    Parameters
    ----------
    network, pictures, plan, heads, offsets
        As :func:`evaluate`.
    batch : int
        Pictures per forward pass.
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict[str, ndarray]
        {site: float32 [n_conditions, n, n_heads]}, the same as :func:`evaluate` up to float rounding.
    """
    device = network.device
    margins_of = _Margins(heads, device)
    results = {}
    for site, gains in plan.items():
        per_condition = []
        shifts = (offsets or {}).get(site)
        for c, g in enumerate(tqdm(gains, desc=f"naive {site}", disable=not progress, leave=False)):
            scale = gain_shape(torch.as_tensor(g, dtype=torch.float32, device=device)[None], network.layout(site))
            shift = None
            if shifts is not None and np.any(shifts[c]):
                shift = gain_shape(
                    torch.as_tensor(shifts[c], dtype=torch.float32, device=device)[None], network.layout(site)
                )
            with _scaling_hook(network.module(network.sites[site]), scale, shift):
                margins = [
                    margins_of(record(network, images.to(device), sites=[])[1]) for images in _chunks(pictures, batch)
                ]
            per_condition.append(torch.cat(margins).cpu().numpy())
        results[site] = np.stack(per_condition)
    return results


def load_pictures(paths: list[str], network: Network) -> torch.Tensor:
    """The pictures as one normalised tensor [n, 3, crop, crop] (float32, CPU)."""
    tensors = [to_tensor(load_rgb(p, max_pixels=None)[0], network.prep) for p in paths]  # checked with the stimuli
    return normalise(torch.stack(tensors), network.prep)


@dataclass(frozen=True, kw_only=True)
class Execution:
    """How a sweep runs (the numbers do not depend on it): ``chunk_images`` pictures per
    chunk (the unit of the result cache and of memory), ``batch_samples`` picture-conditions per
    forward pass, and a progress bar."""

    chunk_images: int = 32
    batch_samples: int = 64
    progress: bool = True


def evaluate_cached(
    network: Network,
    pictures: list[tuple[str, str]],
    plan: dict[str, np.ndarray],
    heads: list[Head],
    cache: ResultCache,
    blocks: dict[str, list[tuple[int, int]]] | None = None,
    how: Execution | None = None,
    offsets: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """:func:`evaluate` on picture files, ``how.chunk_images`` pictures at a time. Each chunk's result
    per site and block of conditions is served from or stored in ``cache``, keyed by the site's key in
    ``cache.keys``, the block's gains and the chunk's picture SHA-1s: an interrupted sweep resumes at its
    first unfinished piece, and a cluster shard that fills some blocks' entries (evaluating only those
    blocks: the same numbers, see :func:`evaluate`) leaves nothing for the merge to compute.

    ``pictures``: the n pictures as (path, SHA-1); ``plan``: {site: gains [n_conditions, n_units]};
    ``blocks``: {site: [(start, stop), ...]}, ordered and disjoint (default: one block of every
    condition); a site of ``plan`` missing from a given ``blocks`` is skipped; ``offsets`` as
    :func:`evaluate` (part of the key where nonzero). Returns {site: float32
    margins [n_conditions of its blocks, n, n_heads]}, as :func:`evaluate`.
    """
    how = how or Execution()
    paths, sha1s = [path for path, _ in pictures], [sha1 for _, sha1 in pictures]
    chunk_images = how.chunk_images
    sites = list(blocks) if blocks is not None else list(plan)
    blocks = {site: _checked_blocks(site, (blocks or {}).get(site), len(plan[site]), cover=False) for site in sites}
    offsets = _checked_offsets(plan, offsets)
    pieces = [(site, block) for site in sites for block in blocks[site]]
    parts: dict[str, list[np.ndarray]] = {site: [] for site in sites}
    starts = range(0, len(paths), chunk_images)
    for start in tqdm(starts, desc="manipulations (picture chunks)", unit="chunk", disable=not how.progress):
        chunk = slice(start, start + chunk_images)
        piece_keys = {
            (site, (a, b)): _piece_key(cache.keys[site], plan, offsets, site, (a, b), sha1s[chunk])
            for site, (a, b) in pieces
        }
        done = {piece: cache.get(key) for piece, key in piece_keys.items()}
        todo = [piece for piece in pieces if done[piece] is None]
        if todo:
            pictures_now = load_pictures(paths[chunk], network)
            computed = _evaluate_pieces(network, pictures_now, plan, todo, heads, how, offsets)
            for piece, values in computed.items():
                cache.put(piece_keys[piece], values)
                done[piece] = values
        for site in sites:  # a site's blocks in order: its conditions in order
            parts[site].append(np.concatenate([done[site, block] for block in blocks[site]]))
    return {site: np.concatenate(chunks, axis=1) for site, chunks in parts.items()}


def _piece_key(
    key: str,
    plan: dict[str, np.ndarray],
    offsets: dict[str, np.ndarray],
    site: str,
    block: tuple[int, int],
    sha1s: list[str],
) -> str:
    """The result-cache key of one site's block of conditions on one chunk of pictures: the site's
    key, the block's gains (and offsets, where it has any) and the pictures' SHA-1s."""
    a, b = block
    shift = offsets[site][a:b] if site in offsets and offsets[site][a:b].any() else None
    extra = [] if shift is None else ["offsets", shift]
    return ResultCache.key(key, plan[site][a:b], *extra, *sha1s)


def _evaluate_pieces(
    network: Network,
    pictures: torch.Tensor,
    plan: dict[str, np.ndarray],
    pieces: list[tuple[str, tuple[int, int]]],
    heads: list[Head],
    how: Execution,
    offsets: dict[str, np.ndarray] | None = None,
) -> dict[tuple[str, tuple[int, int]], np.ndarray]:
    """{(site, (start, stop)): margins [stop - start, n, n_heads]} of the listed blocks, in one
    :func:`evaluate` call on the pictures [n, 3, H, W] (one walk down the network for all)."""
    sub_plan: dict[str, list[np.ndarray]] = {}
    sub_offsets: dict[str, list[np.ndarray]] = {}
    sub_blocks: dict[str, list[tuple[int, int]]] = {}
    for site, (a, b) in pieces:
        start = sum(len(g) for g in sub_plan.get(site, []))
        sub_plan.setdefault(site, []).append(plan[site][a:b])
        if offsets and site in offsets:
            sub_offsets.setdefault(site, []).append(offsets[site][a:b])
        sub_blocks.setdefault(site, []).append((start, start + b - a))
    stacked = {site: np.concatenate(gains) for site, gains in sub_plan.items()}
    shifts = {site: np.concatenate(parts) for site, parts in sub_offsets.items()}
    quiet = Execution(chunk_images=len(pictures), batch_samples=how.batch_samples, progress=False)
    margins = evaluate(network, pictures, stacked, heads, quiet, sub_blocks, shifts)
    out = {}
    for site, ranges in sub_blocks.items():
        for (a, b), piece in zip(ranges, [p for p in pieces if p[0] == site]):
            out[piece] = margins[site][a:b]
    return out


class ResultCache:
    """Engine results in a folder (one .npz per site, block of conditions and chunk of pictures),
    keyed by a hash of everything that determines them; written atomically, so an interrupted sweep
    resumes at its first unfinished piece. ``keys``: {site: a hash of everything besides its
    conditions and pictures that determines the site's margins (network, heads, ...)}."""

    def __init__(self, folder: Path | None, keys: dict[str, str] | None = None) -> None:
        self.folder = Path(folder) if folder else None
        self.keys = keys or {}

    @staticmethod
    def key(*parts: object) -> str:
        digest = hashlib.sha256()
        for part in parts:
            digest.update(part.tobytes() if isinstance(part, np.ndarray) else str(part).encode())
            digest.update(b"|")
        return digest.hexdigest()[:24]

    def get(self, key: str) -> np.ndarray | None:
        """The entry stored under ``key``, or None where there is none or it does not check: damaged,
        cut short, or another entry's content (each entry holds a digest of its key and values)."""
        path = self.folder / f"{key}.npz" if self.folder is not None else None
        if path is None or not path.is_file():
            return None
        try:
            with np.load(path) as entry:
                margins, check = entry["margins"], str(entry["check"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
            return None  # recomputed (and overwritten) by the caller
        return margins if check == self._check(key, margins) else None

    def put(self, key: str, array: np.ndarray) -> None:
        if self.folder is None:
            return
        savez_atomic(self.folder / f"{key}.npz", margins=array, check=np.array(self._check(key, array)))

    @staticmethod
    def _check(key: str, array: np.ndarray) -> str:
        """The digest an entry carries: its key, shape, dtype and values."""
        return ResultCache.key(key, array.shape, array.dtype.str, np.ascontiguousarray(array))
