"""Network families and the rules that find probe sites: one traced forward pass, then activation
sites (a ReLU-like output after a convolution), block sites (the most numerous repeated module), their
layouts, and the readout site (docs/architecture.md shows the family table).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from torch import nn

from ..base.problems import InputError
from .network import POOLED

ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.SiLU,
    nn.GELU,
    nn.Hardswish,
    nn.LeakyReLU,
    nn.ELU,
    nn.Mish,
    nn.PReLU,
    nn.SELU,
    nn.CELU,
)
TRACE_BATCH = 2  # pictures in the tracing pass: tells the batch dimension from a sequence dimension


def _vgg_site_names(paths: list[str], order: list[tuple[str, nn.Module, tuple]]) -> list[str]:
    """conv<block>_<index>: blocks are separated by max-pooling (VGG's conv1_1 ... conv5_3)."""
    position = {path: i for i, (path, _, _) in enumerate(order)}
    pools = [position[p] for p, m, _ in order if isinstance(m, nn.MaxPool2d)]
    names, last_block, index = [], 0, 0
    for path in paths:
        block = 1 + sum(pool < position[path] for pool in pools)
        index = index + 1 if block == last_block else 1
        last_block = block
        names.append(f"conv{block}_{index}")
    return names


@dataclass(frozen=True)
class Family:
    """How one family of networks is built, and how its probe and readout sites are named.

    ``matches``: the ``--model`` names of the family; ``sites``: which rule finds its probe sites
    (``activations``, ``blocks``, or ``activations`` falling back to ``blocks`` where a network has
    no activation site); ``site_names``: (site module paths in forward order, the traced modules) ->
    names (None: the module paths themselves; block sites are always ``block1 ... blockN``);
    ``readout_names``: the input of which classifier layer is called what (others:
    ``<path>-input``); ``build``: keyword arguments for torchvision's constructor.
    """

    name: str
    matches: Callable[[str], bool]
    site_names: Callable[[list[str], list], list[str]] | None = None
    readout_names: dict[str, str] = field(default_factory=dict)
    build: dict = field(default_factory=dict)
    sites: str = "activations, else blocks"


def _transformer(name: str) -> bool:
    base = name.split(":", 1)[-1]
    return name.startswith("openclip:") or base.startswith(("vit", "deit", "beit", "eva", "swin", "convnext", "maxvit"))


# one table of network families (docs/architecture.md shows it); the last one takes every other network
FAMILIES = [
    Family("VGG", lambda name: name.startswith("vgg"), _vgg_site_names,
           {"classifier.0": "pool5", "classifier.3": "fc6", "classifier.6": "fc7"}, sites="activations"),
    Family("AlexNet", lambda name: name == "alexnet", lambda paths, order: [f"conv{i + 1}" for i in range(len(paths))],
           {"classifier.1": "pool5", "classifier.4": "fc6", "classifier.6": "fc7"}, sites="activations"),
    Family("Inception", lambda name: name in ("googlenet", "inception_v3"), None, {},
           {"aux_logits": False, "init_weights": True}, sites="blocks"),  # ReLU is a function: BasicConv2d outputs
    Family("Transformers, ConvNeXt, Swin, CLIP towers", _transformer, None, {}, sites="blocks"),
    Family("module paths", lambda name: True),   # ResNet: block outputs layer1.0 ...; MobileNet, EfficientNet, ...
]  # fmt: skip


def family_of(name: str) -> Family:
    """The family a ``--model`` name belongs to (the last family takes any other name)."""
    return next(family for family in FAMILIES if family.matches(name))


@dataclass
class _Traced:
    """One traced forward pass: ``order`` (path, module, output shape) in the order modules finish
    their first call, call ``counts`` per path, the network's ``output`` shape, and ``channels``:
    per path, the channels of the last convolution or batch normalisation finished by then (None after
    a linear layer)."""

    order: list[tuple[str, nn.Module, tuple | None]]
    counts: dict[str, int]
    output: tuple | None
    channels: dict[str, int | None]

    @cached_property
    def shapes(self) -> dict[str, tuple | None]:
        return {path: shape for path, _, shape in self.order}

    @cached_property
    def position(self) -> dict[str, int]:
        return {path: i for i, (path, _, _) in enumerate(self.order)}


def _trace(model: nn.Module, size: int) -> _Traced:
    """Forward a dummy batch of ``TRACE_BATCH`` pictures [2, 3, size, size] and record every module."""
    order: list[tuple[str, nn.Module, tuple | None]] = []
    counts: dict[str, int] = {}
    handles = []
    for path, module in model.named_modules():
        if path:

            def hook(mod: nn.Module, args: tuple[Any, ...], output: object, path: str = path) -> None:
                counts[path] = counts.get(path, 0) + 1
                if counts[path] == 1:
                    order.append((path, mod, tuple(output.shape) if torch.is_tensor(output) else None))

            handles.append(module.register_forward_hook(hook))
    try:
        with torch.inference_mode():
            output = model(torch.zeros(TRACE_BATCH, 3, size, size))
    except RuntimeError as error:
        raise InputError(f"the network cannot run on {size}x{size} pictures ({error}); check --crop") from error
    finally:
        for handle in handles:
            handle.remove()
    channels: dict[str, int | None] = {}
    current: int | None = None
    for path, module, _ in order:
        if isinstance(module, nn.Conv2d):
            current = module.out_channels
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):  # after a concatenation (DenseNet)
            current = module.num_features if isinstance(module, nn.BatchNorm2d) else module.num_channels
        elif isinstance(module, nn.Linear):
            current = None
        channels[path] = current
    shape = tuple(output.shape) if torch.is_tensor(output) else None
    return _Traced(order, counts, shape, channels)


