"""The suffix engine's fast paths: a gain at a site is a per-channel scale of its output, so the part of
the network after it is run on scaled copies — linearly through the next convolution where that is
exact (homogeneous stages), or by rescaling the readout — instead of whole forward passes (see the
table in the docstring of :mod:`emoselect.engine.manipulation`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

import numpy as np
import torch

from ..analysis.records import Head
from .forward import as_input, gain_shape, repeated
from .network import Network
from .readout import margin_weights


class _Margins:
    """The heads as one linear map: readout features [B, ...] -> margins [B, n_heads] (float32);
    ``weight`` [d, n_heads], ``bias`` [n_heads]."""

    def __init__(self, heads: list[Head], device: torch.device) -> None:
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
def _scaling_hook(module: torch.nn.Module, gains: torch.Tensor, shift: torch.Tensor | None = None) -> Iterator[None]:
    """While active, multiplies the module's output by ``gains`` (:func:`emoselect.network.gain_shape`
    of [B, units], B matching the batch or 1) and adds ``shift`` (the same shape) where given."""
    if shift is None:
        handle = module.register_forward_hook(lambda m, args, output: output * gains)
    else:
        handle = module.register_forward_hook(lambda m, args, output: output * gains + shift.to(output.dtype))
    try:
        yield
    finally:
        handle.remove()


def hook_arrays(
    gains: torch.Tensor, offsets: torch.Tensor | None, n: int, layout: str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The scale and shift of :func:`_scaling_hook` for G conditions ([G, units] each) on a batch of
    G copies of n pictures: gains and offsets repeated per picture, shaped for ``layout``."""
    scale = gain_shape(gains.repeat_interleave(n, dim=0), layout)
    shift = gain_shape(offsets.repeat_interleave(n, dim=0), layout) if offsets is not None else None
    return scale, shift


def _run(stages: list[tuple[str, torch.nn.Module]], x: torch.Tensor) -> torch.Tensor:
    for _, module in stages:
        x = module(x)
    return x


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


def _next_convolution(stages: list[tuple[str, torch.nn.Module]], index: int) -> int | None:
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
    groups: dict[bytes, tuple[torch.Tensor, torch.Tensor, list[tuple[int, float]]]] = {}
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


def _terms(
    gains: torch.Tensor, offsets: torch.Tensor | None, pooled: torch.Tensor
) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[tuple[int, float]]]]:
    """The terms of :func:`_suffix_linear`: (channels, the convolution's input on them [n, k, H, W],
    [(condition, scale), ...]). Gain-only conditions are grouped by direction (:func:`_directions`);
    each condition with an offset is its own term, (g - 1) * p + o on its channels, scale 1."""
    affine = torch.zeros(len(gains), dtype=torch.bool, device=gains.device)
    if offsets is not None:
        affine = (offsets != 0).any(dim=1)
    plain = torch.nonzero(~affine).flatten().tolist()
    for support, direction, members in _directions(gains[plain]):
        yield support, pooled[:, support] * direction[None, :, None, None], [(plain[c], s) for c, s in members]
    for c in torch.nonzero(affine).flatten().tolist():
        assert offsets is not None
        support = torch.nonzero((gains[c] != 1) | (offsets[c] != 0)).flatten()
        change = (gains[c, support] - 1)[None, :, None, None] * pooled[:, support] + offsets[c, support][
            None, :, None, None
        ]
        yield support, change, [(c, 1.0)]


def affine_passes(stages: list[tuple[str, torch.nn.Module]], base: torch.Tensor, offsets: torch.Tensor | None) -> bool:
    """True when g * x + o (g >= 0, o >= 0 per channel) passes ``stages`` as g * f(x) + o: the site's
    output ``base`` is >= 0 (so a ReLU leaves it alone) and the stages are ReLU, dropout, identity,
    max pooling or average pooling without padding (the pool of a constant map is the constant).
    Always True without offsets (gains alone pass every homogeneous stage)."""
    if offsets is None or not bool((offsets != 0).any()):
        return True
    if bool((offsets < 0).any()) or bool((base < 0).any()):
        return False
    for _, module in stages:
        if isinstance(module, torch.nn.AvgPool2d) and module.padding not in (0, (0, 0)):
            return False
        if not isinstance(module, HOMOGENEOUS + (torch.nn.Flatten,)):
            return False
    return True


