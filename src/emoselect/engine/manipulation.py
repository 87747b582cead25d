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
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..analysis.records import Head
from ..base.files import save_npy_atomic
from ..pictures.images import load_rgb
from .forward import as_input, autocast, gain_shape, record, repeated
from .network import Network
from .readout import margin_weights
from .replay import block_tensors, replay_source, replaying
from .tensors import normalise, to_tensor


class _Margins:
    """The heads as one linear map: readout features [B, ...] -> margins [B, n_heads] (float32);
    ``weight`` [d, n_heads], ``bias`` [n_heads]."""

    def __init__(self, heads: list[Head], device):
        self.weight, self.bias = (torch.as_tensor(a, dtype=torch.float32, device=device) for a in margin_weights(heads))

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        with torch.autocast(features.device.type, enabled=False):  # the heads always in float32
            return features.flatten(1).float() @ self.weight + self.bias


def _chain(network: Network) -> list[tuple[str, torch.nn.Module]]:
    """The network's checked stage chain (the suffix engine runs only where there is one)."""
    if network.stages is None:
        raise ValueError(f"{network.name} is not a chain of stages: use the full-forward engine")
    return network.stages


def _site_stage(network: Network, site: str) -> tuple[int, bool]:
    """Index of the stage holding ``site`` and whether the site *is* that stage."""
    path = network.sites[site]
    for index, (stage, _) in enumerate(_chain(network)):
        if path == stage:
            return index, True
        if path.startswith(stage + "."):
            return index, False
    raise ValueError(f"site {site} is not in the network's stage chain")


@contextmanager
def _scaling_hook(module: torch.nn.Module, gains: torch.Tensor):
    """While active, multiplies the module's output by ``gains`` (:func:`emoselect.network.gain_shape`
    of [B, units], B matching the batch or 1)."""
    handle = module.register_forward_hook(lambda m, args, output: output * gains)
    try:
        yield
    finally:
        handle.remove()


def _run(stages, x: torch.Tensor) -> torch.Tensor:
    for _, module in stages:
        x = module(x)
    return x


def _chunks(pictures, chunk: int):
    """Normalised picture batches: from a tensor [n, 3, H, W] or an iterable of tensors."""
    if torch.is_tensor(pictures):
        for start in range(0, len(pictures), chunk):
            yield pictures[start : start + chunk]
    else:
        yield from pictures


# stages through which a per-channel gain >= 0 passes unchanged: f(g * x) = g * f(x)
HOMOGENEOUS = (
    torch.nn.ReLU,
    torch.nn.MaxPool2d,
    torch.nn.AvgPool2d,
    torch.nn.AdaptiveAvgPool2d,
    torch.nn.AdaptiveMaxPool2d,
    torch.nn.Identity,
    torch.nn.Dropout,
)


def _next_convolution(stages, index: int) -> int | None:
    """Index j of the first stage after ``index`` if it is a plain convolution reached only through
    channel-wise positively homogeneous stages (pooling, ReLU); else None."""
    j = index + 1
    while j < len(stages) and isinstance(stages[j][1], HOMOGENEOUS):
        j += 1
    if j < len(stages) and type(stages[j][1]) is torch.nn.Conv2d:
        conv = stages[j][1]
        if conv.groups == 1 and conv.padding_mode == "zeros":
            return j
    return None


def _directions(gains: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, list[tuple[int, float]]]]:
    """Group conditions whose gain vectors differ from 1 along the same direction:
    g = 1 + s * v. Returns [(channels where v != 0, v on them, [(condition, s), ...])]."""
    groups: dict[bytes, tuple] = {}
    delta = (gains - 1).cpu().numpy()
    for c, d in enumerate(delta):
        support = np.flatnonzero(d)
        scale = float(d[support[0]]) if len(support) else 0.0
        direction = d[support] / scale if len(support) else d[support]
        key = support.tobytes() + direction.astype(np.float32).tobytes()
        if key not in groups:
            groups[key] = (
                torch.as_tensor(support, device=gains.device),
                torch.as_tensor(direction, dtype=gains.dtype, device=gains.device),
                [],
            )
        groups[key][2].append((c, scale))
    return list(groups.values())


