"""Faults, hostile input and concurrent use never give a wrong table (issue 10): locks, manifests,
OS errors as messages, stale temporaries, damaged cache entries, fault injection."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import MANIPULATE, SMALL, make_oasis
from emoselect.base import manifest
from emoselect.cli import main
from emoselect.engine.manipulation import ResultCache


def _extracted(tmp_path, n=30):
    make_oasis(tmp_path / "set", n=n, valences=np.repeat([2.0, 4.5, 6.5], n // 3))
    run = tmp_path / "run"
    assert main(["-q", "extract", "--dataset", f"s={tmp_path / 'set'}", *SMALL, "--out", str(run)]) == 0
    return run


def _whole_run(tmp_path) -> list[str]:
    """`emoselect run` (with one control and the small sweep) on TMP/set, made (30 pictures) unless
    there; without --out."""
    if not (tmp_path / "set").exists():
        make_oasis(tmp_path / "set", n=30, valences=np.repeat([2.0, 4.5, 6.5], 10))
    words = ["--null-permutations", "10", *MANIPULATE, "--controls", "1"]
    return ["-q", "run", "--dataset", f"s={tmp_path / 'set'}", *SMALL, *words]


def test_a_cut_table_is_refused_by_the_next_stage_and_the_report(tmp_path, capsys):
    run = _extracted(tmp_path)
    assert main(["-q", "selectivity", str(run), "--null-permutations", "10"]) == 0
    text = (run / "selective.csv").read_bytes()
    (run / "selective.csv").write_bytes(text[: len(text) // 2])  # a full disk during a copy, say
    capsys.readouterr()
    assert main(["-q", "manipulate", str(run), *MANIPULATE]) == 2
    err = capsys.readouterr().err
    assert "selective.csv differs from what the selectivity stage wrote" in err and err.count("\n") == 1
    assert not (run / "table1.csv").exists()
    assert main(["-q", "report", str(run)]) == 2
    assert main(["-q", "selectivity", str(run), "--null-permutations", "10"]) == 0  # the rerun repairs it
    assert main(["-q", "manipulate", str(run), *MANIPULATE]) == 0


def test_a_stage_without_a_finished_earlier_stage_is_refused(tmp_path, capsys):
    run = _extracted(tmp_path)
    data = manifest.read(run)
    del data["extract"]
    (run / "manifest.json").write_text(__import__("json").dumps(data))  # as if extract was interrupted
    assert main(["-q", "selectivity", str(run)]) == 2
    assert "extract stage has not finished" in capsys.readouterr().err


def test_without_its_manifest_a_run_folder_is_not_finished_for_the_report(tmp_path, capsys):
    """Issue 20 item 3: with manifest.json deleted and a table cut, `report` wrote a page from it."""
    run = _extracted(tmp_path)
    assert main(["-q", "selectivity", str(run), "--null-permutations", "10"]) == 0
    text = (run / "layers.csv").read_bytes()
    (run / "layers.csv").write_bytes(text[: len(text) // 2])
    (run / "manifest.json").unlink()
    capsys.readouterr()
    assert main(["-q", "report", str(run)]) == 2
    err = capsys.readouterr().err
    assert "extract stage has not finished" in err and err.count("\n") == 1
    assert not (run / "report.html").exists()
    (run / "manifest.json").write_text("{not json")  # unreadable: the same
    assert main(["-q", "report", str(run)]) == 2


def test_new_selectivity_drops_the_manipulations_made_from_the_old_one(tmp_path):
    run = _extracted(tmp_path)
    assert main(["-q", "selectivity", str(run), "--null-permutations", "10"]) == 0
    assert main(["-q", "manipulate", str(run), *MANIPULATE]) == 0
    assert main(["-q", "selectivity", str(run), "--null-permutations", "10"]) == 0  # same result: kept
    assert (run / "table1.csv").is_file() and "manipulate" in manifest.read(run)
    assert main(["-q", "report", str(run)]) == 0 and "Table 1" in (run / "report.html").read_text()
    assert main(["-q", "selectivity", str(run), "--null-permutations", "10", "--define-on", "all"]) == 0
    assert not (run / "table1.csv").exists() and "manipulate" not in manifest.read(run)
    assert not (run / "figures" / "lesion.png").exists()
    assert not (run / "report.html").exists()  # issue 20 item 5: it showed the removed lesion results
    assert main(["-q", "report", str(run)]) == 0
    assert "not run yet" in (run / "report.html").read_text()


def test_a_second_writer_is_refused_and_names_the_first(tmp_path, capsys):
    run = _extracted(tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from emoselect.base.files import run_lock\n"
            "with run_lock(sys.argv[1]):\n print('held', flush=True); time.sleep(60)",
            str(run),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        capsys.readouterr()
        assert main(["-q", "selectivity", str(run)]) == 2
        err = capsys.readouterr().err
        assert f"being written by process {holder.pid}" in err and err.count("\n") == 1
        assert main(["-q", "report", str(run)]) == 0  # readers are not blocked
    finally:
        holder.kill()
        holder.wait()
    assert main(["-q", "selectivity", str(run), "--null-permutations", "10"]) == 0  # kill -9 left no stale lock


def test_stale_temporaries_are_removed_and_live_ones_kept(tmp_path):
    run = _extracted(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    from emoselect.base.files import host, temporary_path

    stale = run / "responses" / "s" / f".features.12.2.npy.{host()}-{dead.stdout.strip()}.tmp.npy"
    stale.write_bytes(b"x" * 1000)
    live = temporary_path(run / "notes.txt")
    live.write_text("in progress")
    foreign = run / ".notes.txt.othermachine-1.tmp.txt"  # another machine's writer on a shared disk
    foreign.write_text("in progress elsewhere")
    old_foreign = run / ".old.txt.othermachine-2.tmp.txt"
    old_foreign.write_text("left two days ago")
    os.utime(old_foreign, (time.time() - 2 * 86400, time.time() - 2 * 86400))
    assert main(["-q", "selectivity", str(run), "--null-permutations", "10"]) == 0
    assert not stale.exists() and live.exists() and foreign.exists() and not old_foreign.exists()


def test_a_zero_byte_manipulation_cache_entry_is_recomputed(tmp_path):
    cache = ResultCache(tmp_path)
    (tmp_path / "abc.npz").write_bytes(b"")
    assert cache.get("abc") is None
    cache.put("abc", np.ones(3))
    assert cache.get("abc").tolist() == [1, 1, 1]


def test_a_manipulation_cache_entry_that_does_not_check_is_recomputed(tmp_path):
    """Issue 20 item 4: another entry's content under a key (same shape, or another) was used as is."""
    cache = ResultCache(tmp_path)
    cache.put("abc", np.ones((2, 3), np.float32))
    cache.put("def", np.zeros((2, 3), np.float32))
    cache.put("ghi", np.zeros((5,), np.float32))
    assert cache.get("abc").tolist() == [[1, 1, 1], [1, 1, 1]]
    (tmp_path / "abc.npz").write_bytes((tmp_path / "def.npz").read_bytes())  # right shape, wrong entry
    assert cache.get("abc") is None and cache.get("def") is not None
    (tmp_path / "def.npz").write_bytes((tmp_path / "ghi.npz").read_bytes())  # another shape
    assert cache.get("def") is None
    text = (tmp_path / "ghi.npz").read_bytes()
    (tmp_path / "ghi.npz").write_bytes(text[: len(text) // 2])  # cut short
    assert cache.get("ghi") is None


def test_too_little_free_space_is_said_before_any_picture_is_computed(tmp_path, capsys, monkeypatch):
    import shutil

    from emoselect.base import files

    make_oasis(tmp_path / "set", n=3)
    real = shutil.disk_usage
    monkeypatch.setattr(files.shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    calls = []
    monkeypatch.setattr("emoselect.engine.responses.compute_missing_shared", lambda *a, **k: calls.append(1))
    assert main(["-q", "extract", "--dataset", f"s={tmp_path / 'set'}", *SMALL, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "but only 1 kB are free" in err and "Traceback" not in err and not calls


def test_a_cache_that_cannot_be_written_is_one_sentence(tmp_path, capsys):
    make_oasis(tmp_path / "set", n=3)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    where = ["--cache", str(blocker / "cache"), "--out", str(tmp_path / "run")]
    assert main(["-q", "extract", "--dataset", f"s={tmp_path / 'set'}", *SMALL, *where]) == 2
    err = capsys.readouterr().err
    assert "the cache folder" in err and "is not writable" in err and err.count("\n") == 1


def test_a_full_disk_while_assembling_responses_is_a_message_and_leaves_no_temporary(tmp_path, capsys, monkeypatch):
    from emoselect.engine import responses

    make_oasis(tmp_path / "set", n=3)

    def full(path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(responses, "reserve", full)
    run = tmp_path / "run"
    assert main(["-q", "extract", "--dataset", f"s={tmp_path / 'set'}", *SMALL, "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err
    assert not list(run.rglob(".*.tmp*")) and "extract" not in manifest.read(run)


def test_report_writes_no_traceback_for_a_permission_error(tmp_path, capsys, monkeypatch):
    run = _extracted(tmp_path)

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(run / "report.html"))

    monkeypatch.setattr("emoselect.output.report.write_text_atomic", denied)
    assert main(["-q", "report", str(run)]) == 2
    err = capsys.readouterr().err
    assert "report.html: Permission denied" in err and "Traceback" not in err


def test_kill_9_at_several_points_then_rerun_gives_the_undisturbed_tables(tmp_path):
    """A subprocess running the whole analysis is killed (SIGKILL) at 15%, 45% and 75% of an
    undisturbed run's time (import and stimuli, extraction, selectivity or manipulations); the same
    command then finishes, with tables byte-equal to the undisturbed run's and no temporaries left."""
    command = [sys.executable, "-m", "emoselect.cli", *_whole_run(tmp_path)]
    env = {**os.environ, "EMOSELECT_CACHE": str(tmp_path / "cache-a")}
    start = time.time()
    subprocess.run([*command, "--out", str(tmp_path / "calm")], env=env, check=True, capture_output=True)
    duration = time.time() - start
    env["EMOSELECT_CACHE"] = str(tmp_path / "cache-b")
    for fraction in (0.15, 0.45, 0.75):
        victim = subprocess.Popen(
            [*command, "--out", str(tmp_path / "hit")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(fraction * duration)
        victim.kill()
        victim.wait()
    subprocess.run([*command, "--out", str(tmp_path / "hit")], env=env, check=True, capture_output=True)
    calm = sorted(
        p.relative_to(tmp_path / "calm") for p in (tmp_path / "calm").rglob("*.csv") if "cache" not in p.parts
    )
    assert len(calm) > 10
    for table in calm:
        assert (tmp_path / "hit" / table).read_bytes() == (tmp_path / "calm" / table).read_bytes(), table
    assert not list((tmp_path / "hit").rglob(".*.tmp*")) and not list((tmp_path / "cache-b").rglob(".*.tmp*"))


def test_a_picture_changed_in_place_with_its_old_size_and_mtime_is_rehashed(tmp_path):
    from conftest import make_image
    from emoselect.pictures.stimuli import ImageCheckCache

    picture = make_image(tmp_path / "a.png", seed=1)
    checks = ImageCheckCache(tmp_path / "cache")
    first, _ = checks.check(picture)
    stat = picture.stat()
    other = make_image(tmp_path / "b.png", seed=2)
    assert other.stat().st_size == stat.st_size  # same size, other bytes
    picture.write_bytes(other.read_bytes())
    os.utime(picture, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the old modification time
    second, _ = checks.check(picture)
    assert second != first and second == __import__("emoselect.base.files", fromlist=["x"]).file_digest(other)


def test_a_huge_16_bit_picture_is_loaded_in_bounded_memory_and_max_pixels_guards(tmp_path):
    """A 9000 x 9000 16-bit PNG (small on disk): peak memory of loading it stays under 500 MB more
    than the resident memory before loading (libraries imported first), and a lower --max-pixels skips
    it with a message (before decoding)."""
    from PIL import Image

    from emoselect.pictures.images import ImageProblem, load_rgb

    path = tmp_path / "huge.png"
    gradient = (np.arange(9000, dtype=np.uint32) * 7 % 65536).astype(np.uint16)
    Image.fromarray(np.broadcast_to(gradient, (9000, 9000)).copy()).save(path)
    # Linux's ru_maxrss of a child starts at its parent's memory (here, pytest's): read this process's
    # own high-water mark instead (VmHWM), reset to the resident memory once the libraries are imported
    code = (
        "import sys, torchvision.transforms.functional; from emoselect.pictures.images import load_rgb, Preprocessing; "
        "from emoselect.engine.tensors import to_tensor; "
        "kb = lambda key: int(next(l for l in open('/proc/self/status') if l.startswith(key)).split()[1]); "
        "open('/proc/self/clear_refs', 'w').write('5'); before = kb('VmRSS'); "
        "image, notes = load_rgb(sys.argv[1]); to_tensor(image, Preprocessing()); "
        "print(kb('VmHWM') - before, notes)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True).stdout
    grown_kb = int(out.split()[0])
    assert grown_kb < 500 * 1024, out
    assert "16-bit image rescaled to 8 bits" in out
    with pytest.raises(ImageProblem, match="over --max-pixels 1000000"):
        load_rgb(path, max_pixels=1_000_000)


def test_16_bit_conversion_in_bands_equals_the_whole_array_way(tmp_path):
    from PIL import Image

    from emoselect.pictures import images

    rng = np.random.default_rng(0)
    array = rng.integers(0, 65536, (600, 300), dtype=np.uint16)
    converted, _ = images._to_8bit(Image.fromarray(array))
    plain = np.clip(np.round(array.astype(np.float64) / 65535.0 * 255.0), 0, 255).astype(np.uint8)
    assert np.array_equal(np.asarray(converted), plain)
    floats = rng.normal(0.5, 0.6, (600, 300)).astype(np.float32)
    converted, _ = images._to_8bit(Image.fromarray(floats, mode="F"))
    top = float(floats.max())
    plain = np.clip(np.round(np.clip(floats, 0, None) / top * 255.0), 0, 255).astype(np.uint8)
    assert np.array_equal(np.asarray(converted), plain)


def test_an_animated_gif_gets_a_first_frame_note(tmp_path):
    from PIL import Image

    from emoselect.pictures.images import load_rgb

    frames = [Image.new("RGB", (80, 80), colour) for colour in ("red", "green", "blue")]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    _, notes = load_rgb(tmp_path / "a.gif")
    assert any("3 frames: first frame used" in note for note in notes)


def test_image_statistics_do_not_depend_on_the_batch_size():
    import torch

    from emoselect.engine.tensors import image_statistics

    batch = torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    together = image_statistics(batch)
    alone = torch.cat([image_statistics(batch[i : i + 1]) for i in range(8)])
    assert torch.equal(together, alone)


def test_small_items_clear_messages(tmp_path, capsys):
    from conftest import make_generic

    make_generic(tmp_path / "set", rows=[("a.png", "seven", 3.0), ("b.png", 4.0, 3.0), ("c.png", 7.0, 3.0)])
    assert main(["-q", "datasets", "inspect", str(tmp_path / "set")]) == 2
    assert "--scale" in capsys.readouterr().err
    assert main(["-q", "datasets", "inspect", str(tmp_path / "set"), "--scale", "set=1-9"]) == 0  # as suggested
    out = capsys.readouterr().out
    assert "valence 'seven' of 'a' is not a number" in out
    weights = tmp_path / "weights.pth"
    weights.write_text("these are not weights\n")
    make_oasis(tmp_path / "o", n=3)
    network = ["--model", "mobilenet_v3_small", "--weights", str(weights)]
    assert main(["-q", "extract", "--dataset", f"o={tmp_path / 'o'}", *network, "--out", str(tmp_path / "run")]) == 2
    assert "a text file that torch.load cannot read" in capsys.readouterr().err


HOSTILE = "<img src=x onerror=alert(1)>\"'&"


def _hostile(value):
    if isinstance(value, dict):
        return {k: _hostile(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hostile(v) for v in value]
    return HOSTILE if isinstance(value, str) else value


def test_hostile_strings_in_inputs_and_config_are_escaped_in_the_report(tmp_path):
    """Picture names (hence image IDs, paths, problems) and every string of config.yaml carry
    markup; the page shows them as text."""
    import yaml

    root = tmp_path / "set"
    make_oasis(root, n=30, valences=np.repeat([2.0, 4.5, 6.5], 10))
    text = (root / "OASIS.csv").read_bytes().decode().replace("Thing 1,", "Thing 1 <b onmouseover=alert(1)>,")
    (root / "OASIS.csv").write_bytes(text.encode())
    os.rename(root / "images" / "Thing 1.jpg", root / "images" / "Thing 1 <b onmouseover=alert(1)>.jpg")
    (root / "images" / "<img src=x onerror=alert(2)>.jpg").write_bytes(b"not a picture")
    run = tmp_path / "run"
    assert main([*_whole_run(tmp_path), "--out", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert "onmouseover=alert(1)" in page or "Thing 1" in page
    assert "<b onmouseover" not in page and "<img src=x" not in page
    config = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump(_hostile(config)))
    assert main(["-q", "report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<script" not in page.lower()


def test_a_full_disk_at_random_writes_of_every_stage_then_a_rerun_gives_the_undisturbed_tables(
    tmp_path, monkeypatch, capsys
):
    """ENOSPC injected at the k-th atomic write of a whole run (k drawn over all its writes: cache
    entries, responses, tables, figures, heads, report, config, manifest); the command fails with a
    message, no temporary is left, and the rerun's tables equal the undisturbed run's."""
    from emoselect.base import files
    from emoselect.output import figures

    command = _whole_run(tmp_path)
    real, calls = files.write_atomic, []

    def counting(path, write):
        calls.append(str(path))
        return real(path, write)

    for module in (files, figures):
        monkeypatch.setattr(module, "write_atomic", counting)
    monkeypatch.setenv("EMOSELECT_CACHE", str(tmp_path / "cache-calm"))
    assert main([*command, "--out", str(tmp_path / "calm")]) == 0
    total = len(calls)
    assert total > 50
    calm = sorted(
        p.relative_to(tmp_path / "calm") for p in (tmp_path / "calm").rglob("*.csv") if "cache" not in p.parts
    )
    for k in sorted(np.random.default_rng(7).choice(np.arange(1, total), 4, replace=False)):

        def failing(path, write, k=k):
            calls.append(str(path))
            if len(calls) == k:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            return real(path, write)

        calls.clear()
        for module in (files, figures):
            monkeypatch.setattr(module, "write_atomic", failing)
        monkeypatch.setenv("EMOSELECT_CACHE", str(tmp_path / f"cache-{k}"))
        out = tmp_path / f"hit-{k}"
        assert main([*command, "--out", str(out)]) == 2, k
        assert "No space left on device" in capsys.readouterr().err
        assert not list(out.rglob(".*.tmp*")) and not list((tmp_path / f"cache-{k}").rglob(".*.tmp*"))
        for module in (files, figures):
            monkeypatch.setattr(module, "write_atomic", counting)
        assert main([*command, "--out", str(out)]) == 0, k
        for table in calm:
            assert (out / table).read_bytes() == (tmp_path / "calm" / table).read_bytes(), (k, table)


def test_a_rating_row_pointing_outside_its_set_is_excluded_not_matched_by_stem(tmp_path):
    from conftest import make_generic, make_image
    from emoselect.pictures.stimuli import build_stimuli

    make_image(tmp_path / "other" / "a.png", seed=9)
    outside = make_image(tmp_path / "elsewhere" / "c.png", seed=8)  # exists: not created by make_generic
    make_generic(
        tmp_path / "set",
        rows=[
            ("a.png", 2.0, 3.0),
            ("b.png", 5.0, 3.0),
            ("c.png", 7.0, 3.0),
            ("../other/a.png", 7.5, 3.0),
            (str(outside), 1.5, 3.0),
        ],
    )
    stimuli = build_stimuli({"s": tmp_path / "set"}, scales={"s": "1-9"}, progress=False)
    assert sorted(stimuli.table["image_id"]) == ["a", "b", "c"]
    excluded = [p.problem for p in stimuli.problems if p.action == "excluded"]
    assert any("../other/a" in text for text in excluded) and any("elsewhere/c" in text for text in excluded)


def test_a_run_folder_that_cannot_be_made_is_one_line_before_any_picture_is_computed(tmp_path, capsys, monkeypatch):
    make_oasis(tmp_path / "set", n=3)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    calls = []
    monkeypatch.setattr("emoselect.engine.responses.compute_missing_shared", lambda *a, **k: calls.append(1))
    assert main(["-q", "extract", "--dataset", f"s={tmp_path / 'set'}", *SMALL, "--out", str(blocker / "run")]) == 2
    err = capsys.readouterr().err
    assert "a-file/run" in err and "Traceback" not in err and err.count("\n") == 1 and not calls


def test_a_rerun_of_manipulate_trains_no_head_and_computes_no_condition(tmp_path, monkeypatch):
    run = _extracted(tmp_path)
    assert main(["-q", "selectivity", str(run), "--null-permutations", "10"]) == 0
    assert main(["-q", "manipulate", str(run), *MANIPULATE, "--sets-per-shard", "2"]) == 0
    tables = {name: (run / name).read_bytes() for name in ("readout.csv", "manipulation.csv", "table1.csv")}
    kept = list((run / "cache" / "heads").glob("*.npz"))
    assert len(kept) == 1
    # 1 layer: intact, then per category (3) selective + 3 random sets = 4 sets in blocks of 2 (7 blocks x 1
    # chunk); the sequential tests evaluate each category's first block and the second only where a test needs it
    assert 4 <= len(list((run / "cache" / "manipulation").glob("*.npz"))) <= 7
    import emoselect.engine.manipulation
    import emoselect.stages.manipulate

    def refuse(*args, **kwargs):
        raise AssertionError("computed again")

    monkeypatch.setattr(emoselect.stages.manipulate, "train_heads", refuse)
    monkeypatch.setattr(emoselect.engine.manipulation, "evaluate", refuse)
    assert main(["-q", "manipulate", str(run), *MANIPULATE, "--sets-per-shard", "2"]) == 0
    assert all((run / name).read_bytes() == text for name, text in tables.items())
    monkeypatch.undo()
    whole = kept[0].read_bytes()
    for damaged in (b"damaged", whole[: len(whole) // 2], whole[:-30]):  # issue 20 item 7: cut short
        kept[0].write_bytes(damaged)
        assert main(["-q", "manipulate", str(run), *MANIPULATE, "--sets-per-shard", "2"]) == 0
        assert all((run / name).read_bytes() == text for name, text in tables.items())


class _RunsCode:
    def __reduce__(self):
        return (print, ("this ran",))


def test_yaml_errors_and_refused_pickles_are_one_line_with_the_place(tmp_path, capsys):
    """Issue 20 item 16: PyYAML's and torch's messages took 3-6 lines."""
    import torch

    config = tmp_path / "config.yaml"
    config.write_text("run:\n  controls: [1\nextract: {a: 1}\n")
    assert main(["-q", "run", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"{config}, line 3, column 8: not valid YAML (expected ',' or ']', but got ':')" in err
    assert err.count("\n") == 1
    sweep = tmp_path / "study.yaml"
    sweep.write_text("networks:\n  a: {model: vgg11\n")
    assert main(["-q", "sweep", str(sweep)]) == 2
    err = capsys.readouterr().err
    assert f"{sweep}, line 3" in err and err.count("\n") == 1
    weights = tmp_path / "weights.pth"
    torch.save({"w": _RunsCode()}, weights)
    assert main(["-q", "sites", "vgg11", "--weights", str(weights)]) == 2
    captured = capsys.readouterr()
    assert f"{weights}: refused: loading it would run code" in captured.err and captured.err.count("\n") == 1
    assert "this ran" not in captured.out


def test_full_disk_messages_name_the_file_and_real_sizes(tmp_path, monkeypatch):
    """Issue 20 item 13: "needs about 0 MB ... only 0 MB are free" and "2052 requested and 992 written"
    (no path) on a full disk."""
    import errno
    import shutil

    from emoselect.base.files import check_free_space, write_atomic
    from emoselect.base.problems import InputError

    def short_write(temporary):
        temporary.write_bytes(b"x" * 992)
        raise OSError("2052 requested and 992 written")

    target = tmp_path / "table.csv"
    with pytest.raises(OSError) as caught:
        write_atomic(target, short_write)
    assert caught.value.filename == str(target) and caught.value.errno == errno.ENOSPC
    assert "2052 requested and 992 written" in caught.value.strerror
    assert list(tmp_path.iterdir()) == []  # no temporary left

    def refused(temporary):
        raise PermissionError(errno.EACCES, "Permission denied", str(temporary))

    with pytest.raises(OSError) as caught:
        write_atomic(target, refused)
    assert caught.value.filename == str(target)  # the target, not its .tmp
    usage = shutil.disk_usage(tmp_path)._replace(free=992)
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: usage)
    with pytest.raises(InputError, match=r"needs about 2.05 kB in .*, but only 992 bytes are free"):
        check_free_space(tmp_path, 2052, "the responses")


def test_a_typo_in_an_option_never_invalidates_finished_results(tmp_path, capsys):
    """Issue 20 item 6: the stage dropped its finished results before it checked its options."""
    run = _extracted(tmp_path)
    assert main(["-q", "selectivity", str(run), "--null-permutations", "10"]) == 0
    assert main(["-q", "manipulate", str(run), *MANIPULATE]) == 0
    before = manifest.read(run)
    capsys.readouterr()
    assert main(["-q", "selectivity", str(run), "--null-permutations", "10", "--example-layers", "nope"]) == 2
    assert "--example-layers ['nope'] are not probe sites" in capsys.readouterr().err
    assert main(["-q", "manipulate", str(run), *MANIPULATE[2:], "--layers", "nope"]) == 2
    assert "'nope' is not a probe site" in capsys.readouterr().err
    after = manifest.read(run)
    assert {k: v["files"] for k, v in after.items()} == {k: v["files"] for k, v in before.items()}
    assert (run / "table1.csv").is_file()


def test_datasets_inspect_works_without_a_writable_cache(tmp_path, capsys):
    """Issue 20 item 17 (part): `datasets inspect` checked every picture, then failed on its cache."""
    make_oasis(tmp_path / "set", n=4)
    (tmp_path / "afile").write_text("not a folder")
    assert main(["-q", "datasets", "inspect", str(tmp_path / "set"), "--cache", str(tmp_path / "afile" / "c")]) == 0
    captured = capsys.readouterr()
    assert "checking the pictures without it" in captured.err and "total" in captured.out


def test_the_lock_holder_is_named_by_its_command(monkeypatch):
    """Issue 20 item 17 (part): the holder was shown as "emoselect -q" (the first two words of argv)."""
    import sys

    from emoselect.base import files

    monkeypatch.setattr(sys, "argv", ["/usr/bin/emoselect", "-q", "run", "--out", "x"])
    assert files._command_line() == "emoselect run"
