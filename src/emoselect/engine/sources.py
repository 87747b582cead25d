"""Where networks come from: ``--model`` names and ``--weights`` values -> a module and its preprocessing.

| ``--model`` | builds | ``--weights`` |
|---|---|---|
| a torchvision name (``vgg16``, ``resnet50``, ``vit_b_16``, ``swin_t``, ...) | ``torchvision.models.get_model`` | ``imagenet`` (torchvision's file), ``random``, a state-dict file |
| ``timm:NAME`` (extra ``emoselect[timm]``) | ``timm.create_model(NAME)`` | ``pretrained``/``imagenet`` (timm's download), ``random``, a file |
| ``openclip:ARCH[@TAG]`` (extra ``emoselect[clip]``) | the image tower of ``open_clip.create_model(ARCH)`` | ``pretrained`` (TAG, default the first listed), ``random``, a file |
| ``module.path:factory`` | ``factory(pretrained: bool)`` | ``pretrained``, ``random``, a file |

``random`` weights are drawn with torch seeded by the seed (the paper's control); a network and its
random-init control are built by the same constructor and take the same preprocessing. Offline, a
download fails with one sentence naming the file to fetch and ``--weights FILE``; a missing extra
names the ``pip install`` to run.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import logging
import os
import sys
import urllib.error
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TypeVar

import torch
import torchvision
from torch import nn

from ..base.files import file_digest
from ..base.problems import InputError, one_line
from ..pictures.images import Preprocessing

_T = TypeVar("_T")


@dataclass
class Built:
    """A freshly built module: ``weights`` as recorded (``imagenet``, ``pretrained``, ``random`` or a
    resolved path), their SHA-256 (of the file, or of the state for weights without a file),
    ``untrained`` module paths whose weights were not loaded, the preprocessing, and the readout
    site the source prefers (``auto``: decided from the traced network)."""

    model: nn.Module
    weights: str
    sha256: str | None
    prep: Preprocessing
    untrained: list[str] = field(default_factory=list)
    readout: str = "auto"


def build(name: str, weights: str, seed: int, constructor_arguments: dict | None = None) -> Built:
    """The module named by ``--model`` with ``--weights`` (see the module docstring)."""
    if name.startswith("timm:"):
        return _timm(name[len("timm:") :], weights, seed)
    if name.startswith("openclip:"):
        return _openclip(name[len("openclip:") :], weights, seed)
    if ":" in name:
        return _user_model(name, weights, seed)
    return _torchvision(name, weights, seed, constructor_arguments or {})


def _seeded(seed: int, make: Callable[[], _T]) -> _T:
    """``make()`` with torch's global generator seeded (and restored afterwards)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


