"""Sweeps: several networks on the same pictures, one run folder each, one table and one page."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import make_oasis
from emoselect.cli import main
from emoselect.problems import InputError
from emoselect.sweep import read_sweep

SMALL_NET = {"model": "mobilenet_v3_small", "weights": "random"}


def write_sweep(tmp_path, networks: dict) -> str:
    make_oasis(tmp_path / "set", n=36, valences=np.repeat([2.0, 4.0, 6.0], 12))
    sweep = {
        "datasets": {"s": "set"},  # relative to the sweep file
        "networks": networks,
        "extract": {"workers": 0},
        "selectivity": {"tuning_null": 10},
        "manipulation": {"layers": ["features.12.2"], "betas": [0, 2], "repeats": 1, "lesion_repeats": 3,
                         "readout": {"epochs": 2}},
        "controls": 1,
    }  # fmt: skip
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(sweep))
    return str(tmp_path / "study.yaml")


def test_a_two_network_sweep_writes_one_table_and_reuses_finished_networks(tmp_path, capsys):
    path = write_sweep(tmp_path, {"a": SMALL_NET, "b": {**SMALL_NET, "init_seed": 5}})
    assert main(["-q", "sweep", path]) == 0
    folder = tmp_path / "study"
    table = pd.read_csv(folder / "sweep.csv", dtype={"layer": str})
    layers = table[table["measure"] != "claim"]
    assert set(layers["network"]) == {"a", "b"}
    assert set(layers["measure"]) == {"tuning_quality_excess", "overlap_excess", "gain_change_pct", "lesion_change_pct"}
    for network in ("a", "b"):  # the table's values are the run folder's own (an independent read)
        own = pd.read_csv(folder / network / "layers.csv", dtype={"layer": str})
        expected = own.groupby("layer")["tuning_quality_excess"].mean()
        mine = layers[(layers["network"] == network) & (layers["measure"] == "tuning_quality_excess")]
        np.testing.assert_allclose(mine.set_index("layer")["value"].sort_index(), expected.sort_index())
        control = pd.read_csv(folder / network / "control" / "layers.csv", dtype={"layer": str})
        band = control.groupby("layer")["tuning_quality_excess"].mean().sort_index()
        np.testing.assert_allclose(mine.set_index("layer")["control_mean"].sort_index(), band)
    assert (table["measure"] == "claim").any() and table.loc[table["measure"] == "claim", "verdict"].notna().all()
    a, b = (pd.read_csv(folder / n / "stimuli.csv") for n in ("a", "b"))
    assert (a["split"] == b["split"]).all()  # the same pictures and splits for every network
    assert (folder / "sweep.html").is_file() and (folder / "figures" / "sweep.png").is_file()
    first = capsys.readouterr().out
    assert "a: computed" in first and "b: computed" in first

    mtime = (folder / "a" / "report.html").stat().st_mtime_ns
    extra = write_sweep(
        tmp_path, {"a": SMALL_NET, "b": {**SMALL_NET, "init_seed": 5}, "c": {**SMALL_NET, "init_seed": 7}}
    )
    assert main(["-q", "sweep", extra]) == 0
    again = capsys.readouterr().out
    assert "a: reused" in again and "b: reused" in again and "c: computed" in again  # only the new network
    assert (folder / "a" / "report.html").stat().st_mtime_ns == mtime
    assert set(pd.read_csv(folder / "sweep.csv")["network"]) == {"a", "b", "c"}


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium for a screenshot")
def test_sweep_page_renders_with_one_line_per_network(tmp_path):
    path = write_sweep(tmp_path, {"a": SMALL_NET, "b": {**SMALL_NET, "init_seed": 5}})
    assert main(["-q", "sweep", path, "--out", str(tmp_path / "out")]) == 0
    html = (tmp_path / "out" / "sweep.html").read_text()
    assert "a/report.html" in html and "b/report.html" in html and "figures/sweep.png" in html
    shot = tmp_path / "page.png"
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'chr'}",
         "--window-size=1200,1600", f"--screenshot={shot}", (tmp_path / "out" / "sweep.html").as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    assert shot.stat().st_size > 20_000


def test_bad_sweep_files_are_one_clear_error(tmp_path):
    (tmp_path / "x.yaml").write_text("datasets: {s: set}\nnetwork: {a: {model: vgg16}}\n")
    with pytest.raises(InputError, match="unknown key 'network'"):
        read_sweep(tmp_path / "x.yaml")
    (tmp_path / "y.yaml").write_text("datasets: {s: set}\nnetworks: {a: {model: vgg16, betas: [1]}}\n")
    with pytest.raises(InputError, match="unknown option 'betas'"):
        read_sweep(tmp_path / "y.yaml")
    with pytest.raises(InputError, match="sweep file not found"):
        read_sweep(tmp_path / "none.yaml")
    assert main(["sweep", str(tmp_path / "x.yaml")]) == 2


def test_a_sweep_through_submitit_jobs_equals_the_inline_sweep(tmp_path, capsys):
    pytest.importorskip("submitit")
    path = write_sweep(tmp_path, {"a": SMALL_NET, "b": {**SMALL_NET, "init_seed": 5}})
    assert main(["-q", "sweep", path, "--out", str(tmp_path / "inline")]) == 0
    assert main(["-q", "sweep", path, "--out", str(tmp_path / "jobs"), "--executor", "local"]) == 0
    assert "a: computed" in capsys.readouterr().out
    assert any((tmp_path / "jobs" / "jobs").glob("*_log.out"))  # submitit's own job logs
    inline, jobs = (pd.read_csv(tmp_path / folder / "sweep.csv") for folder in ("inline", "jobs"))
    pd.testing.assert_frame_equal(inline, jobs)
    for table in ("units.csv", "overlap.csv", "manipulation_summary.csv", "control/layers.csv"):
        assert (tmp_path / "inline" / "a" / table).read_bytes() == (tmp_path / "jobs" / "a" / table).read_bytes()


def test_a_failed_job_is_reported_by_name_and_the_rest_is_kept(tmp_path, capsys):
    pytest.importorskip("submitit")
    path = write_sweep(tmp_path, {"a": SMALL_NET, "broken": {**SMALL_NET, "weights": "missing.pth"}})
    assert main(["-q", "sweep", path, "--executor", "local"]) == 2
    error = capsys.readouterr().err
    assert "network broken failed" in error and "weight file not found" in error
    assert "\n" not in error.strip() and "Traceback" not in error
    table = pd.read_csv(tmp_path / "study" / "sweep.csv")
    assert set(table["network"]) == {"a"}  # the finished network's rows are written
    mtime = (tmp_path / "study" / "a" / "report.html").stat().st_mtime_ns
    assert main(["-q", "sweep", path, "--executor", "local"]) == 2  # nothing finished is recomputed
    assert (tmp_path / "study" / "a" / "report.html").stat().st_mtime_ns == mtime


def test_a_crashed_job_is_resubmitted(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    from emoselect import sweep as sweeping

    calls = []

    class Crashing:
        paths = type("Paths", (), {"stderr": tmp_path / "job.err"})()

        def result(self):
            raise RuntimeError("node lost")

    class Fine:
        def result(self):
            return None

    class Executor:
        def map_array(self, function, *columns):
            calls.append(list(columns[1]))
            return [Crashing() if len(calls) == 1 else Fine() for _ in columns[1]]

    monkeypatch.setattr(sweeping, "_executor", lambda cluster, folder: Executor())
    plan = sweeping.Sweep(tmp_path / "s.yaml", {})
    assert sweeping._submit(plan, ["x", "y"], tmp_path, sweeping.Cluster("local", retries=1)) == {}
    assert calls == [["x", "y"], ["x", "y"]]  # both crashed once, both resubmitted once
    calls.clear()
    failed = sweeping._submit(plan, ["x"], tmp_path, sweeping.Cluster("local", retries=0))
    assert "crashed (RuntimeError" in failed["x"] and "job.err" in failed["x"]


def test_a_missing_submitit_names_the_pip_install(tmp_path, monkeypatch, capsys):
    import builtins

    real = builtins.__import__

    def without_submitit(name, *args, **kwargs):
        if name == "submitit":
            raise ModuleNotFoundError("No module named 'submitit'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_submitit)
    path = write_sweep(tmp_path, {"a": SMALL_NET})
    assert main(["-q", "sweep", path, "--executor", "slurm"]) == 2
    assert "pip install 'emoselect[cluster]'" in capsys.readouterr().err
