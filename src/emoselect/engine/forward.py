"""One forward pass with probes: channels-last input, autocast, per-unit responses from a site's output
(spatial or token means) and gains shaped to a site's layout.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any, NoReturn

import torch

from .network import PRECISIONS, Network


class _StopForward(Exception):
    """Raised by a hook once everything needed from a forward pass has been recorded."""


def repeated(x: torch.Tensor, times: int) -> torch.Tensor:
    """``x`` [n, ...] stacked ``times`` over along its first axis: [times * n, ...]."""
    return x.repeat(times, *([1] * (x.dim() - 1)))


def as_input(batch: torch.Tensor) -> torch.Tensor:
    """A picture batch [B, 3, H, W] in channels-last memory layout: the same values, but convolution
    and above all max-pooling run faster on CPUs (``benchmarks/extract.py``; docs/performance.md).
    Results equal the default layout's to float32 rounding (about 1e-6 relative)."""
    return batch.contiguous(memory_format=torch.channels_last) if batch.dim() == 4 else batch


def autocast(network: Network) -> AbstractContextManager[object]:
    """The context a forward pass of ``network`` runs in: autocast to bf16/fp16, or nothing (fp32)."""
    dtype = PRECISIONS[network.precision]
    return nullcontext() if dtype is None else torch.autocast(network.device.type, dtype=dtype)


def unit_responses(output: torch.Tensor, layout: str, token_pool: str = "patch", prefix: int = 0) -> torch.Tensor:
    """One response per unit and picture, float32 [B, units], from a site's output:
    ``nchw`` [B, C, H, W] and ``nhwc`` [B, H, W, C]: the spatial mean; ``tokens`` [B, T, D]: the mean
    over patch tokens (the tokens after ``prefix``), the class token (``cls``) or all tokens;
    ``flat``: the output flattened."""
    if layout == "nchw":
        return output.float().mean(dim=(2, 3))
    if layout == "nhwc":
        return output.float().mean(dim=(1, 2))
    if layout == "tokens":
        if token_pool == "cls":
            return output[:, 0].float()
        return output[:, prefix:].float().mean(dim=1) if token_pool == "patch" else output.float().mean(dim=1)
    return output.float().flatten(1)


def gain_shape(gains: torch.Tensor, layout: str) -> torch.Tensor:
    """Per-unit gains [G, units] shaped to multiply a site's output in its layout: [G, C, 1, 1]
    (``nchw``), [G, 1, 1, C] (``nhwc``), [G, 1, D] (``tokens``: every token's channel is scaled)."""
    if layout == "nchw":
        return gains[:, :, None, None]
    if layout == "nhwc":
        return gains[:, None, None, :]
    return gains[:, None, :]


@torch.inference_mode()
def record(
    network: Network, batch: torch.Tensor, sites: list[str] | None = None
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One forward pass of a normalised batch [B, 3, H, W].

    Returns ({site: response [B, units]} (:func:`unit_responses`), readout features [B, readout_dim]);
    the forward pass stops at the readout layer. Full feature maps are reduced inside the hooks.
    """
    sites = list(network.sites) if sites is None else sites
    means, readout, handles = {}, {}, []
    for site in sites:

        def hook(module: torch.nn.Module, args: tuple[Any, ...], output: torch.Tensor, site: str = site) -> None:
            means[site] = unit_responses(output, network.layout(site), network.token_pool, network.prefix_tokens)

        handles.append(network.module(network.sites[site]).register_forward_hook(hook))

    def stop(module: torch.nn.Module, args: tuple[Any, ...]) -> NoReturn:
        readout["x"] = args[0].float().flatten(1)
        raise _StopForward

    if network.readout_layer:
        handles.append(network.module(network.readout_layer).register_forward_pre_hook(stop))
    try:
        with autocast(network):
            output = network.model(as_input(batch))
        readout["x"] = unit_responses(output, network.readout_layout, network.token_pool, network.prefix_tokens)
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return means, readout["x"]
