"""The replay engine's mechanics: run a network from one block of a Sequential or ModuleList on, with
the block's recorded output (scaled) replayed, or its recorded input fed with a scaling hook inside
(transformers, CLIP towers), and the load-time check that replaying equals a plain forward pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from .forward import _StopForward, as_input, autocast, record, repeated
from .network import Network


class _Skip(nn.Module):
    """Stands in for a block before the replayed one: passes its input on (extra arguments ignored)."""

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return x


class _Replay(nn.Module):
    """Stands in for a block: returns the given output whatever its input."""

    def __init__(self, output: torch.Tensor) -> None:
        super().__init__()
        self.output = output

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.output


def _container_of(network: Network, site: str) -> tuple[nn.Sequential | nn.ModuleList, int] | None:
    """(the Sequential or ModuleList holding the site, its index there), or None."""
    parent_path, _, child = network.sites[site].rpartition(".")
    parent = network.model.get_submodule(parent_path) if parent_path else network.model
    if isinstance(parent, (nn.Sequential, nn.ModuleList)):
        return parent, list(parent._modules).index(child)
    return None


class _Feed(nn.Module):
    """Stands in for a block: runs it on the given input instead of the one it is passed."""

    def __init__(self, block: nn.Module, given: torch.Tensor) -> None:
        super().__init__()
        self.block, self.given = block, given

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.block(self.given, *args, **kwargs)


def enclosing_block(network: Network, site: str) -> str | None:
    """The block site (a block in a Sequential or ModuleList) whose module holds ``site``, e.g.
    ``block3`` for ``block3_mlp``; None for a site that is not inside one."""
    path = network.sites[site]
    for other, other_path in network.sites.items():
        if path.startswith(other_path + ".") and _container_of(network, other) and not enclosing_block(network, other):
            return other
    return None


@contextmanager
def replaying(network: Network, site: str, tensor: torch.Tensor, feed: bool = False) -> Iterator[None]:
    """While active, a forward pass skips the blocks before block ``site`` in its container and
    ``site`` returns ``tensor`` [B', ...] (e.g. its own output with scaled units, B' = conditions x
    pictures) — or, with ``feed``, runs on ``tensor`` as its input: the network computes only its
    input stem and the blocks from there on."""
    found = _container_of(network, site)
    if found is None:
        raise ValueError(f"site {site} is not a block in a Sequential or ModuleList")
    container, index = found
    saved = [container[i] for i in range(index + 1)]
    try:
        for i in range(index):
            container[i] = _Skip()
        container[index] = _Feed(saved[index], tensor) if feed else _Replay(tensor)
        yield
    finally:
        for i, module in enumerate(saved):
            container[i] = module


def replay_source(network: Network, site: str) -> tuple[str, bool]:
    """What the replay engine records for ``site``: (its block site, whether the block's *input* is
    needed — for a site inside the block — rather than its output)."""
    block = enclosing_block(network, site)  # first: an MLP activation may sit in a Sequential of its own
    if block is not None:
        return block, True
    if _container_of(network, site) is None:
        raise ValueError(f"site {site} is neither a block in a Sequential or ModuleList nor inside one")
    return site, False


def block_tensors(
    network: Network, batch: torch.Tensor, wanted: set[tuple[str, bool]]
) -> dict[tuple[str, bool], torch.Tensor]:
    """For each (block site, input?) in ``wanted``, the block's full input or output [B, ...] for a
    normalised batch (one forward pass, stopped once all are recorded)."""
    outputs: dict[tuple[str, bool], torch.Tensor] = {}
    handles = []

    def keep(key: tuple[str, bool], tensor: torch.Tensor) -> None:
        outputs[key] = tensor
        if len(outputs) == len(wanted):
            raise _StopForward

    for block, wants_input in wanted:
        module = network.module(network.sites[block])
        if wants_input:
            handles.append(module.register_forward_pre_hook(lambda m, args, key=(block, True): keep(key, args[0])))
        else:
            handles.append(module.register_forward_hook(lambda m, args, out, key=(block, False): keep(key, out)))
    try:
        with torch.inference_mode(), autocast(network):
            network.model(as_input(batch))
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def _replays_match(network: Network, sites: list[str]) -> bool:
    """Whether replaying each site's recorded block output (twice over) — or feeding the recorded
    input of the block holding it — gives the readout features of a plain forward pass (twice over),
    to 1e-4 of their largest value (float rounding differs between batch sizes), on a random picture."""
    x = torch.randn(1, 3, network.prep.crop, network.prep.crop, generator=torch.Generator().manual_seed(0))
    plain = record(network, x, sites=[])[1]
    needed = {replay_source(network, site) for site in sites}
    tensors = block_tensors(network, x, needed)
    for block, feed in needed:
        try:
            with replaying(network, block, repeated(tensors[block, feed], 2), feed):
                replayed = record(network, x, sites=[])[1]
        except Exception:  # noqa: BLE001  # a forward pass that cannot take a replayed block
            return False
        close = float((replayed - plain).abs().max()) <= 1e-4 * float(plain.abs().max()) + 1e-6
        if replayed.shape != (2, *plain.shape[1:]) or not close:
            return False
    return True