def _optional(module: str, extra: str) -> ModuleType:
    """Import an optional dependency, or say in one sentence how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise InputError(
            f"this model needs the optional package {module!r}: pip install 'emoselect[{extra}]' ({error})"
        ) from error


def _from_file(model: nn.Module, weights: str, name: str) -> tuple[str, str, list[str]]:
    """Load a state-dict file into ``model``: (resolved path, its SHA-256, untrained modules)."""
    path = Path(weights).expanduser()
    untrained = load_weights(model, read_state_dict(path), str(path), name)
    return str(path.resolve()), file_digest(path, "sha256"), untrained


def _offline(name: str, what: str, error: Exception) -> InputError:
    return InputError(
        f"could not get the pretrained weights of {name} ({type(error).__name__}: {error}); on a machine with "
        f"internet run {what}, save its state_dict() with torch.save and pass that file as --weights FILE"
    )


def _torchvision(name: str, weights: str, seed: int, arguments: dict) -> Built:
    if name not in torchvision.models.list_models(module=torchvision.models):
        raise InputError(
            f"unknown model {name!r}; use a torchvision classification model such as vgg16, alexnet, resnet50, "
            f"vit_b_16, swin_t, or timm:NAME, openclip:ARCH, or your own as module.path:factory"
        )
    model = _seeded(seed, lambda: torchvision.models.get_model(name, weights=None, **arguments))
    prep = Preprocessing()  # the standard ImageNet convention: resize 256, centre crop 224
    if weights in ("imagenet", "pretrained"):
        state, sha256 = _download_imagenet(name)
        untrained = load_weights(model, state, f"torchvision's {name} ImageNet weights", name)
        transform = _imagenet_weights(name).transforms()  # its own preprocessing (e.g. resize 232 for some)
        prep = Preprocessing(
            resize=int(transform.resize_size[0]),
            crop=int(transform.crop_size[0]),
            mean=tuple(transform.mean),
            std=tuple(transform.std),
        )
        return Built(model, "imagenet", sha256, prep, untrained)
    if weights == "random":
        return Built(model, "random", None, prep)
    path, sha256, untrained = _from_file(model, weights, name)
    return Built(model, path, sha256, prep, untrained)


def _imagenet_weights(name: str) -> torchvision.models.WeightsEnum:
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


def _timm(name: str, weights: str, seed: int) -> Built:
    """A timm model; its preprocessing from timm's data config (resize = crop / crop_pct)."""
    timm = _optional("timm", "timm")
    if name not in timm.list_models():
        raise InputError(f"timm has no model {name!r} (timm.list_models() lists them)")
    pretrained = weights in ("imagenet", "pretrained")
    try:
        model = _seeded(seed, lambda: timm.create_model(name, pretrained=pretrained))
    except (OSError, RuntimeError, ValueError) as error:  # offline: huggingface_hub raises OSError subclasses
        raise _offline(f"timm:{name}", f"timm.create_model({name!r}, pretrained=True)", error) from error
    config = timm.data.resolve_data_config({}, model=model)
    crop = int(config["input_size"][-1])
    prep = Preprocessing(
        resize=int(round(crop / float(config.get("crop_pct", 0.875)))),
        crop=crop,
        mean=_triple(config["mean"]),
        std=_triple(config["std"]),
    )
    if pretrained:
        return Built(model, "pretrained", state_digest(model), prep)
    if weights == "random":
        return Built(model, "random", None, prep)
    path, sha256, untrained = _from_file(model, weights, f"timm:{name}")
    return Built(model, path, sha256, prep, untrained)


def _openclip(spec: str, weights: str, seed: int) -> Built:
    """The image tower of an OpenCLIP model ``ARCH`` or ``ARCH@TAG``; read out at its embedding
    (the tower's output, ``pooled``): a CLIP tower has no classifier."""
    open_clip = _optional("open_clip", "clip")
    arch, _, tag = spec.partition("@")
    if arch not in open_clip.list_models():
        raise InputError(f"OpenCLIP has no model {arch!r} (open_clip.list_models() lists them)")
    pretrained = weights in ("imagenet", "pretrained")
    if pretrained and not tag:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        if not tags:
            raise InputError(f"OpenCLIP lists no pretrained weights for {arch!r}; give --weights FILE or random")
        tag = tags[0]
    try:
        if not pretrained:  # its "no pretrained weights loaded" warning is what --weights random asks for
            logging.disable(logging.WARNING)
        clip = _seeded(seed, lambda: open_clip.create_model(arch, pretrained=tag if pretrained else None))
    except (OSError, RuntimeError, ValueError) as error:
        raise _offline(
            f"openclip:{arch}@{tag}", f"open_clip.create_model({arch!r}, pretrained={tag!r})", error
        ) from error
    finally:
        logging.disable(logging.NOTSET)
    tower = clip.visual
    config = getattr(tower, "preprocess_cfg", {}) or {}
    size = config.get("size", getattr(tower, "image_size", 224))
    crop = int(size[-1] if isinstance(size, (tuple, list)) else size)
    default = Preprocessing()
    prep = Preprocessing(
        resize=crop,  # OpenCLIP resizes the short side to the crop size
        crop=crop,
        mean=_triple(config.get("mean", default.mean)),
        std=_triple(config.get("std", default.std)),
    )
    if pretrained:
        return Built(tower, f"pretrained {tag}", state_digest(tower), prep, readout="pooled")
    if weights == "random":
        return Built(tower, "random", None, prep, readout="pooled")
    path, sha256, untrained = _from_file(tower, weights, f"openclip:{arch}")
    return Built(tower, path, sha256, prep, untrained, readout="pooled")


def _triple(values: Iterable[float]) -> tuple[float, float, float]:
    values = [float(v) for v in values]
    return (values[0], values[1], values[2])


