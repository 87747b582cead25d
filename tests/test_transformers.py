"""Networks beyond CNNs: block sites of transformers, ConvNeXt and Swin, token pooling, the pooled
readout of classifier-less towers, the replay engine, timm and OpenCLIP sources, whole runs."""

from __future__ import annotations

import importlib

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
import yaml
from torch import nn

from emoselect.base.problems import InputError
from emoselect.cli import main
from emoselect.engine.forward import record
from emoselect.engine.manipulation import Execution, evaluate, evaluate_naive
from emoselect.engine.probe import load_network, probe_model
from emoselect.pictures.images import Preprocessing
from test_manipulation import assert_same, mean_ablation_offsets, random_heads, random_plan

TINY = Preprocessing(resize=32, crop=32)


def tiny_vit(classifier: bool = True) -> nn.Module:
    """A ViT of torchvision's design small enough for a unit test: 3 blocks, 16 channels, 17 tokens."""
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=3, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=10
    )
    if not classifier:
        model.heads = nn.Identity()
    return model


def block_outputs(network, pictures) -> dict[str, torch.Tensor]:
    """Every block site's full output, by hooks on a plain forward pass (the independent way)."""
    outputs, handles = {}, []
    for site, path in network.sites.items():
        handles.append(
            network.module(path).register_forward_hook(lambda m, a, out, site=site: outputs.setdefault(site, out))
        )
    with torch.inference_mode():
        network.model(pictures)
    for handle in handles:
        handle.remove()
    return outputs


@pytest.mark.parametrize("pool", ["patch", "cls", "all"])
def test_a_vit_unit_is_an_embedding_channel_pooled_over_tokens(pool):
    network = probe_model(tiny_vit(), "vit_tiny_test", prep=TINY, token_pool=pool)
    assert list(network.sites) == ["block1_mlp", "block1", "block2_mlp", "block2", "block3_mlp", "block3"]
    assert network.units == {
        "block1_mlp": 32,
        "block1": 16,
        "block2_mlp": 32,
        "block2": 16,
        "block3_mlp": 32,
        "block3": 16,
    }
    assert network.sites["block2_mlp"] == "encoder.layers.encoder_layer_1.mlp.1"  # the MLP's GELU
    assert set(network.layouts.values()) == {"tokens"} and network.prefix_tokens == 1
    assert network.spatial["block1"] == (17,)  # 16 patches and the class token
    assert network.readout_site == "heads.head-input" and network.readout_dim == 16
    pictures = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    responses, features = record(network, pictures)
    full = block_outputs(network, pictures)
    expected = {"patch": lambda t: t[:, 1:].mean(1), "cls": lambda t: t[:, 0], "all": lambda t: t.mean(1)}[pool]
    for site in network.sites:
        torch.testing.assert_close(responses[site], expected(full[site]), rtol=1e-6, atol=1e-6)
    with torch.inference_mode():  # the heads read the class token after the final norm
        tokens = network.model._process_input(pictures)
        encoded = network.model.encoder(torch.cat([network.model.class_token.expand(3, -1, -1), tokens], 1))
    torch.testing.assert_close(features, encoded[:, 0], rtol=1e-5, atol=1e-5)
    assert network.describe()["token_pool"] == pool


def test_token_pool_is_part_of_the_response_cache_key():
    from emoselect.engine.responses import response_key

    keys = {pool: response_key(probe_model(tiny_vit(), "vit_tiny_test", prep=TINY, token_pool=pool)) for pool in
            ("patch", "cls", "all")}  # fmt: skip
    assert len(set(keys.values())) == 3
    with pytest.raises(InputError, match="^token_pool=.mean.: use one of"):
        probe_model(tiny_vit(), "vit_tiny_test", prep=TINY, token_pool="mean")


