"""Recorded responses equal an independent computation; the cache hits, resumes and invalidates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torchvision import transforms
from torchvision.models.feature_extraction import create_feature_extractor

from conftest import make_image, make_oasis
from emoselect.engine.probe import load_network
from emoselect.engine.responses import ResponseStore, extract, response_key
from emoselect.engine.tensors import IMAGE_STATISTICS, image_statistics
from emoselect.pictures.stimuli import build_stimuli
from emoselect.run.config import ExtractOptions
from emoselect.stages.extract import extract_stage

PICTURES = ["Acorns 1", "Monkey 3", "War 2"]  # Monkey 3 is the RGBA file


def torchvision_input(paths):
    """Independent preprocessing: torchvision's standard ImageNet transform on PIL RGB images."""
    pipeline = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    return torch.stack([pipeline(Image.open(p).convert("RGB")) for p in paths])


def oasis_subset(oasis_dir, tmp_path):
    stimuli = build_stimuli({"oasis": oasis_dir}, progress=False, cache_dir=tmp_path)
    keep = stimuli.table["image_id"].isin(PICTURES)
    stimuli.table = stimuli.table[keep].reset_index(drop=True)
    return stimuli


def assert_relative(actual, expected, tolerance=1e-5):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    scale = np.abs(expected).max()
    assert np.abs(actual - expected).max() <= tolerance * scale, (np.abs(actual - expected).max(), scale)


def test_vgg16_responses_equal_a_plain_forward_pass(oasis_dir, vgg_weights, tmp_path):
    stimuli = oasis_subset(oasis_dir, tmp_path)
    network = load_network("vgg16", str(vgg_weights))
    responses = extract(stimuli, network, cache_dir=tmp_path, progress=False, batch_size=2, workers=0)["oasis"]
    x = torchvision_input(stimuli.table["path"])
    expected, block, index = {}, 1, 0
    with torch.inference_mode():
        for layer in network.model.features:
            x = layer(x)
            if isinstance(layer, torch.nn.MaxPool2d):
                block, index = block + 1, 0
            elif isinstance(layer, torch.nn.ReLU):
                index += 1
                expected[f"conv{block}_{index}"] = x.mean(dim=(2, 3)).numpy()
        pool5 = torch.flatten(network.model.avgpool(x), 1).numpy()
    assert list(expected) == list(responses.sites)
    for site, values in expected.items():
        assert responses.sites[site].dtype == np.float32 and responses.sites[site].shape == values.shape
        assert_relative(responses.sites[site], values)
    assert_relative(responses.readout, pool5)


def test_mobilenet_v2_responses_equal_an_fx_feature_extractor(oasis_dir, mobilenet_weights, tmp_path):
    stimuli = oasis_subset(oasis_dir, tmp_path)
    network = load_network("mobilenet_v2", str(mobilenet_weights))
    responses = extract(stimuli, network, cache_dir=tmp_path, progress=False, workers=0)["oasis"]
    # FX keeps torchvision's Conv2dNormActivation whole: its output is the output of its activation (child 2)
    from torchvision.ops.misc import Conv2dNormActivation

    for path in network.sites.values():
        assert path.endswith(".2") and isinstance(network.module(path[:-2]), Conv2dNormActivation)
    nodes = {path[:-2]: site for site, path in network.sites.items()}
    extractor = create_feature_extractor(network.model, return_nodes={**nodes, "flatten": "pooled"})
    with torch.inference_mode():
        outputs = extractor(torchvision_input(stimuli.table["path"]))
    for site in network.sites:
        assert_relative(responses.sites[site], outputs[site].mean(dim=(2, 3)).numpy())
    assert_relative(responses.readout, outputs["pooled"].numpy())


