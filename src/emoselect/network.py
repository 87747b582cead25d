"""Networks with named probe sites: the "neurons" whose responses emoselect records and manipulates.

``load_network`` builds a network (:mod:`emoselect.sources`: torchvision, timm, OpenCLIP image
towers, your own factory) and finds its probe sites by tracing one forward pass:

* **activation sites** (CNNs): the output of every ReLU-like activation that follows a convolution
  and outputs a feature map [B, C, H, W] (one unit per channel; its response to a picture is the
  spatial mean). VGG networks name them ``conv1_1 ... conv5_3``, AlexNet ``conv1 ... conv5``; others
  use module paths (``features.3.conv.0.2``). An activation module called more than once (ResNet's
  shared ``relu``) cannot be told apart per call, so the block that owns it is probed instead
  (``layer1.0``: the block output, after the residual sum and activation).
* **block sites** (transformers, ConvNeXt, Swin, Inception, where no activation site exists): the
  output of every repeated block (the most numerous class of module that appears at least twice
  side by side), named ``block1 ... blockN``. The block's layout decides what a unit is: tokens
  [B, T, D] (ViT, CLIP towers; unit = embedding channel, response pooled over tokens by
  ``token_pool``: ``patch`` the mean over patch tokens, ``cls`` the class token, ``all`` every
  token), channels-first maps [B, C, H, W] (ConvNeXt) or channels-last maps [B, H, W, C] (Swin),
  both spatially averaged.
* **the readout site**, where the 2-unit heads read: the input of a linear layer after the last
  probe site — the first one whose weights were *not* loaded (so nothing untrained is read from), or
  the final classifier if all were loaded (VGG-16: ``fc7`` with a full weight file, ``pool5`` with a
  convolution-only one). A network without such a layer, or a source that says so (CLIP towers), is
  read at ``pooled``: its own output, pooled like a site (the last trained representation).

Probing hooks reduce feature maps at once, so no full map is ever kept.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from contextlib import contextmanager, nullcontext
from copy import deepcopy
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable

import torch
from torch import nn

from .images import Preprocessing
from .problems import InputError
from .sources import build

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
TOKEN_POOLS = ("patch", "cls", "all")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # autocast dtype of the forward pass
POOLED = "pooled"  # the readout site that is the network's own (pooled) output
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
class Network:
    """A network in eval mode with named probe sites.

    ``sites`` maps a tuning-site name to its module path, in the order the forward pass reaches them;
    ``units`` gives each site's number of units and ``layouts`` its output layout (``nchw``,
    ``nhwc``, ``tokens``; see the module docstring). ``readout_site`` is the readout's name,
    ``readout_layer`` the path of the linear layer whose input it is ("" for ``pooled``: the
    network's output) and ``readout_dim`` its width. ``untrained`` lists modules whose weights were
    not in the weight file. ``stages`` is the network as a chain of modules that, applied in order,
    equals its forward pass (checked numerically), or None where no such chain was found; the
    manipulation engine uses it to run only the part of the network after a site; where there is none
    but the sites are blocks in one container, ``replays`` says that :func:`replaying` was checked to
    do the same (ViTs, CLIP towers). ``spatial``: each
    site's feature-map height and width (tokens: the number of tokens) at the preprocessing's crop.
    ``token_pool`` and ``prefix_tokens`` (class and register tokens before the patch tokens) say how
    token sites are pooled. ``depths``: each site's relative depth, 0 (first probe site of the whole
    network) to 1 (last), kept when only some sites are recorded (:func:`keep_sites`). ``precision``:
    the forward pass's arithmetic (``fp32``, or ``bf16``/``fp16`` under autocast; responses are stored
    in float32).
    """

    name: str
    model: nn.Module
    weights: str
    weights_sha256: str | None
    seed: int
    prep: Preprocessing
    sites: dict[str, str]
    units: dict[str, int]
    readout_site: str
    readout_layer: str
    readout_dim: int
    untrained: list[str] = field(default_factory=list)
    stages: list[tuple[str, nn.Module]] | None = None
    spatial: dict[str, tuple[int, ...]] = field(default_factory=dict)
    layouts: dict[str, str] = field(default_factory=dict)
    token_pool: str = "patch"
    prefix_tokens: int = 0
    readout_layout: str = "flat"
    replays: bool = False
    depths: dict[str, float] = field(default_factory=dict)
    precision: str = "fp32"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device) -> Network:
        self.model.to(device)
        return self

    def module(self, path: str) -> nn.Module:
        return self.model.get_submodule(path)

    @property
    def engine(self) -> str:
        """How manipulations run (:mod:`emoselect.manipulation`): ``suffix`` (a checked chain of
        stages), ``replay`` (checked block replays) or ``full forward`` (hooks on the whole pass)."""
        return "suffix" if self.stages is not None else "replay" if self.replays else "full forward"

    def layout(self, site: str) -> str:
        return self.layouts.get(site, "nchw")

    @property
    def has_tokens(self) -> bool:
        return "tokens" in self.layouts.values() or self.readout_layout == "tokens"

    def describe(self) -> dict:
        """Plain-data provenance for config.yaml."""
        out = {
            "model": self.name,
            "weights": self.weights,
            "weights_sha256": self.weights_sha256,
            "seed": self.seed,
            "preprocessing": {
                "resize": self.prep.resize,
                "crop": self.prep.crop,
                "grayscale": self.prep.grayscale,
                "mean": list(self.prep.mean),
                "std": list(self.prep.std),
            },
            "sites": dict(self.units),
            "relative_depth": {site: self.depths[site] for site in self.units if site in self.depths},
            "readout_site": self.readout_site,
            "readout_layer": self.readout_layer,
            "readout_dim": self.readout_dim,
            "untrained_modules": list(self.untrained),
            "suffix_engine": self.stages is not None,
        }
        if any(layout != "nchw" for layout in self.layouts.values()) or self.readout_layout != "flat":
            out["site_layouts"] = sorted(set(self.layouts.values()))
            out["readout_layout"] = self.readout_layout
        if self.has_tokens:
            out["token_pool"] = self.token_pool
            out["prefix_tokens"] = self.prefix_tokens
        if self.precision != "fp32":
            out["precision"] = self.precision
        return out


class _StopForward(Exception):
    """Raised by a hook once everything needed from a forward pass has been recorded."""


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

            def hook(mod, args, output, path=path):
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


def _chain(network: Network, size: int) -> list[tuple[str, nn.Module]] | None:
    """The model as a chain of modules equal to its forward pass, ending at the readout layer.

    Top-level children in order, Sequentials expanded; where a feature map meets a linear layer a
    flatten (or global average pool then flatten) is put in between. Returns None unless the chain
    reproduces the readout features :func:`record` gives on a random image to 1e-5.
    """
    model, readout_layer = network.model, network.readout_layer

    def expand(prefix, module):
        if isinstance(module, nn.Sequential):
            return [
                item
                for child_name, child in module.named_children()
                for item in expand(f"{prefix}.{child_name}" if prefix else child_name, child)
            ]
        return [(prefix, module)]

    stages = [item for child_name, child in model.named_children() for item in expand(child_name, child)]
    chain: list[tuple[str, nn.Module]] = []
    x = as_input(torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0)))
    try:
        target = record(network, x, sites=[])[1]
        with torch.inference_mode():
            for path, module in stages:
                if path == readout_layer:
                    break
                if isinstance(module, nn.Linear) and x.dim() == 4:
                    if x.shape[1] * x.shape[2] * x.shape[3] == module.in_features:
                        chain.append(("flatten", nn.Flatten(1)))
                    elif x.shape[1] == module.in_features:
                        chain.append(("global_pool", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))))
                    else:
                        return None
                    x = chain[-1][1](x)
                x = module(x)
                chain.append((path, module))
            else:
                if readout_layer:
                    return None
            if x.dim() == 4 and x.shape[1] == target.shape[1]:
                chain.append(("global_pool", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))))
                x = chain[-1][1](x)
            elif x.dim() > 2:
                chain.append(("flatten", nn.Flatten(1)))
                x = chain[-1][1](x)
    except Exception:  # noqa: BLE001  # any failure of a stage means there is no chain
        return None
    if target.shape != x.shape or not torch.allclose(x.float(), target, rtol=1e-5, atol=1e-6):
        return None
    return chain


def load_network(
    name: str = "vgg16",
    weights: str = "imagenet",
    seed: int = 0,
    grayscale: bool = False,
    readout: str = "auto",
    resize: int | None = None,
    crop: int | None = None,
    token_pool: str = "patch",
    precision: str = "fp32",
) -> Network:
    """Build a network (:mod:`emoselect.sources`) with its probe sites.

    Parameters
    ----------
    name : str
        A torchvision classification model (``vgg16``, ``alexnet``, ``resnet50``, ``vit_b_16``, ...),
        ``timm:NAME``, ``openclip:ARCH[@TAG]`` (the image tower), or your own network as
        ``module.path:factory``: ``factory(pretrained: bool)`` returns an ``nn.Module``, or
        (module, {"resize", "crop", "mean", "std"}) to give its preprocessing (default ImageNet's).
    weights : str
        ``imagenet``/``pretrained`` (the source's own weights, from its cache or downloaded),
        ``random`` (seeded by ``seed``; the untrained control) or the path of a state dict.
    seed : int
        Seed of random weights.
    grayscale : bool
        Show the pictures in gray.
    readout : str
        ``auto`` (see the module docstring), ``pooled``, or a site name (``pool5``, ``fc6``, ``fc7``
        for VGG; ``<linear path>-input`` otherwise).
    resize, crop : int, optional
        Pixels; override the weights' own preprocessing (a random-init control takes its trained
        network's values, so both see the same pictures).
    token_pool : str
        How token sites are pooled: ``patch``, ``cls`` or ``all``.
    precision : str
        ``fp32`` (default), or ``bf16``/``fp16``: the forward pass under autocast (faster where the
        device supports it; docs/performance.md gives its agreement with fp32).

    Returns
    -------
    Network
        The frozen model with ``sites`` {name: module path}, ``units`` {name: units}, the readout
        site and dimension, and the stage chain of the suffix engine (or None).
    """
    if precision not in PRECISIONS:
        raise InputError(f"--precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    made = build(name, weights, seed, family_of(name).build)
    prep = _adjusted(made.prep, grayscale, resize, crop)
    network = probe_model(
        made.model,
        name,
        made.weights,
        made.sha256,
        seed,
        prep,
        made.untrained,
        made.readout if readout == "auto" else readout,
        copy=False,
        token_pool=token_pool,
    )
    network.precision = precision  # sites and the stage chain are found in fp32
    return network


def _adjusted(prep: Preprocessing, grayscale: bool, resize: int | None, crop: int | None) -> Preprocessing:
    """``prep`` with the gray option and any resize or crop given on the command line."""
    if (resize is not None and resize < 1) or (crop is not None and crop < 1):
        raise InputError(f"--resize and --crop must be positive numbers of pixels, got {resize} and {crop}")
    return dataclasses.replace(prep, grayscale=grayscale, resize=resize or prep.resize, crop=crop or prep.crop)


def probe_model(
    model: nn.Module,
    name: str,
    weights: str = "custom",
    weights_sha256: str | None = None,
    seed: int = 0,
    prep: Preprocessing | None = None,
    untrained: list[str] | None = None,
    readout: str = "auto",
    copy: bool = True,
    token_pool: str = "patch",
) -> Network:
    """Wrap any network module (torchvision's, timm's, one's own) as a :class:`Network`.

    The module is put in eval mode, its parameters frozen and its in-place activations made
    out-of-place (one would overwrite a cached stage input) — on a copy by default, so the caller's
    module is left as it was.

    Parameters
    ----------
    model : nn.Module
        The network.
    name : str
        Its ``--model`` name (decides the family: ``vgg...`` and ``alexnet`` get the paper's site names).
    weights, weights_sha256 : str
        Where its weights came from (recorded).
    seed : int
        Seed of random weights (recorded).
    prep : Preprocessing, optional
        Resize, crop and normalisation (default: ImageNet's).
    untrained : list[str], optional
        Module paths whose weights were not loaded (never read out).
    readout : str
        ``auto``, ``pooled`` or a readout site name.
    copy : bool
        Work on a copy (False: prepare ``model`` itself, for a module built only for this).
    token_pool : str
        How token sites are pooled: ``patch`` (mean over patch tokens), ``cls``, ``all``.

    Returns
    -------
    Network
        Probe and readout sites found by tracing one forward pass; suffix chain checked.
    """
    if token_pool not in TOKEN_POOLS:
        raise InputError(f"--token-pool {token_pool!r}: use one of {', '.join(TOKEN_POOLS)}")
    if copy:
        model = deepcopy(model)
    prep = prep or Preprocessing()
    untrained = list(untrained or [])
    model.eval()
    for module in model.modules():
        if hasattr(module, "inplace"):  # an in-place activation would overwrite a cached stage input
            module.inplace = False  # type: ignore[assignment]  # nn.Module's stub types attributes as tensors
        for parameter in module.parameters(recurse=False):
            parameter.requires_grad_(False)
    traced = _trace(model, prep.crop)
    sites, layouts = _find_sites(model, name, traced)
    if not sites:
        raise InputError(
            f"{name}: no probe site found (no ReLU-like activation after a convolution with a feature-map "
            f"output, and no repeated block with a token or feature-map output)"
        )
    prefix = _prefix_tokens(model)
    if token_pool == "cls" and prefix == 0 and "tokens" in layouts.values():
        raise InputError(f"--token-pool cls: {name} has no class token; use patch or all")
    shapes = traced.shapes
    units, spatial = {}, {}
    for site, path in sites.items():
        units[site], spatial[site] = _site_shape(shapes[path], layouts[site])  # type: ignore[arg-type]
    readout_site, readout_layer, readout_dim, readout_layout = _readout(traced, sites, untrained, name, readout)
    network = Network(
        name, model, weights, weights_sha256, seed, prep, sites, units, readout_site, readout_layer, readout_dim,
        untrained, None, spatial, layouts, token_pool, prefix, readout_layout,
        depths={site: i / max(len(sites) - 1, 1) for i, site in enumerate(sites)},
    )  # fmt: skip
    stages = _chain(network, prep.crop)
    if stages is not None and all(any(p == s or p.startswith(s + ".") for s, _ in stages) for p in sites.values()):
        network.stages = stages
    elif all(_container_of(network, site) or enclosing_block(network, site) for site in sites):
        inner = [site for site in sites if enclosing_block(network, site)][:1]
        network.replays = _replays_match(network, [*dict.fromkeys([[*sites][0], [*sites][-1], *inner])])
    return network


def keep_sites(network: Network, chosen: list[str]) -> Network:
    """The network probed at ``chosen`` sites only (names, in forward order); each keeps its relative
    depth in the whole network."""

    def only(values: dict) -> dict:
        return {site: values[site] for site in chosen if site in values}

    return dataclasses.replace(
        network,
        sites=only(network.sites),
        units=only(network.units),
        spatial=only(network.spatial),
        layouts=only(network.layouts),
        depths=only(network.depths),
    )


class _Skip(nn.Module):
    """Stands in for a block before the replayed one: passes its input on (extra arguments ignored)."""

    def forward(self, x, *args, **kwargs):
        return x


class _Replay(nn.Module):
    """Stands in for a block: returns the given output whatever its input."""

    def __init__(self, output: torch.Tensor):
        super().__init__()
        self.output = output

    def forward(self, *args, **kwargs) -> torch.Tensor:
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

    def __init__(self, block: nn.Module, given: torch.Tensor):
        super().__init__()
        self.block, self.given = block, given

    def forward(self, x, *args, **kwargs):
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
def replaying(network: Network, site: str, tensor: torch.Tensor, feed: bool = False):
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

    def keep(key, tensor):
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


def repeated(x: torch.Tensor, times: int) -> torch.Tensor:
    """``x`` [n, ...] stacked ``times`` over along its first axis: [times * n, ...]."""
    return x.repeat(times, *([1] * (x.dim() - 1)))


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


def as_input(batch: torch.Tensor) -> torch.Tensor:
    """A picture batch [B, 3, H, W] in channels-last memory layout: the same values, but convolution
    and above all max-pooling run faster on CPUs (``benchmarks/extract.py``; docs/performance.md).
    Results equal the default layout's to float32 rounding (about 1e-6 relative)."""
    return batch.contiguous(memory_format=torch.channels_last) if batch.dim() == 4 else batch


def autocast(network: Network):
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

        def hook(module, args, output, site=site):
            means[site] = unit_responses(output, network.layout(site), network.token_pool, network.prefix_tokens)

        handles.append(network.module(network.sites[site]).register_forward_hook(hook))

    def stop(module, args):
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
