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
from dataclasses import dataclass, field

import torch
from torch import nn

from ..base.options import shown
from ..base.problems import InputError
from ..pictures.images import Preprocessing

TOKEN_POOLS = ("patch", "cls", "all")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # autocast dtype of the forward pass
POOLED = "pooled"  # the readout site that is the network's own (pooled) output


@dataclass(frozen=True, kw_only=True)
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

    def at_precision(self, precision: str) -> Network:
        """The same network with its forward passes in ``precision``: ``fp32`` (default), or
        ``bf16``/``fp16`` under autocast (faster where the device supports it; docs/performance.md
        gives its agreement with fp32; sites and the stage chain are always found in fp32)."""
        if precision not in PRECISIONS:
            raise InputError(f"{shown('precision', precision)}: use one of {', '.join(PRECISIONS)}")
        return dataclasses.replace(self, precision=precision)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: torch.device | str) -> Network:
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