def read_state_dict(path: Path) -> dict:
    """A state dict from a file saved with ``torch.save`` (a ``state_dict`` entry and ``module.``
    prefixes of DataParallel are unwrapped); a clear error for anything else."""
    if not path.is_file():
        raise InputError(f"{path}: weight file not found (give 'imagenet', 'random' or the path of a state dict)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a broken or foreign file
        with open(path, "rb") as handle:
            head = handle.read(512)
        kind = "a text file" if head and all(b in b"\t\n\r" or 32 <= b < 127 for b in head) else "a file"
        if "weights only load failed" in str(error).lower():  # a pickle that would run code or build objects
            blocked = [line for line in str(error).splitlines() if "GLOBAL" in line]
            detail = one_line(blocked[0] if blocked else error, 120)
            raise InputError(f"{path}: refused: loading it would run code, not only read tensors ({detail})") from error
        raise InputError(
            f"{path}: {kind} that torch.load cannot read, not a PyTorch state dict saved with "
            f"torch.save ({type(error).__name__}: {one_line(error)})"
        ) from error
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: not a state dict (a mapping of parameter names to tensors)")
    return {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}


def load_weights(model: nn.Module, state: dict, source: str, name: str) -> list[str]:
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


def state_digest(model: nn.Module) -> str:
    """SHA-256 of a module's parameters and buffers (names, dtypes, shapes and bytes): the identity of
    its weights, wherever they came from."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{key}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest.hexdigest()


def _import_user_module(name: str, module_path: str) -> ModuleType:
    try:
        return importlib.import_module(module_path)
    except ModuleNotFoundError:
        sys.path.insert(0, os.getcwd())  # a module next to the user's data, as `python -m` would find it
        try:
            return importlib.import_module(module_path)
        except ModuleNotFoundError as error:
            raise InputError(f"--model {name}: cannot import {module_path!r} ({error})") from error
        finally:
            sys.path.remove(os.getcwd())


def _check_takes_pretrained(name: str, factory: Callable) -> None:
    """An :class:`InputError` unless ``factory`` can be called as ``factory(pretrained=...)``."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # no signature to read (a builtin): the call itself decides
        return
    try:
        signature.bind(pretrained=True)
    except TypeError as error:
        raise InputError(
            f"--model {name}: the factory must take `pretrained=` (def {factory.__name__}(pretrained: bool) -> "
            f"nn.Module); its signature is {factory.__name__}{signature} ({error})"
        ) from error


def _user_model(name: str, weights: str, seed: int) -> Built:
    """A user's network from ``module.path:factory``: ``factory(pretrained=...)`` returns an nn.Module,
    or (module, {"resize", "crop", "mean", "std"}) to give its preprocessing (default: ImageNet's).

    ``weights``: ``pretrained``/``imagenet`` -> factory(pretrained=True); ``random`` ->
    factory(pretrained=False) with torch seeded by ``seed`` (the random-init control); a file ->
    factory(pretrained=False), then that state dict. Weights without a file are identified by the
    SHA-256 of the module's state (:func:`state_digest`), so a changed factory is never served stale
    responses."""
    module_path, _, attribute = name.partition(":")
    factory = getattr(_import_user_module(name, module_path), attribute, None)
    if not callable(factory):
        raise InputError(f"--model {name}: {module_path} has no function {attribute!r}")
    pretrained = weights in ("imagenet", "pretrained")
    _check_takes_pretrained(name, factory)
    built = _seeded(seed, lambda: factory(pretrained=pretrained))
    model, given = built if isinstance(built, tuple) else (built, {})
    if not isinstance(model, nn.Module):
        raise InputError(f"--model {name}: the factory returned {type(model).__name__}, not a torch.nn.Module")
    unknown = sorted(set(given) - {"resize", "crop", "mean", "std"})
    if unknown:
        raise InputError(f"--model {name}: the factory's preprocessing has unknown keys {unknown}")
    default = Preprocessing()
    prep = Preprocessing(
        resize=int(given.get("resize", default.resize)),
        crop=int(given.get("crop", default.crop)),
        mean=_triple(given.get("mean", default.mean)),
        std=_triple(given.get("std", default.std)),
    )
    if pretrained:
        return Built(model, "pretrained", state_digest(model), prep)
    if weights == "random":
        return Built(model, "random", state_digest(model), prep)
    path, _, untrained = _from_file(model, weights, name)
    return Built(model, path, state_digest(model), prep, untrained)