def _activation_sites(traced: _Traced) -> list[str]:
    """Module paths of activation sites: ReLU-like outputs that are feature maps [B, C, H, W] with C
    the channels of the convolution before them (an activation after a linear layer, e.g. in a
    channels-last MLP, is not a feature map of channels)."""
    shapes, paths = traced.shapes, []
    for path, module, _ in traced.order:
        if not isinstance(module, ACTIVATIONS):
            continue
        site = path
        while traced.counts.get(site, 0) > 1 and "." in site:
            site = site.rsplit(".", 1)[0]
        shape = shapes.get(site)
        if traced.counts.get(site, 0) != 1 or shape is None or len(shape) != 4:
            continue
        if shape[2] * shape[3] == 1 or shape[1] != traced.channels.get(site):
            continue  # not a feature map (linear layers, squeeze-excitation vectors, channels-last MLPs)
        if site not in paths:
            paths.append(site)
    position = traced.position
    return sorted(paths, key=lambda path: position[path])


def _block_layout(traced: _Traced, path: str) -> str | None:
    """``tokens``, ``nchw`` or ``nhwc`` for a block's output, from the width of the last linear or
    convolution inside it; None if it is none of these."""
    shape = traced.shapes.get(path)
    if shape is None or len(shape) not in (3, 4) or shape[0] != TRACE_BATCH:
        return None
    inner = [m for p, m, _ in traced.order if p.startswith(path + ".") and isinstance(m, (nn.Linear, nn.Conv2d))]
    if not inner:
        return None
    width = inner[-1].out_features if isinstance(inner[-1], nn.Linear) else inner[-1].out_channels
    if len(shape) == 3:
        return "tokens" if shape[2] == width else None
    return "nchw" if shape[1] == width else "nhwc" if shape[3] == width else None


def _block_sites(model: nn.Module, traced: _Traced) -> list[str]:
    """Module paths of block sites: every module of the most numerous block class (a module with
    children, not a plain container, that appears at least twice side by side), called once, with
    a token or feature-map output, outermost only, in forward order."""
    containers = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
    candidates: Counter = Counter()
    for _, parent in model.named_modules():
        kinds = Counter(
            type(child) for child in parent.children() if list(child.children()) and not isinstance(child, containers)
        )
        candidates.update({kind: n for kind, n in kinds.items() if n >= 2})
    position = traced.position
    for kind, _ in candidates.most_common():
        paths = [
            path
            for path, module in model.named_modules()
            if type(module) is kind and traced.counts.get(path) == 1 and _block_layout(traced, path)
        ]
        paths = [p for p in paths if not any(p.startswith(q + ".") for q in paths)]
        if paths:
            return sorted(paths, key=lambda path: position[path])
    return []


def _prefix_tokens(model: nn.Module) -> int:
    """Tokens before the patch tokens (class and register tokens) in a token network."""
    if hasattr(model, "num_prefix_tokens"):  # timm
        return int(getattr(model, "num_prefix_tokens"))  # noqa: B009  # a plain int on timm models
    if hasattr(model, "class_token") or hasattr(model, "class_embedding"):  # torchvision, OpenCLIP
        return 1
    return 0


