"""Networks: weights, partial loads, probe sites, readout site and the suffix chain."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from emoselect.base.problems import InputError
from emoselect.engine.forward import record
from emoselect.engine.probe import load_network


def test_vgg16_shared_weights_classifier_untrained_and_readout_pool5(vgg_weights):
    network = load_network("vgg16", str(vgg_weights))
    assert list(network.sites) == [
        f"conv{b}_{i}" for b, n in [(1, 2), (2, 2), (3, 3), (4, 3), (5, 3)] for i in range(1, n + 1)
    ]
    assert [network.units[s] for s in ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_3")] == [
        64,
        128,
        256,
        512,
        512,
    ]
    assert network.untrained == ["classifier.0", "classifier.3", "classifier.6"]
    assert network.readout_site == "pool5" and network.readout_dim == 25088
    assert network.stages is not None
    assert not any(getattr(m, "inplace", False) for m in network.model.modules())
    with pytest.raises(InputError, match="untrained"):
        load_network("vgg16", str(vgg_weights), readout="fc7")


def test_random_weights_are_seeded_and_read_out_at_fc7():
    a, b, c = (load_network("vgg11", "random", seed=s) for s in (1, 1, 2))
    assert torch.equal(a.model.features[0].weight, b.model.features[0].weight)
    assert not torch.equal(a.model.features[0].weight, c.model.features[0].weight)
    assert a.readout_site == "fc7" and a.readout_dim == 4096 and a.untrained == []
    assert list(a.sites)[:3] == ["conv1_1", "conv2_1", "conv3_1"]


def test_imagenet_weights_offline_fail_in_one_clear_sentence(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(InputError) as error:
        load_network("vgg16", "imagenet")
    message = str(error.value)
    assert "vgg16-397923af.pth" in message and "--weights" in message and "\n" not in message


def test_wrong_or_broken_weight_files_are_clear(tmp_path, mobilenet_weights):
    with pytest.raises(InputError, match="not found"):
        load_network("alexnet", str(tmp_path / "none.pth"))
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(InputError, match="not a PyTorch state dict"):
        load_network("alexnet", str(tmp_path / "junk.pth"))
    with pytest.raises(InputError, match="does not have|do not fit"):
        load_network("vgg16", str(mobilenet_weights))
    with pytest.raises(InputError, match="unknown model"):
        load_network("vgg17", "random")


def test_missing_convolution_weights_are_refused(tmp_path):
    state = load_network("alexnet", "random").model.state_dict()
    del state["features.0.weight"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(InputError, match="non-linear modules"):
        load_network("alexnet", str(tmp_path / "partial.pth"))


def test_wrapped_state_dicts_are_accepted(tmp_path):
    state = load_network("mobilenet_v3_small", "random", seed=5).model.state_dict()
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "wrapped.pth")
    network = load_network("mobilenet_v3_small", str(tmp_path / "wrapped.pth"))
    assert torch.equal(network.model.features[0][0].weight, state["features.0.0.weight"])
    assert len(network.weights_sha256) == 64


def test_shared_activation_modules_are_probed_at_their_block():
    network = load_network("resnet18", "random")
    assert list(network.sites) == [
        *"relu layer1.0 layer1.1 layer2.0 layer2.1 layer3.0 layer3.1 layer4.0 layer4.1".split()
    ]
    assert network.readout_site == "fc-input" and network.readout_dim == 512


def test_mobilenet_v2_shared_weights(mobilenet_weights):
    network = load_network("mobilenet_v2", str(mobilenet_weights))
    assert network.untrained == [] and network.readout_site == "classifier.1-input" and network.readout_dim == 1280
    assert len(network.sites) == 35 and network.stages is not None
    assert all(isinstance(network.module(p), nn.ReLU6) for p in network.sites.values())


def test_chain_equals_forward_and_record_stops_at_readout():
    network = load_network("alexnet", "random", seed=3)
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        y = x
        for _, module in network.stages:
            y = module(y)
        pool5 = torch.flatten(network.model.avgpool(network.model.features(x)), 1)
        reference = torch.relu(network.model.classifier[4](torch.relu(network.model.classifier[1](pool5))))
    torch.testing.assert_close(y, reference, rtol=1e-5, atol=1e-5)
    means, readout = record(network, x)
    torch.testing.assert_close(readout, reference, rtol=1e-5, atol=1e-5)
    assert set(means) == set(network.sites) and means["conv1"].shape == (2, 64)


def test_grayscale_option_is_in_the_preprocessing():
    assert load_network("alexnet", "random", grayscale=True).prep.grayscale


def test_a_control_sees_the_same_pictures_as_its_network_defect_6():
    """torchvision's ImageNet weights for e.g. resnet50 resize to 232, random weights to 256: the
    control must take its trained network's preprocessing, whatever its own default."""
    from emoselect.run.config import ExtractOptions
    from emoselect.stages.extract import build_network, control_options

    trained = load_network("resnet18", "random", seed=0, resize=232)
    assert trained.prep.resize == 232 and trained.prep.crop == 224
    options = ExtractOptions(datasets={"x": "."}, model="resnet18", weights="random", seed=5)
    control = build_network(control_options(options, trained, k=2))
    assert control.prep == trained.prep and control.seed == 6
    assert load_network("resnet18", "random").prep.resize == 256
    with pytest.raises(InputError, match="^resize and crop must be positive"):
        load_network("resnet18", "random", resize=0)