def _suffix_linear(
    stages, index: int, j: int, base: torch.Tensor, gains: torch.Tensor, per_pass: int, heads, memo: dict
):
    """Margins [n_conditions, n, n_heads] for every condition, using that the first convolution after
    the site is linear:
    conv(g * p) = conv(p) + s * conv_without_bias(v * p) for g = 1 + s * v. The intact convolution is
    computed once per chunk (kept in ``memo`` for the site's other blocks), the second term once per
    direction (on its channels only), and each condition then costs one multiply-add instead of the
    convolution."""
    conv = stages[j][1]
    if "intact" not in memo:
        memo["pooled"] = _run(stages[index + 1 : j], base)
        memo["intact"] = conv(memo["pooled"])
    pooled, intact = memo["pooled"], memo["intact"]
    out: list[torch.Tensor] = [torch.empty(0)] * len(gains)
    for support, direction, members in _directions(gains):
        if len(support):
            term = torch.nn.functional.conv2d(
                as_input(pooled[:, support] * direction[None, :, None, None]),
                conv.weight[:, support],
                None,
                conv.stride,
                conv.padding,
                conv.dilation,
            )
        n = intact.shape[0]
        for start in range(0, len(members), per_pass):
            batch = members[start : start + per_pass]
            pre = torch.empty(
                (len(batch) * n, *intact.shape[1:]),
                dtype=intact.dtype,
                device=intact.device,
                memory_format=torch.channels_last,
            )  # the chunk's layout (see network.as_input)
            for i, (_, scale) in enumerate(batch):  # written in place: no stacked copies
                if len(support):
                    torch.add(intact, term, alpha=scale, out=pre[i * n : (i + 1) * n])
                else:
                    pre[i * n : (i + 1) * n] = intact
            margins = heads(_run(stages[j + 1 :], pre))
            for (c, _), value in zip(batch, margins.reshape(len(batch), n, -1)):
                out[c] = value
    return torch.stack(out)


def _suffix_rescaled(stages, index: int, base: torch.Tensor, gains: torch.Tensor, heads, memo: dict) -> torch.Tensor:
    """Margins for every condition when only channel-wise homogeneous stages follow the site
    (:func:`gain_rescales_readout`): the readout features of channel c are g_c times the intact
    ones, so margin = bias + sum_c g_c * (features_c . weight_c). One pass per chunk (kept in
    ``memo`` for the site's other blocks), then a matrix product over all conditions. Needs gains >= 0."""
    if "features" not in memo:  # the network's own pass, in its precision
        memo["features"] = _run(stages[index + 1 :], base).flatten(1).float()  # [n, C * S], channel-major
    with torch.autocast(base.device.type, enabled=False):  # the heads always in float32
        if "per_channel" not in memo:
            n, channels = base.shape[0], base.shape[1]
            weight = heads.weight.reshape(channels, -1, heads.weight.shape[1])  # [C, S, n_heads]
            memo["per_channel"] = torch.einsum("ncs,csh->nch", memo["features"].reshape(n, channels, -1), weight)
        return torch.einsum("gc,nch->gnh", gains, memo["per_channel"]) + heads.bias


def _scaled_copies(base: torch.Tensor, gains: torch.Tensor, layout: str) -> torch.Tensor:
    """A site's output ``base`` [n, ...] once per condition, scaled by its gains [G, units]: [G * n, ...]."""
    return (base.unsqueeze(0) * gain_shape(gains, layout)[:, None]).reshape(-1, *base.shape[1:])


def _suffix_scaled(
    stages, index: int, base: torch.Tensor, gains: torch.Tensor, per_pass: int, heads, layout: str
) -> torch.Tensor:
    """Margins for every condition: scale the site's output ``base`` (in its ``layout``) and run the
    rest of the chain."""
    out = []
    for start in range(0, len(gains), per_pass):
        g = gains[start : start + per_pass]
        scaled = _scaled_copies(base, g, layout)
        out.append(heads(_run(stages[index + 1 :], scaled)).reshape(len(g), base.shape[0], -1))
    return torch.cat(out)


