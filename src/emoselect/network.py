"""Networks with named probe sites: the "neurons" whose responses emoselect records and manipulates.

``load_network`` builds any torchvision classification CNN by name with ImageNet weights
(torchvision's own file), seeded random weights (the paper's control) or a state-dict file, and
finds its probe sites:

* tuning sites: the output of every ReLU-like activation whose output is a feature map (one unit per
  channel). VGG networks name them ``conv1_1 ... conv5_3``, AlexNet ``conv1 ... conv5``; other
  networks use module paths
  (``features.3.conv.0.2``). An activation module that a network calls more than once (ResNet's
  shared ``relu``) cannot be told apart per call, so the block that owns it is probed instead
  (``layer1.0``: the block output, after the residual sum and activation).
* the readout site: the input of a linear layer, where the 2-unit heads read. It is the input of
  the first linear layer whose weights were *not* loaded (so nothing untrained is read from), or of
  the final classifier layer if all were loaded. For VGG-16 this is ``fc7`` with a full weight file
  and ``pool5`` with a convolution-only one.

Probing hooks reduce feature maps at once (spatial mean), so no full map is ever kept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import os
import sys
import urllib.error
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torchvision
from torch import nn

from .files import file_digest
from .images import Preprocessing
from .problems import InputError

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

    ``matches``: the torchvision names of the family; ``site_names``: (site module paths in forward
    order, the traced modules) -> names (None: the module paths themselves); ``readout_names``: the
    input of which classifier layer is called what (others: ``<path>-input``); ``build``: keyword
    arguments for torchvision's constructor.
    """

    name: str
    matches: Callable[[str], bool]
    site_names: Callable[[list[str], list], list[str]] | None = None
    readout_names: dict[str, str] = field(default_factory=dict)
    build: dict = field(default_factory=dict)


# one table of network families (docs/architecture.md shows it); the last one takes every other network
FAMILIES = [
    Family("VGG", lambda name: name.startswith("vgg"), _vgg_site_names,
           {"classifier.0": "pool5", "classifier.3": "fc6", "classifier.6": "fc7"}),
    Family("AlexNet", lambda name: name == "alexnet", lambda paths, order: [f"conv{i + 1}" for i in range(len(paths))],
           {"classifier.1": "pool5", "classifier.4": "fc6", "classifier.6": "fc7"}),
    Family("Inception", lambda name: name in ("googlenet", "inception_v3"), None, {},
           {"aux_logits": False, "init_weights": True}),
    Family("module paths", lambda name: True),   # ResNet: block outputs layer1.0 ...; MobileNet, ConvNeXt, ...
]  # fmt: skip


def family_of(name: str) -> Family:
    """The family a torchvision model name belongs to (the last family takes any other name)."""
    return next(family for family in FAMILIES if family.matches(name))


@dataclass
class Network:
    """A CNN in eval mode with named probe sites.

    ``sites`` maps a tuning-site name to its module path, in the order the forward pass reaches them;
    ``units`` gives each site's number of channels. ``readout_site`` is the readout's name and
    ``readout_layer`` the path of the linear layer whose input it is (``readout_dim`` wide).
    ``untrained`` lists modules whose weights were not in the weight file.
    ``stages`` is the network as a chain of modules that, applied in order, equals its forward
    pass (checked numerically), or None where no such chain was found; the manipulation engine
    uses it to run only the part of the network after a site. ``spatial``: each site's feature-map
    height and width at the preprocessing's crop.
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

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device) -> Network:
        self.model.to(device)
        return self

    def module(self, path: str) -> nn.Module:
        return self.model.get_submodule(path)

    def describe(self) -> dict:
        """Plain-data provenance for config.yaml."""
        return {
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
            "readout_site": self.readout_site,
            "readout_layer": self.readout_layer,
            "readout_dim": self.readout_dim,
            "untrained_modules": list(self.untrained),
            "suffix_engine": self.stages is not None,
        }


class _StopForward(Exception):
    """Raised by a hook once everything needed from a forward pass has been recorded."""


def _imagenet_weights(name: str):
    try:
        return torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError) as error:
        raise InputError(f"torchvision has no ImageNet weights for {name!r}") from error


def _download_imagenet(name: str) -> tuple[dict, str | None]:
    """torchvision's ImageNet state dict for ``name`` (its cache, else a download) and its sha256."""
    weights = _imagenet_weights(name)
    try:
        state = torch.hub.load_state_dict_from_url(weights.url, progress=True, check_hash=True, map_location="cpu")
    except (urllib.error.URLError, OSError, RuntimeError) as error:
        filename = Path(weights.url).name
        raise InputError(
            f"could not get the ImageNet weights for {name} ({type(error).__name__}: {error}); with no internet, "
            f"download {weights.url} on another machine and pass the file: --weights /path/to/{filename}"
        ) from error
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    return state, file_digest(cached, "sha256") if cached.is_file() else None