def test_probe_model_leaves_the_callers_model_as_it_was():
    import torch
    from torch import nn

    from emoselect.engine.probe import probe_model
    from emoselect.pictures.images import Preprocessing

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(4 * 30 * 30, 2)).train()
    network = probe_model(model, "tiny", prep=Preprocessing(resize=32, crop=32))
    assert model.training and model[1].inplace and all(p.requires_grad for p in model.parameters())
    assert not network.model.training and not network.model[1].inplace
    assert torch.equal(network.model[0].weight, model[0].weight)


def test_public_functions_document_parameters_and_returns():
    import inspect

    import emoselect

    for name in emoselect.__all__:
        value = getattr(emoselect, name)
        if inspect.isfunction(value):
            doc = inspect.getdoc(value) or ""
            assert "Parameters\n----------" in doc and "Returns\n-------" in doc, name


def test_sites_lists_probe_sites_readout_and_untrained_modules(vgg_weights, capsys):
    from emoselect.cli import main

    assert main(["sites", "vgg16", "--weights", str(vgg_weights), "--layers", "conv4_3:conv5_2"]) == 0
    out = capsys.readouterr().out
    assert "vgg16 (VGG)" in out and "13 probe sites" in out
    lines = [line.split() for line in out.splitlines() if line.startswith("  conv")]
    assert [line[0] for line in lines] == ["conv4_3", "conv5_1", "conv5_2"]
    assert lines[0][1:4] == ["features.22", "512", "28x28"] and lines[-1][1:4] == ["features.27", "512", "14x14"]
    assert "readout: pool5 (25088-d, the input of classifier.0)" in out
    assert "untrained modules: classifier.0, classifier.3, classifier.6" in out and "suffix engine" in out


def test_sites_of_a_random_resnet_are_its_block_outputs(capsys):
    from emoselect.cli import main

    assert main(["sites", "resnet18", "--weights", "random", "--layers", "layer4.0:"]) == 0
    out = capsys.readouterr().out
    assert "resnet18 (module paths)" in out and "layer4.0" in out and "layer4.1" in out and "layer3.1" not in out
    assert "random-init control" in out
    assert main(["sites", "resnet18", "--weights", "random", "--layers", "conv9"]) == 2


def test_layer_ranges_select_sites_in_forward_order():
    import pytest

    from emoselect.analysis.experiments import select_sites
    from emoselect.base.problems import InputError

    sites = ["conv1", "conv2", "conv3", "conv4", "conv5"]
    assert select_sites(["conv2:conv4"], sites) == ["conv2", "conv3", "conv4"]
    assert select_sites(["conv5", ":conv2", "conv1"], sites) == ["conv1", "conv2", "conv5"]
    assert select_sites(["conv4:"], sites) == ["conv4", "conv5"]
    from emoselect.analysis.experiments import ManipulationOptions

    assert ManipulationOptions(layers=["conv2:conv3"]).resolved(sites).layers == ["conv2", "conv3"]
    with pytest.raises(InputError, match="comes after"):
        select_sites(["conv4:conv2"], sites)
    with pytest.raises(InputError, match="'conv9' is not a probe site"):
        select_sites(["conv1:conv9"], sites)