def _suffix_nested(
    network: Network, site: str, index: int, x: torch.Tensor, gains: torch.Tensor, per_pass: int, heads
) -> torch.Tensor:
    """Margins for every condition when the site lies inside stage ``index``: run that stage on the
    repeated input with a scaling hook on the site, then the rest of the chain."""
    out, n = [], x.shape[0]
    for start in range(0, len(gains), per_pass):
        g = gains[start : start + per_pass]
        scale = gain_shape(g.repeat_interleave(n, dim=0), network.layout(site))
        with _scaling_hook(network.module(network.sites[site]), scale):
            features = _run(_chain(network)[index:], repeated(x, len(g)))
        out.append(heads(features).reshape(len(g), n, -1))
    return torch.cat(out)


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
    pictures,
    plan: dict[str, np.ndarray],
    heads: list[Head],
    chunk_images: int = 32,
    batch_samples: int = 64,
    progress: bool = True,
    blocks: dict[str, list[tuple[int, int]]] | None = None,
) -> dict[str, np.ndarray]:
    """Head margins for every condition of every site, by the suffix engine.

    Memory is bounded by ``chunk_images`` pictures and ``batch_samples`` picture-conditions per pass.
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
    chunk_images, batch_samples : int
        Pictures per walk down the network; picture-conditions per forward pass.
    progress : bool
        Show a progress bar.
    blocks : dict[str, list[tuple[int, int]]], optional
        Per site, (start, stop) row ranges covering its conditions in order; default one block.

    Returns
    -------
    dict[str, ndarray]
        {site: float32 [n_conditions, n, n_heads]} margins (logit of the emotion minus logit of the rest).
    """
    blocks = {site: _checked_blocks(site, (blocks or {}).get(site), len(gains)) for site, gains in plan.items()}
    if network.stages is None and network.replays:
        return _evaluate_replayed(network, pictures, plan, heads, chunk_images, batch_samples, progress, blocks)
    if network.stages is None:  # the plain way: every condition alone, blocks change nothing
        return evaluate_naive(network, pictures, plan, heads, batch=chunk_images, progress=progress)
    margins_of = _Margins(heads, network.device)
    order = sorted(plan, key=lambda s: _site_stage(network, s)[0])
    rescales = {site: gain_rescales_readout(network, site) for site in order}
    results: dict[str, list[np.ndarray]] = {site: [] for site in order}
    bar = tqdm(
        total=sum(len(g) for g in plan.values()) * len(pictures) if torch.is_tensor(pictures) else None,
        unit="pass",
        desc="manipulations",
        disable=not progress,
    )
    for batch in _chunks(pictures, chunk_images):
        with autocast(network):
            _evaluate_chunk(network, as_input(batch.to(network.device)), plan, blocks, order, rescales, results,
                            batch_samples, margins_of)  # fmt: skip
        bar.update(sum(len(g) for g in plan.values()) * batch.shape[0])
    bar.close()
    return {site: np.concatenate(parts, axis=1) for site, parts in results.items()}


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


