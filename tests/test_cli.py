"""The command line: clear messages and exit status 2 for bad input, the run folder for good input."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import SMALL, make_gaped, make_oasis
from emoselect.cli import main


def test_inspect_prints_format_counts_and_problems(tmp_path, capsys):
    make_gaped(tmp_path)
    (tmp_path / "N" / "N002.bmp").write_bytes(b"broken")
    assert main(["-q", "datasets", "inspect", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "format: gaped" in out and "valence scale: 0-100" in out
    assert "N002.bmp" in out and "skipped" in out


def test_extract_writes_a_run_folder(tmp_path, capsys):
    make_oasis(tmp_path / "set", n=4)
    code = main(["-q", "extract", "--dataset", f"small={tmp_path / 'set'}", *SMALL, "--out", str(tmp_path / "run")])
    assert code == 0
    assert (tmp_path / "run" / "stimuli.csv").is_file() and (tmp_path / "run" / "config.yaml").is_file()
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--dataset", "x"], "NAME=VALUE"),
        (["--dataset", "x=/no/such/folder"], "no such file or folder"),
        (["--dataset", "x={set}", "--format", "y=oasis"], "not a dataset of this run"),
        (["--dataset", "x={set}", "--weights", "/no/weights.pth"], "weight file not found"),
        (["--dataset", "x={set}", "--model", "vgg17"], "unknown model"),
        (["--dataset", "x={set}", "--limit", "0"], "--limit"),
        (["--dataset", "x={set}", "--device", "cuda:7"], "cuda"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, capsys, arguments, message):
    make_oasis(tmp_path / "set", n=2)
    arguments = [a.format(set=tmp_path / "set") for a in arguments]
    defaults = [
        *(["--model", "mobilenet_v3_small"] if "--model" not in arguments else []),
        *(["--weights", "random"] if "--weights" not in arguments else []),
    ]
    code = main(["-q", "extract", *defaults, *arguments, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert err.count("\n") == 1


def test_selectivity_stage_writes_tables_and_figures(tmp_path, capsys):
    import numpy as np

    make_oasis(tmp_path / "set", n=36, valences=np.repeat([2.0, 4.0, 6.0], 12))
    run = tmp_path / "run"
    assert main(["-q", "extract", "--dataset", f"s={tmp_path / 'set'}", *SMALL, "--out", str(run)]) == 0
    assert main(["-q", "selectivity", str(run), "--null-permutations", "50", "--valence-tuning"]) == 0
    out = capsys.readouterr().out
    assert "split-half" in out and "Jaccard" in out
    for name in (
        "units.csv",
        "selective.csv",
        "layers.csv",
        "overlap.csv",
        "examples.csv",
        "figures/tuning_quality.png",
        "figures/overlap.png",
        "figures/example_neurons.png",
    ):
        assert (run / name).is_file(), name
    assert main(["-q", "selectivity", str(run), "--require-significant"]) == 2
    assert "--permutations" in capsys.readouterr().err
    assert main(["-q", "selectivity", str(tmp_path / "nothing")]) == 2


def test_manipulate_stage_writes_all_outputs_and_resumes_from_its_cache(tmp_path, capsys):
    import numpy as np
    import pandas as pd

    make_oasis(tmp_path / "set", n=36, valences=np.repeat([2.0, 4.0, 6.0], 12))
    make_oasis(tmp_path / "set2", n=36, valences=np.repeat([2.0, 4.0, 6.0], 12), seed=1)  # other pictures
    run = tmp_path / "run"
    sets = ["--dataset", f"s={tmp_path / 'set'}", "--dataset", f"t={tmp_path / 'set2'}"]
    assert main(["-q", "extract", *sets, *SMALL, "--out", str(run)]) == 0
    assert main(["-q", "selectivity", str(run), "--null-permutations", "20"]) == 0
    arguments = [
        "-q",
        "manipulate",
        str(run),
        *"--layers features.9.block.0.2 features.12.2 --betas 0 2 --repeats 2 --epochs 3".split(),
    ]
    assert main(arguments) == 0
    out = capsys.readouterr().out
    assert "Table 1" in out and "readout heads at classifier.3-input" in out
    for name in (
        "readout.csv",
        "manipulation.csv",
        "manipulation_summary.csv",
        "table1.csv",
        "heads.npz",
        "figures/attention_change.png",
        "figures/attention_curves.png",
        "figures/lesion.png",
        "figures/transfer.png",
    ):
        assert (run / name).is_file(), name
    manipulation = pd.read_csv(run / "manipulation.csv")
    assert set(manipulation["kind"]) >= {"intact", "gain", "lesion"}
    assert set(manipulation["readout_site"]) == {"classifier.3-input"}
    intact = manipulation[manipulation["kind"] == "intact"].merge(
        pd.read_csv(run / "readout.csv"), left_on=["emotion", "split"], right_on=["emotion", "split"]
    )
    intact = intact[(intact["train_dataset"] == intact["dataset"]) & (intact["test_dataset"] == intact["dataset"])]
    assert len(intact) == 24  # the engine's intact network = the heads on the cached features
    assert (intact["f1_x"] == intact["f1_y"]).all() and (intact["accuracy_x"] == intact["accuracy_y"]).all()
    cached = sorted((run / "cache" / "manipulation").glob("*.npz"))
    assert cached
    stamps = [p.stat().st_mtime_ns for p in cached]
    assert main(arguments) == 0  # a rerun is served from the cache
    assert [p.stat().st_mtime_ns for p in cached] == stamps
    pd.testing.assert_frame_equal(pd.read_csv(run / "manipulation.csv"), manipulation)
    transfer = manipulation[manipulation["train_dataset"] != manipulation["test_dataset"]]
    assert set(zip(transfer["train_dataset"], transfer["test_dataset"])) == {("s", "t"), ("t", "s")}
    assert main(["-q", "manipulate", str(run), "--layers", "conv9_9"]) == 2


def test_run_does_everything_with_a_control_and_writes_the_report(tmp_path, capsys):
    import numpy as np
    import yaml

    make_oasis(tmp_path / "set", n=36, valences=np.repeat([2.0, 4.0, 6.0], 12))
    run = tmp_path / "run"
    dataset = ["--dataset", f"s={tmp_path / 'set'}", *SMALL, "--seed", "3", "--null-permutations", "20"]
    words = "--layers features.12.2 --betas 0 2 --repeats 1 --lesion-repeats 3 --epochs 2 --controls 2".split()
    assert main(["-q", "run", *dataset, *words, "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "Table 1" in out and "report.html" in out
    control = yaml.safe_load((run / "control" / "config.yaml").read_text())
    trained = yaml.safe_load((run / "config.yaml").read_text())
    # the network itself has random weights (seed 3) here, so its controls skip that seed: never a copy of it
    assert control["network"]["weights"] == "random" and control["network"]["seed"] == 4
    assert control["network"]["readout_site"] == trained["network"]["readout_site"]
    assert (run / "control" / "layers.csv").is_file()
    second = yaml.safe_load((run / "control2" / "config.yaml").read_text())
    assert second["network"]["seed"] == 5 and second["extract"]["seed"] == 3  # own weights, same splits
    assert (pd.read_csv(run / "control2" / "stimuli.csv")["split"] == pd.read_csv(run / "stimuli.csv")["split"]).all()
    assert (run / "control" / "table1.csv").is_file() and not (run / "control2" / "table1.csv").exists()
    controls = pd.read_csv(run / "controls.csv")
    assert set(controls["n_controls"]) == {2} and set(controls["min_p_rank"]) == {1 / 3}
    claims = pd.read_csv(run / "claims.csv")
    assert {"trained", "random init", "random init 2"} <= set(claims["network"])
    assert set(claims["verdict"]) <= {"supported", "contradicted", "inconclusive", "not testable"}
    summary = pd.read_csv(run / "manipulation_summary.csv")
    # every random set is used where the intact head is above chance, none where the cell is not applicable
    used = np.where(summary["applicable"], 3, 0)
    assert (summary["n_random_lesion"] == used).all() and (summary["min_p_lesion"] == 0.25).all()
    page = (run / "report.html").read_text()
    for text in (
        "The paper's claims on these data",
        "Stimuli",
        "Selectivity",
        "Random-init control",
        "Readout heads",
        "Table 1",
        "figures/overlap.png",
        "Network-level tests",
        "Configuration and provenance",
    ):
        assert text in page, text
    for figure in (run / "figures").glob("*.png"):
        assert f"figures/{figure.name}" in page
    assert main(["-q", "run", *dataset, "--controls", "1", "--no-manipulate", "--out", str(run)]) == 0
    assert (run / "control").is_dir() and not (run / "control2").exists()


def test_interrupted_manipulations_resume_at_the_first_unfinished_chunk(tmp_path, monkeypatch):
    import numpy as np

    from emoselect.engine import manipulation

    make_oasis(tmp_path / "set", n=36, valences=np.repeat([2.0, 4.0, 6.0], 12))
    run = tmp_path / "run"
    assert main(["-q", "extract", "--dataset", f"s={tmp_path / 'set'}", *SMALL, "--out", str(run)]) == 0
    assert main(["-q", "selectivity", str(run), "--null-permutations", "20"]) == 0
    arguments = [
        "-q",
        "manipulate",
        str(run),
        *"--layers features.12.2 --betas 0 --repeats 1 --epochs 1 --chunk-images 2".split(),
    ]  # 9 validation and test pictures (split 0.4 0.3 0.1 0.2 of 36): 5 chunks
    calls, real, stopped = [], manipulation.evaluate, []

    def stop_at_third(*args, **kwargs):
        calls.append(len(args[1]))
        if len(calls) == 3 and not stopped:
            stopped.append(True)
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(manipulation, "evaluate", stop_at_third)
    assert main(arguments) == 130
    assert not (run / "manipulation.csv").exists()
    calls.clear()
    assert main(arguments) == 0
    assert calls == [2, 2, 1]  # chunks 3, 4 and 5 only (the third was interrupted)


def test_importing_and_drawing_leave_the_plotting_backend_alone(tmp_path):
    """Issue 11 (part): `import emoselect` and its figures must not switch a notebook's backend."""
    import subprocess
    import sys

    code = (
        "import matplotlib; matplotlib.use('svg'); import emoselect, pandas as pd; from emoselect.output import figures; "
        "t = pd.DataFrame({'dataset': 'a', 'image_id': ['1', '2', '3'], 'valence': [2.0, 5.0, 8.0], "
        "'category': ['unpleasant', 'neutral', 'pleasant']}); "
        f"figures.stimuli(t, {{'a': (1.0, 9.0)}}, r'{tmp_path / 'f.png'}'); print(matplotlib.get_backend())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "svg" and (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
