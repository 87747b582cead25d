"""The import contract (docs/architecture.md): each module imports only from its own or a lower
layer, the numpy core and the outputs never load torch, and `import emoselect` has no side effects."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "emoselect"

LAYERS = {
    "foundation": ["problems", "options", "files", "manifest"],
    "core": ["stats", "formats", "images", "stimuli", "records", "selectivity", "experiments", "claims", "config"],
    "engine": ["sources", "network", "tensors", "responses", "readout", "manipulation"],
    "output": ["figures", "report"],
    "stages": ["pipeline", "sweep"],
    "interface": ["cli", "__init__"],
}
MAY_IMPORT = {  # layer -> the layers its modules may import from
    "foundation": {"foundation"},
    "core": {"foundation", "core"},
    "engine": {"foundation", "core", "engine"},
    "output": {"foundation", "core", "output"},
    "stages": {"foundation", "core", "engine", "output", "stages"},
    "interface": set(LAYERS),
}
LAYER_OF = {module: layer for layer, modules in LAYERS.items() for module in modules}
NO_TORCH = LAYERS["foundation"] + LAYERS["core"] + LAYERS["output"]


def imported_modules(source: str) -> set[str]:
    """emoselect modules a source imports (``from . import x``, ``from .x import y``, ``emoselect.x``),
    at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:
                found.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("emoselect."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("emoselect."))
    return found


def violations(sources: dict[str, str]) -> list[str]:
    """One line per import that goes against the layers, and per module missing from the table."""
    out = []
    for module, source in sorted(sources.items()):
        if module not in LAYER_OF:
            out.append(f"{module}: not in the layer table (add it to docs/architecture.md and LAYERS)")
            continue
        layer = LAYER_OF[module]
        for target in sorted(imported_modules(source)):
            if target in LAYER_OF and LAYER_OF[target] not in MAY_IMPORT[layer]:
                out.append(f"{module} ({layer}) imports {target} ({LAYER_OF[target]})")
    return out


def package_sources() -> dict[str, str]:
    return {path.stem: path.read_text() for path in PACKAGE.glob("*.py") if path.stem != "__main__"}


def test_the_package_keeps_its_layers():
    assert violations(package_sources()) == []


def test_a_violation_is_caught():
    sources = package_sources()
    sources["stats"] += "\nfrom .pipeline import run_all\n"
    sources["figures"] += "\ndef f():\n    from .network import load_network\n"
    assert violations(sources) == [
        "figures (output) imports network (engine)",
        "stats (core) imports pipeline (stages)",
    ]
    assert violations({"newmodule": ""}) == [
        "newmodule: not in the layer table (add it to docs/architecture.md and LAYERS)"
    ]


def test_core_and_outputs_do_not_load_torch_and_import_has_no_side_effects():
    code = (
        "import sys, matplotlib; matplotlib.use('svg'); import emoselect; "
        + "; ".join(f"import emoselect.{m}" for m in NO_TORCH if m != "__init__")
        + "; print('torch' in sys.modules, 'matplotlib.pyplot' in sys.modules, matplotlib.get_backend())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "svg"]


def test_public_names_resolve_lazily():
    import emoselect

    for name in emoselect.__all__:
        assert getattr(emoselect, name) is not None, name


def test_the_example_walkthrough_runs_on_a_small_oasis_sample(vgg_weights, oasis_dir):
    """examples/walkthrough.py, as a user would run it, on 45 OASIS pictures."""
    script = PACKAGE.parents[1] / "examples" / "walkthrough.py"
    out = subprocess.run(
        [sys.executable, str(script), "--pictures", str(oasis_dir), "--weights", str(vgg_weights), "--limit", "45"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "13 probe sites, readout at pool5" in out and "conv5_3 responses: 45 pictures x 512 units" in out
    assert "jaccard_null_mean" in out and "tuning_quality_excess" in out


def test_no_function_is_longer_than_60_lines_of_code():
    """Docstrings (numpydoc Parameters/Returns) are not counted; the code of a function fits a screen."""
    long = []
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                first = node.body[0]
                if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                    lines -= first.end_lineno - first.lineno + 1
                if lines > 60:
                    long.append(f"{path.stem}.{node.name}: {lines} lines")
    assert long == []