def _evaluate_chunk(network, batch, plan, blocks, order, rescales, results, batch_samples, margins_of) -> None:
    """:func:`evaluate` on one chunk of pictures [n, 3, H, W]: each site's margins appended to
    ``results`` (the walk down the chain, then per block of conditions the cheapest exact suffix)."""
    n = batch.shape[0]
    x, position = batch, 0
    per_pass = max(1, batch_samples // n)
    for site in order:
        index, direct = _site_stage(network, site)
        x = _run(network.stages[position:index], x)
        position = index
        base = network.stages[index][1](x) if direct else None
        gains = torch.as_tensor(plan[site], dtype=torch.float32, device=network.device)
        memo: dict = {}  # what every block of the site computes alike, computed once
        margins = [
            _suffix_margins(network, site, index, x, base, gains[a:b], per_pass, rescales[site], margins_of, memo)
            for a, b in blocks[site]
        ]
        results[site].append(torch.cat(margins).float().cpu().numpy())


def _suffix_margins(network, site, index, x, base, gains, per_pass, rescales, margins_of, memo) -> torch.Tensor:
    """Margins [G, n, n_heads] of one block of conditions (gains [G, units]) at ``site``, held by
    stage ``index`` (input ``x``; ``base``: the stage's output when the site *is* the stage, else None;
    ``memo``: the site's block-independent intermediate results on this chunk)."""
    if base is None:
        return _suffix_nested(network, site, index, x, gains, per_pass, margins_of)
    positive = bool((gains >= 0).all()) and network.layout(site) == "nchw"
    j = _next_convolution(network.stages, index) if positive else None
    if positive and rescales:
        return _suffix_rescaled(network.stages, index, base, gains, margins_of, memo)
    if j is not None:
        return _suffix_linear(network.stages, index, j, base, gains, per_pass, margins_of, memo)
    return _suffix_scaled(network.stages, index, base, gains, per_pass, margins_of, network.layout(site))


def _evaluate_replayed(
    network: Network, pictures, plan, heads, chunk_images: int, batch_samples: int, progress, blocks
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
    bar = tqdm(unit="pass", desc="manipulations", disable=not progress)
    for batch in _chunks(pictures, chunk_images):
        batch = batch.to(network.device)
        n = batch.shape[0]
        per_pass = max(1, batch_samples // n)
        tensors = block_tensors(network, batch, set(sources.values()))
        for site, site_gains in plan.items():
            gains = torch.as_tensor(site_gains, dtype=torch.float32, device=network.device)
            parts = []
            for block_start, block_stop in blocks[site]:  # passes never mix blocks (see evaluate)
                for start in range(block_start, block_stop, per_pass):
                    g = gains[start : min(start + per_pass, block_stop)]
                    features = _replayed(network, site, sources[site][0], tensors[sources[site]], g, batch)
                    parts.append(margins_of(features).reshape(len(g), n, -1))
            results[site].append(torch.cat(parts).float().cpu().numpy())
            bar.update(len(gains) * n)
    bar.close()
    return {site: np.concatenate(parts, axis=1) for site, parts in results.items()}


def _replayed(network: Network, site: str, block: str, base: torch.Tensor, g: torch.Tensor, batch) -> torch.Tensor:
    """Readout features [G * n, d] of G conditions (gains ``g`` [G, units]) at ``site``: ``base`` is
    the output of block site ``site`` [n, ...], or the input of ``block`` holding ``site``."""
    if block == site:
        with replaying(network, site, _scaled_copies(base, g, network.layout(site))):
            return record(network, batch, sites=[])[1]
    n = base.shape[0]
    scale = gain_shape(g.repeat_interleave(n, dim=0), network.layout(site))
    with _scaling_hook(network.module(network.sites[site]), scale):
        with replaying(network, block, repeated(base, len(g)), feed=True):
            return record(network, batch, sites=[])[1]


@torch.inference_mode()
def evaluate_naive(
    network: Network, pictures, plan: dict[str, np.ndarray], heads: list[Head], batch: int = 32, progress: bool = False
) -> dict[str, np.ndarray]:
    """The plain way: for each condition, a full forward pass (stopped at the readout layer) with a
    hook scaling the site's output.

    Parameters
    ----------
    network, pictures, plan, heads
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
        for g in tqdm(gains, desc=f"naive {site}", disable=not progress, leave=False):
            scale = gain_shape(torch.as_tensor(g, dtype=torch.float32, device=device)[None], network.layout(site))
            with _scaling_hook(network.module(network.sites[site]), scale):
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


def evaluate_cached(
    network: Network,
    paths: list[str],
    sha1s: list[str],
    plan: dict[str, np.ndarray],
    heads: list[Head],
    cache: ResultCache,
    keys: dict[str, str],
    blocks: dict[str, list[tuple[int, int]]] | None = None,
    chunk_images: int = 32,
    batch_samples: int = 64,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """:func:`evaluate` on picture files, ``chunk_images`` pictures at a time. Each chunk's result
    per site and block of conditions is served from or stored in ``cache``, keyed by the site's key in
    ``keys``, the block's gains and the chunk's picture SHA-1s: an interrupted sweep resumes at its
    first unfinished piece, and a cluster shard that fills some blocks' entries (evaluating only those
    blocks: the same numbers, see :func:`evaluate`) leaves nothing for the merge to compute.

    ``paths``, ``sha1s``: the n pictures; ``plan``: {site: gains [n_conditions, n_units]};
    ``blocks``: {site: [(start, stop), ...]}, ordered and disjoint (default: one block of every
    condition); a site of ``plan`` missing from a given ``blocks`` is skipped. Returns {site: float32
    margins [n_conditions of its blocks, n, n_heads]}, as :func:`evaluate`.
    """
    sites = list(blocks) if blocks is not None else list(plan)
    blocks = {site: _checked_blocks(site, (blocks or {}).get(site), len(plan[site]), cover=False) for site in sites}
    pieces = [(site, block) for site in sites for block in blocks[site]]
    parts: dict[str, list[np.ndarray]] = {site: [] for site in sites}
    starts = range(0, len(paths), chunk_images)
    for start in tqdm(starts, desc="manipulations (picture chunks)", unit="chunk", disable=not progress):
        chunk = slice(start, start + chunk_images)
        piece_keys = {
            (site, (a, b)): ResultCache.key(keys[site], plan[site][a:b], *sha1s[chunk]) for site, (a, b) in pieces
        }
        done = {piece: cache.get(key) for piece, key in piece_keys.items()}
        todo = [piece for piece in pieces if done[piece] is None]
        if todo:
            computed = _evaluate_pieces(network, load_pictures(paths[chunk], network), plan, todo, heads, batch_samples)
            for piece, values in computed.items():
                cache.put(piece_keys[piece], values)
                done[piece] = values
        for site in sites:  # a site's blocks in order: its conditions in order
            parts[site].append(np.concatenate([done[site, block] for block in blocks[site]]))
    return {site: np.concatenate(chunks, axis=1) for site, chunks in parts.items()}


def _evaluate_pieces(network, pictures, plan, pieces, heads, batch_samples) -> dict:
    """{(site, (start, stop)): margins [stop - start, n, n_heads]} of the listed blocks, in one
    :func:`evaluate` call on the pictures [n, 3, H, W] (one walk down the network for all)."""
    sub_plan: dict[str, list[np.ndarray]] = {}
    sub_blocks: dict[str, list[tuple[int, int]]] = {}
    for site, (a, b) in pieces:
        offset = sum(len(g) for g in sub_plan.get(site, []))
        sub_plan.setdefault(site, []).append(plan[site][a:b])
        sub_blocks.setdefault(site, []).append((offset, offset + b - a))
    stacked = {site: np.concatenate(gains) for site, gains in sub_plan.items()}
    margins = evaluate(network, pictures, stacked, heads, len(pictures), batch_samples, False, sub_blocks)
    out = {}
    for site, ranges in sub_blocks.items():
        for (a, b), piece in zip(ranges, [p for p in pieces if p[0] == site]):
            out[piece] = margins[site][a:b]
    return out


class ResultCache:
    """Engine results in a folder (one .npy per site, block of conditions and chunk of pictures),
    keyed by a hash of everything that determines them; written atomically, so an interrupted sweep
    resumes at its first unfinished piece."""

    def __init__(self, folder: Path | None):
        self.folder = Path(folder) if folder else None

    @staticmethod
    def key(*parts) -> str:
        digest = hashlib.sha256()
        for part in parts:
            digest.update(part.tobytes() if isinstance(part, np.ndarray) else str(part).encode())
            digest.update(b"|")
        return digest.hexdigest()[:24]

    def get(self, key: str) -> np.ndarray | None:
        if self.folder is None or not (self.folder / f"{key}.npy").is_file():
            return None
        try:
            return np.load(self.folder / f"{key}.npy")
        except (OSError, ValueError, EOFError):  # a damaged entry (e.g. zero bytes) is recomputed
            return None

    def put(self, key: str, array: np.ndarray) -> None:
        if self.folder is None:
            return
        save_npy_atomic(self.folder / f"{key}.npy", array)
