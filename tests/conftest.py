"""Shared test helpers: where ../shared is, and small synthetic picture sets in each native format."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EMOSELECT_SHARED", REPO.parent / "shared"))
OASIS = SHARED / "data" / "oasis"
VGG_WEIGHTS = SHARED / "weights" / "vgg16_imagenet_features.pth"
MOBILENET_WEIGHTS = SHARED / "weights" / "mobilenet_v2_imagenet.pth"


# command-line words shared by the tests that run the pipeline on a small random-weight network
SMALL = "--model mobilenet_v3_small --weights random --workers 0".split()
MANIPULATE = "--layers features.12.2 --betas 0 2 --repeats 2 --lesion-repeats 3 --epochs 2".split()


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: this test needs the shared data (set EMOSELECT_SHARED to the shared/ folder)")
    return path


@pytest.fixture
def oasis_dir() -> Path:
    return _need(OASIS / "OASIS.csv").parent


@pytest.fixture
def vgg_weights() -> Path:
    return _need(VGG_WEIGHTS)


@pytest.fixture
def mobilenet_weights() -> Path:
    return _need(MOBILENET_WEIGHTS)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Every test gets its own empty cache folder (never the user's)."""
    monkeypatch.setenv("EMOSELECT_CACHE", str(tmp_path / "cache"))