def test_replay_engine_equals_the_full_forward_with_hooks_for_a_vit():
    network = probe_model(tiny_vit(), "vit_tiny_test", prep=TINY)
    assert network.stages is None and network.replays
    pictures = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    plan = random_plan(network, ["block1_mlp", "block1", "block2_mlp", "block3_mlp", "block3"], conditions=4, seed=3)
    heads = random_heads(network, n=2)
    engine = evaluate(network, pictures, plan, heads, Execution(chunk_images=2, batch_samples=3, progress=False))
    naive = evaluate_naive(network, pictures, plan, heads)
    assert_same(engine, naive)
    assert np.abs(naive["block1"][1] - naive["block1"][0]).max() > 1e-3  # the gains change the margins
    offsets = mean_ablation_offsets(plan)
    shifted = evaluate(
        network, pictures, plan, heads, Execution(chunk_images=2, batch_samples=3, progress=False), offsets=offsets
    )
    assert_same(shifted, evaluate_naive(network, pictures, plan, heads, offsets=offsets))


def test_a_backbone_without_classifier_is_read_out_at_its_pooled_output():
    network = probe_model(tiny_vit(classifier=False), "vit_tiny_test", prep=TINY)
    assert network.readout_site == "pooled" and network.readout_layer == "" and network.readout_dim == 16
    assert all(not layer.endswith("-input") for layer in [network.readout_site])  # never a linear inside a block
    pictures = torch.randn(2, 3, 32, 32)
    _, features = record(network, pictures)
    with torch.inference_mode():
        torch.testing.assert_close(features, network.model(pictures))
    convolutions = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 6, 3), nn.ReLU())
    conv_only = probe_model(convolutions, "conv_only", prep=TINY)
    assert conv_only.readout_site == "pooled" and conv_only.readout_dim == 6 and conv_only.readout_layout == "nchw"
    _, pooled = record(conv_only, pictures)
    with torch.inference_mode():
        torch.testing.assert_close(pooled, convolutions(pictures).mean(dim=(2, 3)))
    with pytest.raises(InputError, match="readout site 'fc7' is not one of"):
        probe_model(tiny_vit(classifier=False), "vit_tiny_test", prep=TINY, readout="fc7")


@pytest.mark.parametrize(
    "name, channels, layout",
    [("swin_t", [96, 192, 384, 768], "nhwc"), ("convnext_tiny", [96, 192, 384, 768], "nchw")],
)
def test_swin_and_convnext_units_are_channels_not_the_map_height(name, channels, layout):
    # before: their MLP activations were taken as feature maps, so the map height (56, 28, ...) was
    # counted as units
    network = load_network(name, "random")
    assert set(network.layouts.values()) == {layout}
    assert sorted(set(network.units.values())) == channels
    assert list(network.sites)[0] == "block1" and network.stages is not None
    pictures = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    site = list(network.sites)[1]
    responses, _ = record(network, pictures, sites=[site])
    full = block_outputs(network, pictures)[site]
    torch.testing.assert_close(responses[site], full.mean(dim=(1, 2) if layout == "nhwc" else (2, 3)))
    plan = random_plan(network, [site, list(network.sites)[-1]], conditions=2, seed=4)
    heads = random_heads(network, n=1)
    assert_same(
        evaluate(network, pictures, plan, heads, Execution(batch_samples=2, progress=False)),
        evaluate_naive(network, pictures, plan, heads),
    )


def test_inception_is_probed_at_its_convolution_blocks():
    network = load_network("googlenet", "random")
    assert len(network.sites) == 57 and network.units["block1"] == 64
    assert network.readout_site == "fc-input"


def test_a_missing_extra_names_the_pip_install(monkeypatch, capsys, tmp_path):
    real = importlib.import_module

    def without_timm(name, *args, **kwargs):
        if name in ("timm", "open_clip"):
            raise ModuleNotFoundError(f"No module named '{name}'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", without_timm)
    for model, extra in (("timm:vit_tiny_patch16_224", "timm"), ("openclip:ViT-S-32", "clip")):
        assert main(["sites", model, "--weights", "random"]) == 2
        error = capsys.readouterr().err.strip()
        assert f"pip install 'emoselect[{extra}]'" in error and "\n" not in error and "Traceback" not in error