def _read_state_dict(path: Path) -> dict:
    if not path.is_file():
        raise InputError(f"{path}: weight file not found (give 'imagenet', 'random' or the path of a state dict)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a broken or foreign file
        with open(path, "rb") as handle:
            head = handle.read(512)
        kind = "a text file" if head and all(b in b"\t\n\r" or 32 <= b < 127 for b in head) else "a file"
        raise InputError(
            f"{path}: {kind} that torch.load cannot read, not a PyTorch state dict saved with "
            f"torch.save ({type(error).__name__}: {error})"
        ) from error
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: not a state dict (a mapping of parameter names to tensors)")
    return {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}


def _load_weights(model: nn.Module, state: dict, source: str, name: str) -> list[str]:
    """Load ``state`` into ``model``; returns the modules left untrained (only linear layers may be)."""
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as error:
        raise InputError(
            f"{source}: these weights do not fit {name} ({str(error).splitlines()[1:2] or error})"
        ) from error
    if result.unexpected_keys:
        raise InputError(
            f"{source}: {len(result.unexpected_keys)} tensors that {name} does not have "
            f"(e.g. {result.unexpected_keys[:3]}): is this a {name} state dict?"
        )
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    modules = sorted({k.rsplit(".", 1)[0] for k in missing})
    not_linear = [m for m in modules if not isinstance(model.get_submodule(m), nn.Linear)]
    if not_linear:
        raise InputError(
            f"{source}: lacks the weights of {len(not_linear)} non-linear modules of {name} "
            f"(e.g. {not_linear[:3]}); only missing classifier (linear) layers are supported"
        )
    return modules


def _trace(model: nn.Module, size: int) -> tuple[list[tuple[str, nn.Module, tuple]], dict[str, int]]:
    """Forward a dummy image; returns (modules in call order with output shapes, call count per path)."""
    order: list[tuple[str, nn.Module, tuple]] = []
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
            model(torch.zeros(1, 3, size, size))
    finally:
        for handle in handles:
            handle.remove()
    return order, counts


def _find_sites(model: nn.Module, name: str, size: int) -> tuple[dict[str, str], dict[str, int], list]:
    """Tuning sites (name -> module path) and their channel counts, in forward order."""
    order, counts = _trace(model, size)
    shapes = {path: shape for path, _, shape in order}
    paths = []
    for path, module, _ in order:
        if not isinstance(module, ACTIVATIONS):
            continue
        site = path
        while counts.get(site, 0) > 1 and "." in site:
            site = site.rsplit(".", 1)[0]
        if counts.get(site, 0) != 1:
            continue
        site_shape = shapes.get(site)
        if site_shape is None or len(site_shape) != 4 or site_shape[2] * site_shape[3] == 1:
            continue  # not a feature map (linear layers, squeeze-excitation vectors)
        if site not in paths:
            paths.append(site)
    position = {path: i for i, (path, _, _) in enumerate(order)}
    paths.sort(key=lambda path: position[path])
    naming = family_of(name).site_names
    sites = dict(zip(naming(paths, order) if naming else paths, paths))
    units = {n: shapes[p][1] for n, p in sites.items()}
    return sites, units, order


def _readout(order, untrained: list[str], name: str, readout: str) -> tuple[str, str, int]:
    """(readout site name, path of the linear layer it feeds, its width)."""
    linears = [(p, m) for p, m, _ in order if isinstance(m, nn.Linear)]
    if not linears:
        raise InputError(f"{name} has no linear classifier layer, so there is no readout site for the heads")
    known = family_of(name).readout_names
    names = {p: known.get(p, f"{p}-input") for p, _ in linears}
    if readout != "auto":
        chosen = [(p, m) for p, m in linears if names[p] == readout]
        if not chosen:
            raise InputError(f"readout site {readout!r} is not one of {name}'s: {', '.join(names.values())}")
        path, module = chosen[0]
        later_untrained = [p for p, _ in linears[: [q for q, _ in linears].index(path)] if p in untrained]
        if later_untrained:
            raise InputError(f"readout site {readout!r} would read through untrained layers {later_untrained}")
    else:
        first_untrained = [(p, m) for p, m in linears if p in untrained]
        path, module = first_untrained[0] if first_untrained else linears[-1]
    return names[path], path, module.in_features


def _chain(model: nn.Module, readout_layer: str, size: int) -> list[tuple[str, nn.Module]] | None:
    """The model as a chain of modules equal to its forward pass, ending at the readout layer.

    Top-level children in order, Sequentials expanded; where a feature map meets a linear layer a
    flatten (or global average pool then flatten) is put in between. Returns None unless the chain
    reproduces the model's own readout input on a random image to 1e-5.
    """

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
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    reference: dict[str, torch.Tensor] = {}
    handle = model.get_submodule(readout_layer).register_forward_pre_hook(
        lambda m, a: reference.setdefault("x", a[0].detach().clone())
    )
    try:
        with torch.inference_mode():
            model(x)
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
                return None
            if x.dim() == 4 and x.shape[1] == model.get_submodule(readout_layer).in_features:
                chain.append(("global_pool", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))))
                x = chain[-1][1](x)
            elif x.dim() > 2:
                chain.append(("flatten", nn.Flatten(1)))
                x = chain[-1][1](x)
    except RuntimeError:
        return None
    finally:
        handle.remove()
    target = reference.get("x")
    if target is None or target.shape != x.shape or not torch.allclose(x, target, rtol=1e-5, atol=1e-6):
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
) -> Network:
    """Build a torchvision CNN with its probe sites.

    Parameters
    ----------
    name : str
        A torchvision classification model (``vgg16``, ``alexnet``, ``resnet18``, ...), or your own
        network as ``module.path:factory``: ``factory(pretrained: bool)`` returns an ``nn.Module``, or
        (module, {"resize", "crop", "mean", "std"}) to give its preprocessing (default ImageNet's).
    weights : str
        ``imagenet`` (torchvision's file, from its cache or downloaded; for a factory: ``pretrained``,
        its own weights), ``random`` (seeded by ``seed``; the untrained control) or the path of a
        state dict.
    seed : int
        Seed of random weights.
    grayscale : bool
        Show the pictures in gray.
    readout : str
        ``auto`` (see the module docstring) or a site name (``pool5``, ``fc6``, ``fc7`` for VGG;
        ``<linear path>-input`` otherwise).
    resize, crop : int, optional
        Pixels; override the weights' own preprocessing (a random-init control takes its trained
        network's values, so both see the same pictures).

    Returns
    -------
    Network
        The frozen model with ``sites`` {name: module path}, ``units`` {name: channels}, the
        readout site and dimension, and the stage chain of the suffix engine (or None).
    """
    if ":" in name:
        user, label, digest, missing, own = _user_model(name, weights, seed)
        return probe_model(
            user, name, label, digest, seed, _adjusted(own, grayscale, resize, crop), missing, readout, copy=False
        )
    if name not in torchvision.models.list_models(module=torchvision.models):
        raise InputError(
            f"unknown model {name!r}; use a torchvision classification model such as vgg16, alexnet, resnet50, "
            f"mobilenet_v2, or your own as module.path:factory"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = torchvision.models.get_model(name, weights=None, **family_of(name).build)
    untrained, sha256 = [], None
    if weights == "imagenet":
        state, sha256 = _download_imagenet(name)
        untrained = _load_weights(model, state, f"torchvision's {name} ImageNet weights", name)
    elif weights == "random":
        untrained = []
    else:
        path = Path(weights).expanduser()
        untrained = _load_weights(model, _read_state_dict(path), str(path), name)
        sha256 = file_digest(path, "sha256")
        weights = str(path.resolve())
    if weights == "imagenet":  # torchvision's file comes with its own preprocessing (e.g. resize 232 for some)
        transform = _imagenet_weights(name).transforms()
        prep = Preprocessing(
            resize=int(transform.resize_size[0]),
            crop=int(transform.crop_size[0]),
            grayscale=grayscale,
            mean=tuple(transform.mean),
            std=tuple(transform.std),
        )
    else:  # the standard ImageNet convention: resize 256, centre crop 224
        prep = Preprocessing(grayscale=grayscale)
    return probe_model(
        model, name, weights, sha256, seed, _adjusted(prep, grayscale, resize, crop), untrained, readout, copy=False
    )


def _adjusted(prep: Preprocessing, grayscale: bool, resize: int | None, crop: int | None) -> Preprocessing:
    """``prep`` with the gray option and any resize or crop given on the command line."""
    if (resize is not None and resize < 1) or (crop is not None and crop < 1):
        raise InputError(f"--resize and --crop must be positive numbers of pixels, got {resize} and {crop}")
    return dataclasses.replace(prep, grayscale=grayscale, resize=resize or prep.resize, crop=crop or prep.crop)


def state_digest(model: nn.Module) -> str:
    """SHA-256 of a module's parameters and buffers (names, dtypes, shapes and bytes): the identity of
    its weights, wherever they came from."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{key}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest.hexdigest()


def _user_model(name: str, weights: str, seed: int) -> tuple[nn.Module, str, str | None, list[str], Preprocessing]:
    """A user's network from ``module.path:factory``: ``factory(pretrained=...)`` returns an nn.Module,
    or (module, {"resize", "crop", "mean", "std"}) to give its preprocessing (default: ImageNet's).

    ``weights``: ``pretrained``/``imagenet`` -> factory(pretrained=True); ``random`` ->
    factory(pretrained=False) with torch seeded by ``seed`` (the random-init control); a file ->
    factory(pretrained=False), then that state dict. The weights' identity is the SHA-256 of the
    module's state (:func:`state_digest`), so a changed factory is never served stale responses."""
    module_path, _, attribute = name.partition(":")
    try:
        module = importlib.import_module(module_path)
    except ModuleNotFoundError:
        sys.path.insert(0, os.getcwd())  # a module next to the user's data, as `python -m` would find it
        try:
            module = importlib.import_module(module_path)
        except ModuleNotFoundError as error:
            raise InputError(f"--model {name}: cannot import {module_path!r} ({error})") from error
        finally:
            sys.path.remove(os.getcwd())
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise InputError(f"--model {name}: {module_path} has no function {attribute!r}")
    pretrained = weights in ("imagenet", "pretrained")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        built = factory(pretrained=pretrained)
    model, given = built if isinstance(built, tuple) else (built, {})
    if not isinstance(model, nn.Module):
        raise InputError(f"--model {name}: the factory returned {type(model).__name__}, not a torch.nn.Module")
    unknown = sorted(set(given) - {"resize", "crop", "mean", "std"})
    if unknown:
        raise InputError(f"--model {name}: the factory's preprocessing has unknown keys {unknown}")
    default = Preprocessing()
    mean, std = given.get("mean", default.mean), given.get("std", default.std)
    prep = Preprocessing(
        resize=int(given.get("resize", default.resize)),
        crop=int(given.get("crop", default.crop)),
        mean=(float(mean[0]), float(mean[1]), float(mean[2])),
        std=(float(std[0]), float(std[1]), float(std[2])),
    )
    untrained: list[str] = []
    if pretrained:
        weights = "pretrained"
    elif weights != "random":
        path = Path(weights).expanduser()
        untrained = _load_weights(model, _read_state_dict(path), str(path), name)
        weights = str(path.resolve())
    return model, weights, state_digest(model), untrained, prep


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
) -> Network:
    """Wrap any CNN module (torchvision's or one's own) as a :class:`Network`.

    The module is put in eval mode, its parameters frozen and its in-place activations made
    out-of-place (one would overwrite a cached stage input) — on a copy by default, so the caller's
    module is left as it was.

    Parameters
    ----------
    model : nn.Module
        The network.
    name : str
        Its family name (``vgg...`` and ``alexnet`` get the paper's site names).
    weights, weights_sha256 : str
        Where its weights came from (recorded).
    seed : int
        Seed of random weights (recorded).
    prep : Preprocessing, optional
        Resize, crop and normalisation (default: ImageNet's).
    untrained : list[str], optional
        Module paths whose weights were not loaded (never read out).
    readout : str
        ``auto`` or a readout site name.
    copy : bool
        Work on a copy (False: prepare ``model`` itself, for a module built only for this).

    Returns
    -------
    Network
        Probe and readout sites found by tracing one forward pass; suffix chain checked.
    """
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
    sites, units, order = _find_sites(model, name, prep.crop)
    if not sites:
        raise InputError(f"{name}: no ReLU-like activation with a feature-map output was found to probe")
    readout_site, readout_layer, readout_dim = _readout(order, untrained, name, readout)
    stages = _chain(model, readout_layer, prep.crop)
    if stages is not None and not all(any(p == s or p.startswith(s + ".") for s, _ in stages) for p in sites.values()):
        stages = None
    return Network(
        name,
        model,
        weights,
        weights_sha256,
        seed,
        prep,
        sites,
        units,
        readout_site,
        readout_layer,
        readout_dim,
        untrained,
        stages,
        {site: tuple(shape[2:]) for site, shape in _shapes_of(order, sites).items()},
    )


def _shapes_of(order: list[tuple[str, nn.Module, tuple]], sites: dict[str, str]) -> dict[str, tuple]:
    """Each site's traced output shape [1, channels, height, width]."""
    shapes = {path: shape for path, _, shape in order}
    return {site: shapes[path] for site, path in sites.items()}


def as_input(batch: torch.Tensor) -> torch.Tensor:
    """A picture batch [B, 3, H, W] in channels-last memory layout: the same values, but convolution
    and above all max-pooling run faster on CPUs (``benchmarks/extract.py``; docs/performance.md).
    Results equal the default layout's to float32 rounding (about 1e-6 relative)."""
    return batch.contiguous(memory_format=torch.channels_last) if batch.dim() == 4 else batch


@torch.inference_mode()
def record(
    network: Network, batch: torch.Tensor, sites: list[str] | None = None
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One forward pass of a normalised batch [B, 3, H, W].

    Returns ({site: spatial-mean response [B, units]}, readout features [B, readout_dim]); the
    forward pass stops at the readout layer. Full feature maps are reduced inside the hooks.
    """
    sites = list(network.sites) if sites is None else sites
    means, readout, handles = {}, {}, []
    for site in sites:

        def hook(module, args, output, site=site):
            means[site] = output.float().mean(dim=(2, 3))

        handles.append(network.module(network.sites[site]).register_forward_hook(hook))

    def stop(module, args):
        readout["x"] = args[0].float().flatten(1)
        raise _StopForward

    handles.append(network.module(network.readout_layer).register_forward_pre_hook(stop))
    try:
        network.model(as_input(batch))
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return means, readout["x"]