def _site_shape(shape: tuple, layout: str) -> tuple[int, tuple[int, ...]]:
    """(units, spatial size) of an output shape in a layout."""
    if layout == "nchw":
        return shape[1], tuple(shape[2:])
    if layout == "nhwc":
        return shape[3], tuple(shape[1:3])
    return shape[2], (shape[1],)


def _find_sites(model: nn.Module, name: str, traced: _Traced) -> tuple[dict[str, str], dict[str, str]]:
    """Tuning sites (name -> module path) and their layouts (name -> layout), in forward order."""
    family = family_of(name)
    paths = _activation_sites(traced) if family.sites != "blocks" else []
    if paths:
        naming = family.site_names
        sites = dict(zip(naming(paths, traced.order) if naming else paths, paths))
        return sites, {site: "nchw" for site in sites}
    if family.sites == "activations":
        return {}, {}
    sites, layouts = {}, {}
    paths = _block_sites(model, traced)
    for i, path in enumerate(paths):
        name_ = f"block{i + 1}"
        layout = _block_layout(traced, path) or "nchw"
        inner = _mlp_activation(traced, path) if layout == "tokens" else None
        if inner:  # a transformer block's MLP activation first (it comes first in the forward pass)
            sites[f"{name_}_mlp"], layouts[f"{name_}_mlp"] = inner, "tokens"
        sites[name_], layouts[name_] = path, layout
    return sites, layouts


def _mlp_activation(traced: _Traced, block: str) -> str | None:
    """The path of the (last) activation inside a token block whose output is tokens [B, T, hidden]."""
    found = [
        path
        for path, module, shape in traced.order
        if path.startswith(block + ".")
        and isinstance(module, ACTIVATIONS)
        and traced.counts.get(path) == 1
        and shape is not None
        and len(shape) == 3
        and shape[0] == TRACE_BATCH
    ]
    return found[-1] if found else None


def _pooled_layout(traced: _Traced) -> tuple[str, int] | None:
    """(layout, width) of the network's output when it can be read as pooled features."""
    shape = traced.output
    if shape is None or shape[0] != TRACE_BATCH:
        return None
    if len(shape) == 2:
        return "flat", shape[1]
    if len(shape) == 3:
        return "tokens", shape[2]
    last_conv = [m for _, m, _ in traced.order if isinstance(m, nn.Conv2d)]
    if len(shape) == 4 and last_conv and shape[1] == last_conv[-1].out_channels:
        return "nchw", shape[1]
    return None


def _readout(
    traced: _Traced, sites: dict[str, str], untrained: list[str], name: str, readout: str
) -> tuple[str, str, int, str]:
    """(readout site name, path of the linear layer it feeds or "" for pooled, width, layout)."""
    position = traced.position
    last = max(position[path] for path in sites.values())
    linears = [
        (p, m)
        for i, (p, m, _) in enumerate(traced.order)
        if isinstance(m, nn.Linear) and i > last and not any(p.startswith(s + ".") for s in sites.values())
    ]
    known = family_of(name).readout_names
    names = {p: known.get(p, f"{p}-input") for p, _ in linears}
    pooled = _pooled_layout(traced)
    paths = [p for p, _ in linears]
    if readout == "auto":  # the first untrained linear layer, else the last one, else the pooled output
        readout = names[([p for p in paths if p in untrained] or paths[-1:])[0]] if paths else POOLED
    choices = list(names.values()) + ([POOLED] if pooled else [])
    if readout not in choices:
        if not choices:
            raise InputError(f"{name} has no linear layer after its probe sites and no pooled output to read out")
        raise InputError(f"readout site {readout!r} is not one of {name}'s: {', '.join(choices)}")
    path = next((p for p in paths if names[p] == readout), "")
    through = [p for p in (paths[: paths.index(path)] if path else paths) if p in untrained]
    if through:
        raise InputError(f"readout site {readout!r} would read through untrained layers {through}")
    if path:
        return readout, path, dict(linears)[path].in_features, "flat"
    layout, width = pooled  # type: ignore[misc]  # POOLED is a choice only where pooled is set
    return POOLED, "", width, layout