def test_image_statistics_on_known_pictures():
    flat = torch.full((1, 3, 32, 32), 0.5)
    red = torch.zeros(1, 3, 32, 32)
    red[:, 0] = 1.0
    checker = ((torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2).float().expand(1, 3, 32, 32)
    stats = image_statistics(torch.cat([flat, red, checker])).numpy()
    assert stats.shape == (3, len(IMAGE_STATISTICS))
    np.testing.assert_allclose(stats[0], [0.5, 0.0, 0.0, 0.0], atol=1e-6)
    assert stats[1, 0] == pytest.approx(0.2126) and stats[1, 2] == pytest.approx(0.3 * np.hypot(255, 127.5), rel=1e-5)
    assert stats[2, 1] == pytest.approx(0.5) and stats[2, 3] == pytest.approx(1.0)  # all power at Nyquist


# ---------------------------------------------------------------------------------------------
# the cache


@pytest.fixture
def small_set(tmp_path):
    return make_oasis(tmp_path / "set", n=5)


def test_second_call_is_a_cache_hit_and_interrupted_call_resumes(small_set, tmp_path, monkeypatch):
    stimuli = build_stimuli({"s": small_set}, progress=False)
    network = load_network("mobilenet_v3_small", "random")
    calls = {"n": 0}
    real_put = ResponseStore.put

    def put_then_stop(self, sha1, vector):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        real_put(self, sha1, vector)

    monkeypatch.setattr(ResponseStore, "put", put_then_stop)
    with pytest.raises(KeyboardInterrupt):
        extract(stimuli, network, cache_dir=tmp_path / "c", batch_size=1, progress=False, workers=0)
    monkeypatch.setattr(ResponseStore, "put", real_put)
    store = ResponseStore(tmp_path / "c" / "responses" / response_key(network), network)
    assert sum(store.has(s) for s in stimuli.table["sha1"]) == 2
    assert not list((tmp_path / "c").rglob("*.tmp*"))

    from emoselect.engine import responses as module

    computed = []
    real_compute = module.compute_missing
    monkeypatch.setattr(
        module, "compute_missing", lambda *a, **k: computed.append(real_compute(*a, **k)) or computed[-1]
    )
    first = extract(stimuli, network, cache_dir=tmp_path / "c", batch_size=1, progress=False, workers=0)
    second = extract(stimuli, network, cache_dir=tmp_path / "c", batch_size=1, progress=False, workers=0)
    assert computed == [3, 0]
    for site in network.sites:
        np.testing.assert_array_equal(first["s"].sites[site], second["s"].sites[site])

    fresh = extract(stimuli, network, cache_dir=tmp_path / "fresh", batch_size=4, progress=False, workers=0)
    for site in network.sites:
        assert_relative(first["s"].sites[site], fresh["s"].sites[site])


def test_changed_picture_and_corrupt_entry_are_recomputed(small_set, tmp_path):
    network = load_network("mobilenet_v3_small", "random")
    stimuli = build_stimuli({"s": small_set}, progress=False)
    before = extract(stimuli, network, cache_dir=tmp_path / "c", progress=False, workers=0)["s"]
    make_image(small_set / "images" / "Thing 2.jpg", seed=123)
    store = ResponseStore(tmp_path / "c" / "responses" / response_key(network), network)
    store.path(stimuli.table["sha1"].iloc[0]).write_bytes(b"half-written")
    stimuli = build_stimuli({"s": small_set}, progress=False)
    after = extract(stimuli, network, cache_dir=tmp_path / "c", progress=False, workers=0)["s"]
    site = list(network.sites)[0]
    assert_relative(after.sites[site][0], before.sites[site][0])  # recomputed, same picture
    assert not np.allclose(after.sites[site][1], before.sites[site][1], rtol=1e-3, atol=0)  # changed picture
    np.testing.assert_array_equal(after.sites[site][2:], before.sites[site][2:])


def test_cache_key_depends_on_weights_and_preprocessing():
    a = load_network("mobilenet_v3_small", "random", seed=0)
    assert response_key(a) == response_key(load_network("mobilenet_v3_small", "random", seed=0))
    assert response_key(a) != response_key(load_network("mobilenet_v3_small", "random", seed=1))
    assert response_key(a) != response_key(load_network("mobilenet_v3_small", "random", seed=0, grayscale=True))


def test_extract_stage_writes_the_run_folder(small_set, tmp_path):
    options = ExtractOptions(
        datasets={"a": str(small_set), "b": str(small_set)},
        model="mobilenet_v3_small",
        weights="random",
        limit=4,
        workers=0,
    )
    result = extract_stage(options, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    for dataset in ("a", "b"):
        for site, units in result.network.units.items():
            array = np.load(run / "responses" / dataset / f"{site}.npy")
            assert array.shape == (4, units) and array.dtype == np.float32
        assert np.load(run / "responses" / dataset / f"{result.network.readout_site}.npy").shape == (4, 1024)
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["extract"]["limit"] == 4 and config["network"]["model"] == "mobilenet_v3_small"
    assert len(config["datasets"]["a"]["ratings_sha256"]) == 64 and config["environment"]["torch"]
    assert (run / "stimuli.csv").read_text().count("\n") == 9
    (run / "units.csv").write_text("stale")
    extract_stage(ExtractOptions(**{**options.__dict__, "batch_size": 3}), tmp_path / "run", progress=False)
    assert (run / "units.csv").exists()  # same stimuli and network: later outputs still valid
    assert not list(run.rglob(".*tmp*"))
    extract_stage(ExtractOptions(**{**options.__dict__, "limit": 3}), tmp_path / "run", progress=False)
    assert not (run / "units.csv").exists()  # other options: stale outputs removed


def test_grayscale_option_shows_the_network_gray_pictures(small_set, tmp_path):
    stimuli = build_stimuli({"s": small_set}, progress=False)
    colour = extract(
        stimuli, load_network("mobilenet_v3_small", "random"), cache_dir=tmp_path, progress=False, workers=0
    )
    gray = extract(
        stimuli,
        load_network("mobilenet_v3_small", "random", grayscale=True),
        cache_dir=tmp_path,
        progress=False,
        workers=0,
    )
    assert (colour["s"].image_stats["colourfulness"] > 1).all()
    np.testing.assert_allclose(gray["s"].image_stats["colourfulness"], 0.0, atol=1e-3)
    site = list(colour["s"].sites)[0]
    assert not np.allclose(colour["s"].sites[site], gray["s"].sites[site])


def test_a_table_write_that_fails_leaves_the_old_table_and_no_temporary_file(tmp_path, monkeypatch):
    """Issue 10 (part): a full disk during a stage must not leave a truncated table for the next stage."""
    import errno

    import pandas as pd

    from emoselect.base.files import write_csv_atomic

    target = tmp_path / "selective.csv"
    write_csv_atomic(target, pd.DataFrame({"unit": [1, 2, 3]}))
    before = target.read_bytes()

    def half_then_full(self, path, **kwargs):
        with open(path, "w") as handle:
            handle.write("unit\n1\n")  # cut mid-table
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_full)
    with pytest.raises(OSError):
        write_csv_atomic(target, pd.DataFrame({"unit": [4, 5, 6, 7]}))
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["selective.csv"]


def test_shared_decoding_gives_the_same_responses_as_separate_passes(tmp_path):
    """#7: the random-init controls decode each picture once; their responses equal separate passes."""
    import pandas as pd

    from emoselect.engine.probe import load_network
    from emoselect.engine.responses import extract, prefetch_responses
    from emoselect.pictures.stimuli import build_stimuli

    make_oasis(tmp_path / "set", n=9)
    stimuli = build_stimuli({"s": tmp_path / "set"}, cache_dir=tmp_path / "checks", progress=False)
    networks = [load_network("mobilenet_v3_small", "random", seed=seed) for seed in (1, 2)]
    assert prefetch_responses(stimuli, networks, tmp_path / "shared", batch_size=4, workers=0, progress=False) == 9
    assert prefetch_responses(stimuli, networks, tmp_path / "shared", batch_size=4, workers=0, progress=False) == 0
    for network in networks:
        shared = extract(stimuli, network, cache_dir=tmp_path / "shared", batch_size=4, workers=0, progress=False)["s"]
        alone = extract(
            stimuli, network, cache_dir=tmp_path / f"alone{network.seed}", batch_size=4, workers=0, progress=False
        )["s"]
        for site in network.sites:
            np.testing.assert_allclose(shared.sites[site], alone.sites[site], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(shared.readout, alone.readout, rtol=1e-6, atol=1e-7)
        pd.testing.assert_frame_equal(shared.image_stats, alone.image_stats)


def test_responses_are_byte_identical_whatever_the_batch_size_and_the_resume_order(tmp_path):
    """Issue 20 item 1: a batch of one (or 2, 3, 5 pictures) takes other CPU kernels; its responses
    differed from a full batch's by up to 5e-6 and were cached under the same key, so a table depended
    on what the cache held. Every forward pass now runs the same number of pictures."""
    from emoselect.engine.responses import FORWARD_BATCH

    make_oasis(tmp_path / "set", n=11)
    stimuli = build_stimuli({"s": tmp_path / "set"}, cache_dir=tmp_path / "checks", progress=False)
    network = load_network("vgg11", "random", seed=1, resize=48, crop=40)

    def responses(cache, batch_size):
        out = extract(stimuli, network, cache_dir=tmp_path / cache, batch_size=batch_size, workers=0, progress=False)
        arrays = out["s"]
        return np.concatenate([arrays.sites[s] for s in network.sites] + [arrays.readout], axis=1)

    reference = responses("whole", 32)
    for batch_size in (1, 2, 3, FORWARD_BATCH, 11):
        assert np.array_equal(responses(f"batch{batch_size}", batch_size), reference), batch_size
    store = ResponseStore(tmp_path / "whole" / "responses" / response_key(network), network)
    for sha1 in list(stimuli.table["sha1"])[::3]:  # a resume that recomputes one picture in three
        store.path(sha1).unlink()
    assert np.array_equal(responses("whole", 32), reference)