def test_every_family_names_its_sites_from_one_table():
    from emoselect.engine.families import FAMILIES, family_of

    assert family_of("vgg19_bn").name == "VGG" and family_of("alexnet").name == "AlexNet"
    assert family_of("googlenet").build == {"aux_logits": False, "init_weights": True}
    assert family_of("resnet50") is FAMILIES[-1] and family_of("timm:resnet50") is FAMILIES[-1]
    for name in ("vit_b_16", "swin_t", "convnext_tiny", "timm:vit_tiny_patch16_224", "openclip:RN50"):
        assert family_of(name).sites == "blocks", name
    table = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text()
    assert all(f"| {family.name} |" in table for family in FAMILIES)  # the docs list every family


FACTORY = """
import torch
from torch import nn


def build(pretrained=False):
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))
    if pretrained:                      # "trained" weights: a fixed pattern, so the test can tell them apart
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.copy_(torch.linspace(-0.3, 0.3, parameter.numel()).reshape(parameter.shape))
    return model, {"resize": 40, "crop": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


def not_a_network(pretrained=False):
    return "nope"


def no_pretrained_argument(depth=2):
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3))
"""


def test_a_users_own_network_from_module_path_and_factory(tmp_path, monkeypatch):
    import pytest
    import torch

    from emoselect.base.problems import InputError
    from emoselect.engine.probe import load_network
    from emoselect.engine.sources import state_digest

    (tmp_path / "my_nets.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    trained = load_network("my_nets:build", "pretrained")
    assert list(trained.sites) == ["1", "4"] and trained.units == {"1": 8, "4": 16}
    assert (trained.prep.resize, trained.prep.crop, trained.prep.mean) == (40, 32, (0.5, 0.5, 0.5))
    assert trained.weights == "pretrained" and trained.weights_sha256 == state_digest(trained.model)
    assert torch.equal(trained.model[0].weight.reshape(-1), torch.linspace(-0.3, 0.3, 8 * 27))
    first, again, other = (load_network("my_nets:build", "random", seed=s) for s in (1, 1, 2))
    assert first.weights_sha256 == again.weights_sha256 != other.weights_sha256 != trained.weights_sha256
    assert first.readout_site == "7-input" and first.stages is not None
    saved = tmp_path / "weights.pth"
    torch.save(trained.model.state_dict(), saved)
    from_file = load_network("my_nets:build", str(saved), seed=5)
    assert from_file.weights_sha256 == trained.weights_sha256  # the same weights, whatever the source
    for name, message in (("no_such_module:build", "cannot import"), ("my_nets:missing", "no function 'missing'"),
                          ("my_nets:not_a_network", "not a torch.nn.Module"),
                          ("my_nets:no_pretrained_argument",  # issue 20 item 12: was a bare TypeError
                           r"the factory must take `pretrained=` .*no_pretrained_argument\(depth=2\)")):  # fmt: skip
        with pytest.raises(InputError, match=message):
            load_network(name, "random")


def test_a_users_network_runs_through_the_pipeline_with_its_control(tmp_path, monkeypatch):
    import numpy as np
    import yaml

    from conftest import make_oasis
    from emoselect.cli import main

    (tmp_path / "my_nets.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    make_oasis(tmp_path / "set", n=30, valences=np.repeat([2.0, 4.5, 6.5], 10))
    run = tmp_path / "run"
    network = "--model my_nets:build --weights pretrained --workers 0 --null-permutations 10 --controls 1".split()
    sweep = "--layers 4 --betas 0 2 --repeats 2 --lesion-repeats 3 --epochs 2".split()
    assert main(["-q", "run", "--dataset", f"s={tmp_path / 'set'}", *network, *sweep, "--out", str(run)]) == 0
    trained = yaml.safe_load((run / "config.yaml").read_text())["network"]
    control = yaml.safe_load((run / "control" / "config.yaml").read_text())["network"]
    assert trained["weights"] == "pretrained" and control["weights"] == "random"
    assert trained["weights_sha256"] != control["weights_sha256"]
    assert trained["preprocessing"]["crop"] == control["preprocessing"]["crop"] == 32
    assert (run / "table1.csv").is_file() and (run / "control" / "table1.csv").is_file()
    import pandas as pd

    # sites named "1" and "4" (module paths of a Sequential) stay names when tables are read back:
    # the selective units of layer "4" are manipulated (they were silently dropped when read as the number 4)
    summary = pd.read_csv(run / "manipulation_summary.csv", dtype={"layer": str})
    selective = pd.read_csv(run / "selective.csv", dtype={"layer": str})
    assert set(summary["layer"]) == {"4"} and set(summary["emotion"]) == set(
        selective.loc[selective["layer"] == "4", "category"]
    )
    assert len(pd.read_csv(run / "table1.csv")) == summary["emotion"].nunique()


def test_controls_of_a_random_weight_network_are_not_copies_of_it():
    import dataclasses

    from emoselect.run.config import ExtractOptions
    from emoselect.stages.extract import control_options

    network = load_network("mobilenet_v3_small", "random", seed=3)
    options = ExtractOptions(datasets={"x": "."}, model="mobilenet_v3_small", weights="random", seed=3)
    assert [control_options(options, network, k).init_seed for k in (1, 2, 3)] == [4, 5, 6]
    trained = dataclasses.replace(
        network, weights="/weights/trained.pth"
    )  # a trained network keeps seed, seed + 1, ...
    assert [control_options(options, trained, k).init_seed for k in (1, 2, 3)] == [3, 4, 5]


def test_sites_option_records_a_subset_that_keeps_its_depth_in_the_whole_network(tmp_path):
    import numpy as np
    import pandas as pd
    import yaml

    from conftest import SMALL, make_oasis
    from emoselect.cli import main

    make_oasis(tmp_path / "set", n=30, valences=np.repeat([2.0, 4.5, 6.5], 10))
    run = tmp_path / "run"
    words = ["--dataset", f"s={tmp_path / 'set'}", *SMALL, "--sites", "features.9.block.0.2:features.12.2"]
    assert main(["-q", "extract", *words, "--out", str(run)]) == 0
    assert main(["-q", "selectivity", str(run), "--null-permutations", "5"]) == 0
    whole = load_network("mobilenet_v3_small", "random")
    kept = list(yaml.safe_load((run / "config.yaml").read_text())["network"]["sites"])
    names = list(whole.sites)
    assert kept == names[names.index("features.9.block.0.2") :]
    assert sorted(p.stem for p in (run / "responses" / "s").glob("features*.npy")) == sorted(kept)
    layers = pd.read_csv(run / "layers.csv", dtype={"layer": str}).drop_duplicates("layer").set_index("layer")
    for site in kept:  # the depth in the whole network, not among the recorded sites
        assert layers.loc[site, "relative_depth"] == pytest.approx(whole.depths[site], abs=1e-6)
    assert layers.loc[kept[0], "relative_depth"] > 0.5
    assert main(["-q", "extract", *words[:-1], "no_such_site", "--out", str(tmp_path / "bad")]) == 2


def test_bf16_responses_are_close_to_fp32_and_cached_apart():
    from emoselect.engine.manipulation import Execution, evaluate, evaluate_naive
    from emoselect.engine.responses import response_key
    from test_manipulation import random_heads, random_plan

    full, half = (load_network("mobilenet_v3_small", "random").at_precision(p) for p in ("fp32", "bf16"))
    assert response_key(full) != response_key(half) and half.describe()["precision"] == "bf16"
    assert "precision" not in full.describe()  # fp32 keys and configs are those of earlier versions
    pictures = torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    (exact, exact_readout), (approx, approx_readout) = record(full, pictures), record(half, pictures)
    assert (approx_readout - exact_readout).abs().max() <= 0.05 * exact_readout.abs().max()
    for site in ("features.1.block.0.2", "features.12.2"):
        assert approx[site].dtype == torch.float32  # stored in float32 whatever the arithmetic
        assert (approx[site] - exact[site]).abs().max() <= 0.05 * exact[site].abs().max()
        assert not torch.equal(approx[site], exact[site])  # bf16 really was used
    plan = random_plan(half, ["features.6.block.0.2", "features.12.2"], conditions=3, seed=1)
    heads = random_heads(half, n=2)
    engine, naive = (
        evaluate(half, pictures, plan, heads, Execution(progress=False)),
        evaluate_naive(half, pictures, plan, heads),
    )
    for site in plan:  # the engine in bf16 against the plain way in bf16 (rounding orders differ)
        assert np.abs(engine[site] - naive[site]).max() <= 0.05 * np.abs(naive[site]).max()
    with pytest.raises(InputError, match="^precision=.int8.: use one of"):
        load_network("mobilenet_v3_small", "random").at_precision("int8")