def _suffix_linear(
    between: list[tuple[str, torch.nn.Module]],
    after: list[tuple[str, torch.nn.Module]],
    base: torch.Tensor,
    gains: torch.Tensor,
    per_pass: int,
    heads: _Margins,
    memo: dict[str, torch.Tensor],
    offsets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Margins [n_conditions, n, n_heads] for every condition, using that the first convolution after
    the site is linear:
    conv(g * p) = conv(p) + s * conv_without_bias(v * p) for g = 1 + s * v. ``between``: the stages
    from the site's output to that convolution (pooling, ReLU); ``after``: the convolution and the
    rest of the chain. The intact convolution is
    computed once per chunk (kept in ``memo`` for the site's other blocks), the second term once per
    direction (on its channels only), and each condition then costs one multiply-add instead of the
    convolution."""
    conv = cast(torch.nn.Conv2d, after[0][1])  # a plain convolution (see _next_convolution)
    if "intact" not in memo:
        memo["pooled"] = _run(between, base)
        memo["intact"] = conv(memo["pooled"])
    pooled, intact = memo["pooled"], memo["intact"]
    out: list[torch.Tensor] = [torch.empty(0)] * len(gains)
    for support, term_input, members in _terms(gains, offsets, pooled):
        if len(support):
            term = torch.nn.functional.conv2d(
                as_input(term_input), conv.weight[:, support], None, conv.stride, conv.padding, conv.dilation
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
            margins = heads(_run(after[1:], pre))
            for (c, _), value in zip(batch, margins.reshape(len(batch), n, -1)):
                out[c] = value
    return torch.stack(out)


def _suffix_rescaled(
    stages: list[tuple[str, torch.nn.Module]],
    index: int,
    base: torch.Tensor,
    gains: torch.Tensor,
    heads: _Margins,
    memo: dict[str, torch.Tensor],
    offsets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Margins for every condition when only channel-wise homogeneous stages follow the site
    (:func:`gain_rescales_readout`): the readout features of channel c are g_c times the intact
    ones (plus o_c at every position with ``offsets``, where :func:`affine_passes`), so margin =
    bias + sum_c g_c * (features_c . weight_c) + o_c * sum(weight_c). One pass per chunk (kept in
    ``memo`` for the site's other blocks), then a matrix product over all conditions. Needs gains >= 0."""
    if "features" not in memo:  # the network's own pass, in its precision
        memo["features"] = _run(stages[index + 1 :], base).flatten(1).float()  # [n, C * S], channel-major
    with torch.autocast(base.device.type, enabled=False):  # the heads always in float32
        if "per_channel" not in memo:
            n, channels = base.shape[0], base.shape[1]
            weight = heads.weight.reshape(channels, -1, heads.weight.shape[1])  # [C, S, n_heads]
            memo["per_channel"] = torch.einsum("ncs,csh->nch", memo["features"].reshape(n, channels, -1), weight)
        margins = torch.einsum("gc,nch->gnh", gains, memo["per_channel"]) + heads.bias
        if offsets is not None:
            channels = base.shape[1]
            summed = heads.weight.reshape(channels, -1, heads.weight.shape[1]).sum(dim=1)  # [C, n_heads]
            margins = margins + (offsets.float() @ summed)[:, None, :]
        return margins


def _scaled_copies(
    base: torch.Tensor, gains: torch.Tensor, layout: str, offsets: torch.Tensor | None = None
) -> torch.Tensor:
    """A site's output ``base`` [n, ...] once per condition, scaled by its gains [G, units] (plus its
    ``offsets`` [G, units] where given): [G * n, ...]."""
    copies = base.unsqueeze(0) * gain_shape(gains, layout)[:, None]
    if offsets is not None:
        copies = copies + gain_shape(offsets, layout)[:, None].to(copies.dtype)
    return copies.reshape(-1, *base.shape[1:])


def _suffix_scaled(
    stages: list[tuple[str, torch.nn.Module]],
    index: int,
    base: torch.Tensor,
    gains: torch.Tensor,
    per_pass: int,
    heads: _Margins,
    layout: str,
    offsets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Margins for every condition: scale the site's output ``base`` (in its ``layout``; plus the
    ``offsets``) and run the rest of the chain."""
    out = []
    for start in range(0, len(gains), per_pass):
        g = gains[start : start + per_pass]
        o = offsets[start : start + per_pass] if offsets is not None else None
        scaled = _scaled_copies(base, g, layout, o)
        out.append(heads(_run(stages[index + 1 :], scaled)).reshape(len(g), base.shape[0], -1))
    return torch.cat(out)


def _suffix_nested(
    network: Network,
    site: str,
    index: int,
    x: torch.Tensor,
    gains: torch.Tensor,
    per_pass: int,
    heads: _Margins,
    offsets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Margins for every condition when the site lies inside stage ``index``: run that stage on the
    repeated input with a scaling hook on the site (plus the ``offsets``), then the rest of the chain."""
    out, n = [], x.shape[0]
    for start in range(0, len(gains), per_pass):
        g = gains[start : start + per_pass]
        o = offsets[start : start + per_pass] if offsets is not None else None
        scale, shift = hook_arrays(g, o, n, network.layout(site))
        with _scaling_hook(network.module(network.sites[site]), scale, shift):
            features = _run(_chain(network)[index:], repeated(x, len(g)))
        out.append(heads(features).reshape(len(g), n, -1))
    return torch.cat(out)