def test_timm_and_openclip_offline_say_which_file_to_fetch(monkeypatch):
    timm = pytest.importorskip("timm")
    open_clip = pytest.importorskip("open_clip")

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(timm, "create_model", offline)
    monkeypatch.setattr(open_clip, "create_model", offline)
    for model in ("timm:vit_tiny_patch16_224", "openclip:ViT-B-32"):
        with pytest.raises(InputError) as error:
            load_network(model, "pretrained")
        assert "--weights FILE" in str(error.value) and "torch.save" in str(error.value)
    with pytest.raises(InputError, match="timm has no model"):
        load_network("timm:no_such_net", "random")


def test_timm_and_openclip_towers_have_block_sites_and_replay():
    pytest.importorskip("timm")
    pytest.importorskip("open_clip")
    vit = load_network("timm:vit_tiny_patch16_224", "random")
    assert len(vit.sites) == 24 and set(vit.units.values()) == {192, 768} and vit.readout_site == "head-input"
    assert vit.replays and vit.prep.mean == (0.5, 0.5, 0.5)
    tower = load_network("openclip:ViT-S-32", "random")
    assert tower.readout_site == "pooled" and tower.readout_dim == tower.model.output_dim and tower.replays
    pictures = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(5))
    plan = random_plan(tower, ["block3", "block12_mlp", "block12"], conditions=2, seed=6)
    heads = random_heads(tower, n=1)
    assert_same(
        evaluate(tower, pictures, plan, heads, Execution(progress=False)), evaluate_naive(tower, pictures, plan, heads)
    )


WHOLE_RUN = (
    "--limit 90 --workers 0 --null-permutations 10 --controls 1 --betas 0 2 --repeats 2 --lesion-repeats 3".split()
)


@pytest.mark.shared
@pytest.mark.parametrize(
    "model, layer, needs",
    [("resnet50", "layer4.2", None), ("timm:vit_tiny_patch16_224", "block11", "timm"),
     ("openclip:ViT-S-32", "block11", "open_clip")],
)  # fmt: skip
def test_emoselect_run_on_oasis_with_a_resnet_a_vit_and_a_clip_tower(tmp_path, oasis_dir, model, layer, needs):
    if needs:
        pytest.importorskip(needs)
    run = tmp_path / "run"
    arguments = ["--dataset", f"oasis={oasis_dir}", "--model", model, "--weights", "random", "--layers", layer]
    assert main(["-q", "run", *arguments, *WHOLE_RUN, "--epochs", "2", "--out", str(run)]) == 0
    network = yaml.safe_load((run / "config.yaml").read_text())["network"]
    assert network["model"] == model and network["readout_site"]
    layers = pd.read_csv(run / "layers.csv")
    assert layers["relative_depth"].between(0, 1).all() and layers["layer"].nunique() == len(network["sites"])
    summary = pd.read_csv(run / "manipulation_summary.csv", dtype={"layer": str})
    assert set(summary["layer"]) <= {layer}
    html = (run / "report.html").read_text()
    assert network["readout_site"] in html and "Traceback" not in html
    assert (run / "control" / "layers.csv").is_file() and any((run / "figures").glob("*.png"))


def test_replay_engine_at_mlp_sites_with_several_conditions_per_pass():
    # torchvision's and OpenCLIP's MLPs are Sequentials: the engine must feed the enclosing block, not
    # replay the activation inside the MLP (whose scaled copies would not match the block's residual)
    network = probe_model(tiny_vit(), "vit_tiny_test", prep=TINY)
    assert network.replays
    pictures = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    plan = random_plan(network, ["block2_mlp", "block3_mlp"], conditions=5, seed=4)
    heads = random_heads(network, n=2)
    engine = evaluate(network, pictures, plan, heads, Execution(chunk_images=4, batch_samples=12, progress=False))
    assert_same(engine, evaluate_naive(network, pictures, plan, heads))