def make_image(path: Path, size=(48, 40), mode: str = "RGB", seed: int = 0, fmt: str | None = None) -> Path:
    """A small random picture; ``mode`` any PIL mode; ``fmt`` the file format (by suffix if None)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    elif mode == "P":
        image = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).convert("P", palette=Image.ADAPTIVE)
    elif mode == "CMYK":
        image = Image.fromarray(rng.integers(0, 255, (h, w, 4), dtype=np.uint8), mode="CMYK")
    else:
        channels = {"RGB": 3, "RGBA": 4, "L": 1, "LA": 2}[mode]
        array = rng.integers(0, 255, (h, w, channels), dtype=np.uint8)
        if mode == "RGBA":
            array[..., 3] = 255
            array[: h // 2, :, 3] = 0
        image = Image.fromarray(array.squeeze(-1) if channels == 1 else array, mode=mode)
    image.save(path, format=fmt)
    return path


# ---------------------------------------------------------------------------------------------
# one tiny picture set per format, each reproducing its format's quirks


def make_oasis(root: Path, n: int = 6, valences=None, seed: int = 0) -> Path:
    """OASIS.csv with CR-only line endings, an empty first header cell, no final newline and a
    theme with a trailing space; images/<Theme stripped>.jpg (``seed`` varies the pictures)."""
    valences = valences if valences is not None else np.linspace(1.5, 6.5, n)
    header = ",Theme,Category,Source,Valence_mean,Valence_SD,Valence_N,Arousal_mean,Arousal_SD,Arousal_N"
    lines = [header]
    for i, v in enumerate(valences):
        theme = f"Thing {i + 1}" + (" " if i == 1 else "")
        lines.append(f"I{i + 1},{theme},Object,Pixabay,{v},1.0,100,3.0,1.0,100")
        make_image(root / "images" / f"{theme.strip()}.jpg", seed=1000 * seed + i)
    (root / "OASIS.csv").write_bytes("\r".join(lines).encode())
    return root


def make_iaps(root: Path) -> Path:
    """AllSubjects_1-20.txt: preamble, tab header, '.' for missing, an ID rated in two sets,
    IDs like 2345.1, CRLF line endings, image extensions in either case."""
    preamble = ["IAPS Technical Manual", "All subjects", "", "Means and SDs"]
    header = "desc\tIAPS\tvalmn\tvalsd\taromn\tarosd\tdom1mn\tdom1sd\tdom2mn\tdom2sd\tset"
    rows = [
        "Snake\t1050\t3.46\t1.96\t6.87\t1.68\t3.49\t2.39\t.\t.\t4",
        "Puppies\t1710\t8.34\t1.12\t5.41\t2.34\t6.09\t2.16\t.\t.\t5",
        "Man\t2345.1\t5.10\t1.20\t3.10\t2.00\t.\t.\t.\t.\t13",
        "Mushroom\t5500\t5.42\t1.32\t3.00\t2.00\t.\t.\t.\t.\t1",
        "Mushroom\t5500\t5.62\t1.40\t3.20\t2.10\t.\t.\t.\t.\t8",
        "Missing\t7000\t.\t.\t2.50\t1.50\t.\t.\t.\t.\t2",
        "Attack\t6350\t1.90\t1.30\t7.29\t1.87\t.\t.\t.\t.\t9",
    ]
    (root).mkdir(parents=True, exist_ok=True)
    (root / "AllSubjects_1-20.txt").write_bytes("\r\n".join(preamble + [header] + rows + [""]).encode())
    for i, name in enumerate(["1050.jpg", "1710.JPG", "2345.1.jpg", "5500.jpg", "7000.jpg", "6350.Jpg"]):
        make_image(root / "images" / name, seed=10 + i)
    return root


def _naps_rows():
    top = ["", "", "", "", ""] + ["Women"] + [""] * 5 + ["Men"] + [""] * 5 + ["All"] + [""] * 5
    mid = ["", "", "", "", ""] + (["Valence", "", "Av/Ap", "", "Arousal", ""] * 3)
    low = ["ID", "Category", "Nr", "V/H", "Description"] + ["M", "SD"] * 9
    data = [
        ["Animals_001_h", "Animals", 1, "H", "dog", 7.0, 1, 6, 1, 4, 1, 6.6, 1, 6, 1, 4.5, 1, 6.8, 1.1, 6, 1, 4.2, 1.2],
        ["Faces_002_v", "Faces", 2, "V", "face", 5.0, 1, 5, 1, 3, 1, 5.2, 1, 5, 1, 3.5, 1, 5.1, 1.0, 5, 1, 3.3, 1.0],
        [
            "People_003_h",
            "People",
            3,
            "H",
            "injury",
            2.0,
            1,
            3,
            1,
            7,
            1,
            2.4,
            1,
            3,
            1,
            7.5,
            1,
            2.2,
            0.9,
            3,
            1,
            7.2,
            1.3,
        ],
    ]
    return top, mid, low, data


def make_naps(root: Path, kind: str = "xlsx") -> Path:
    """The NAPS spreadsheet: three header rows with merged group cells; files ID.jpg / ID.JPG."""
    top, mid, low, data = _naps_rows()
    root.mkdir(parents=True, exist_ok=True)
    if kind == "xlsx":
        from openpyxl import Workbook

        book = Workbook()
        sheet = book.active
        for row in (top, mid, low, *data):
            sheet.append([None if c == "" else c for c in row])
        for col in (6, 12, 18):
            sheet.merge_cells(start_row=1, start_column=col, end_row=1, end_column=col + 5)
            for sub in (0, 2, 4):
                sheet.merge_cells(start_row=2, start_column=col + sub, end_row=2, end_column=col + sub + 1)
        book.save(root / "NAPS_valence_arousal.xlsx")
    else:
        import xlwt

        book = xlwt.Workbook()
        sheet = book.add_sheet("NAPS")
        for col in (5, 11, 17):
            sheet.write_merge(0, 0, col, col + 5, top[col])
            for sub in (0, 2, 4):
                sheet.write_merge(1, 1, col + sub, col + sub + 1, mid[col + sub])
        for c, value in enumerate(low):
            sheet.write(2, c, value)
        for r, row in enumerate(data):
            for c, value in enumerate(row):
                sheet.write(3 + r, c, value)
        book.save(str(root / "NAPS_valence_arousal.xls"))
    make_image(root / "Animals_001_h.jpg", seed=20)
    make_image(root / "Faces_002_v.JPG", seed=21)
    make_image(root / "People_003_h.jpg", seed=22)
    return root


def make_gaped(root: Path) -> Path:
    """GAPED: A.txt N.txt P.txt (empty first header cell, one with extra norm columns); rows name
    .jpg but files are <cat>/<id>.bmp; stray Thumbs.db files."""
    files = {
        "A": [("A001.jpg", 20.5, 60.1), ("A002.jpg", 30.0, 55.0)],
        "N": [("N001.jpg", 50.0, 20.0), ("N002.jpg", 55.5, 22.0)],
        "P": [("P001.jpg", 85.0, 40.0), ("P002.jpg", 90.2, 35.0)],
    }
    root.mkdir(parents=True, exist_ok=True)
    for i, (cat, rows) in enumerate(files.items()):
        header = "\tValence\tArousal" + ("\tInternal norms\tExternal norms" if cat == "P" else "")
        body = [f"{name}\t{v}\t{a}" + ("\t1\t0" if cat == "P" else "") for name, v, a in rows]
        (root / f"{cat}.txt").write_text("\n".join([header] + body) + "\n")
        for j, (name, _, _) in enumerate(rows):
            make_image(root / cat / (Path(name).stem + ".bmp"), seed=30 + 3 * i + j)
        (root / cat / "Thumbs.db").write_bytes(b"\x00junk")
    return root


def make_emotion6(root: Path) -> Path:
    """Emotion6 ground_truth.txt with bracketed headers and paths relative to images/."""
    header = "[image_filename]\t[valence]\t[arousal]\t[prob. anger]\t[prob. disgust]\t[prob. fear]\t[prob. joy]\t[prob. sadness]\t[prob. surprise]\t[prob. neutral]"
    rows = [
        "anger/1.jpg\t2.1\t6.0\t0.6\t0.1\t0.1\t0\t0.1\t0.1\t0",
        "joy/1.jpg\t7.4\t5.0\t0\t0\t0\t0.9\t0\t0.1\t0",
        "neutral/3.jpg\t5.0\t2.0\t0\t0\t0\t0\t0\t0\t1",
    ]
    root.mkdir(parents=True, exist_ok=True)
    (root / "ground_truth.txt").write_text("\n".join([header] + rows) + "\n")
    for i, row in enumerate(rows):
        make_image(root / "images" / row.split("\t")[0], seed=40 + i)
    return root


def make_generic(root: Path, rows=None, header: str = "image,valence,arousal", delimiter: str = ",") -> Path:
    """ratings.csv: image,valence[,arousal][,category] with images next to it."""
    rows = rows or [("a.png", 1.0, 3.0), ("b.png", 4.0, 3.0), ("c.png", 7.0, 3.0)]
    root.mkdir(parents=True, exist_ok=True)
    lines = [header.replace(",", delimiter)] + [delimiter.join(str(c) for c in row) for row in rows]
    (root / "ratings.csv").write_text("\n".join(lines) + "\n")
    for i, row in enumerate(rows):
        if not (root / row[0]).exists():
            make_image(root / row[0], seed=50 + i)
    return root
