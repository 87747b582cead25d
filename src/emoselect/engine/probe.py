"""Building a :class:`~.network.Network`: load a model from its source, find its probe and readout
sites (:mod:`.families`), and find the engine that runs it (the suffix chain, or replay).
"""

from __future__ import annotations

import dataclasses
from copy import deepcopy

import torch
from torch import nn

from ..base.options import name_of, shown
from ..base.problems import InputError
from ..pictures.images import Preprocessing
from .families import _find_sites, _prefix_tokens, _readout, _site_shape, _trace, family_of
from .forward import as_input, record
from .network import TOKEN_POOLS, Network
from .replay import _container_of, _replays_match, enclosing_block
from .sources import Built, build, state_digest


def _chain(network: Network, size: int) -> list[tuple[str, nn.Module]] | None:
    """The model as a chain of modules equal to its forward pass, ending at the readout layer.

    Top-level children in order, Sequentials expanded; where a feature map meets a linear layer a
    flatten (or global average pool then flatten) is put in between. Returns None unless the chain
    reproduces the readout features :func:`record` gives on a random image to 1e-5.
    """
    model, readout_layer = network.model, network.readout_layer

    def expand(prefix: str, module: nn.Module) -> list[tuple[str, nn.Module]]:
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
) -> Network:
    """Build a network (:mod:`emoselect.engine.sources`) with its probe sites.

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
        ``auto`` (see :mod:`emoselect.engine.network`), ``pooled``, or a site name (``pool5``,
        ``fc6``, ``fc7`` for VGG; ``<linear path>-input`` otherwise).
    resize, crop : int, optional
        Pixels; override the weights' own preprocessing (a random-init control takes its trained
        network's values, so both see the same pictures).
    token_pool : str
        How token sites are pooled: ``patch``, ``cls`` or ``all``.

    Returns
    -------
    Network
        The frozen model (fp32; :meth:`Network.at_precision` for bf16/fp16) with ``sites`` {name:
        module path}, ``units`` {name: units}, the readout site and dimension, and the stage chain
        of the suffix engine (or None).
    """
    made = build(name, weights, seed, family_of(name).build)
    made = dataclasses.replace(made, prep=_adjusted(made.prep, grayscale, resize, crop))
    return _probed(made, name, seed, made.readout if readout == "auto" else readout, token_pool)


def _adjusted(prep: Preprocessing, grayscale: bool, resize: int | None, crop: int | None) -> Preprocessing:
    """``prep`` with the gray option and any resize or crop given on the command line."""
    if (resize is not None and resize < 1) or (crop is not None and crop < 1):
        raise InputError(
            f"{name_of('resize')} and {name_of('crop')} must be positive numbers of pixels, got {resize} and {crop}"
        )
    return dataclasses.replace(prep, grayscale=grayscale, resize=resize or prep.resize, crop=crop or prep.crop)


def probe_model(
    model: nn.Module,
    name: str,
    weights: str = "custom",
    seed: int = 0,
    prep: Preprocessing | None = None,
    untrained: list[str] | None = None,
    readout: str = "auto",
    token_pool: str = "patch",
) -> Network:
    """Wrap any network module (torchvision's, timm's, one's own) as a :class:`Network`.

    The module is copied (the caller's module is left as it was), put in eval mode, its parameters
    frozen and its in-place activations made out-of-place (one would overwrite a cached stage input).
    Its weights are identified by the SHA-256 of its state (so two different modules of one name
    never share cached responses).

    Parameters
    ----------
    model : nn.Module
        The network.
    name : str
        Its ``--model`` name (decides the family: ``vgg...`` and ``alexnet`` get the paper's site names).
    weights : str
        Where its weights came from (recorded).
    seed : int
        Seed of random weights (recorded).
    prep : Preprocessing, optional
        Resize, crop and normalisation (default: ImageNet's).
    untrained : list[str], optional
        Module paths whose weights were not loaded (never read out).
    readout : str
        ``auto``, ``pooled`` or a readout site name.
    token_pool : str
        How token sites are pooled: ``patch`` (mean over patch tokens), ``cls``, ``all``.

    Returns
    -------
    Network
        Probe and readout sites found by tracing one forward pass; suffix chain checked.
    """
    made = Built(deepcopy(model), weights, state_digest(model), prep or Preprocessing(), list(untrained or []))
    return _probed(made, name, seed, readout, token_pool)


def _probed(made: Built, name: str, seed: int, readout: str, token_pool: str) -> Network:
    """The network of a freshly built module (prepared in place: eval mode, frozen, out-of-place
    activations), its sites found by one traced forward pass, and its engine."""
    if token_pool not in TOKEN_POOLS:
        raise InputError(f"{shown('token_pool', token_pool)}: use one of {', '.join(TOKEN_POOLS)}")
    model, prep = made.model, made.prep
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
        raise InputError(f"{shown('token_pool', 'cls', typed='cls')}: {name} has no class token; use patch or all")
    units, spatial = {}, {}
    for site, path in sites.items():
        units[site], spatial[site] = _site_shape(traced.shapes[path], layouts[site])  # type: ignore[arg-type]
    readout_site, readout_layer, readout_dim, readout_layout = _readout(traced, sites, made.untrained, name, readout)
    network = Network(
        name=name, model=model, weights=made.weights, weights_sha256=made.sha256, seed=seed, prep=prep, sites=sites,
        units=units, readout_site=readout_site, readout_layer=readout_layer, readout_dim=readout_dim,
        untrained=made.untrained, spatial=spatial, layouts=layouts, token_pool=token_pool, prefix_tokens=prefix,
        readout_layout=readout_layout, depths={site: i / max(len(sites) - 1, 1) for i, site in enumerate(sites)},
    )  # fmt: skip
    return _with_engine(network)


def _with_engine(network: Network) -> Network:
    """``network`` with the engine its manipulations can use: the suffix chain where one reproduces
    the forward pass and holds every site, else block replays where every site is (inside) a block
    of a container and replaying was checked against a plain forward pass."""
    sites = network.sites
    stages = _chain(network, network.prep.crop)
    if stages is not None and all(any(p == s or p.startswith(s + ".") for s, _ in stages) for p in sites.values()):
        return dataclasses.replace(network, stages=stages)
    if all(_container_of(network, site) or enclosing_block(network, site) for site in sites):
        inner = [site for site in sites if enclosing_block(network, site)][:1]
        replays = _replays_match(network, [*dict.fromkeys([[*sites][0], [*sites][-1], *inner])])
        return dataclasses.replace(network, replays=replays)
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
