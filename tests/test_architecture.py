"""The import contract (docs/architecture.md): each module imports only from its own or a lower
layer, the numpy core and the outputs never load torch, and `import emoselect` has no side effects."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "emoselect"

# a module's layer is its folder (top-level modules: the interface); docs/architecture.md draws these
LAYERS = ("base", "pictures", "analysis", "run", "engine", "output", "stages", "interface")
MAY_IMPORT = {  # layer -> the layers its modules may import from
    "base": {"base"},
    "pictures": {"base", "pictures"},
    "analysis": {"base", "pictures", "analysis"},
    "run": {"base", "pictures", "analysis", "run"},
    "engine": {"base", "pictures", "analysis", "engine"},
    "output": {"base", "pictures", "analysis", "run", "output"},
    "stages": set(LAYERS) - {"interface"},
    "interface": set(LAYERS),
}
TORCH_LAYERS = {"engine", "stages"}  # the only layers that may import torch (or torchvision, timm, open_clip)
TORCH = ("torch", "torchvision", "timm", "open_clip")


def layer_of(module: str) -> str:
    """``analysis.stats`` (and the ``analysis`` package) -> ``analysis``; a top-level module (``cli``,
    ``__init__``) -> ``interface``."""
    first = module.split(".")[0]
    return first if first in LAYERS else "interface"


def imported_modules(source: str, module: str) -> set[str]:
    """emoselect modules (dotted, below the package) that ``module``'s source imports, at module level
    or inside functions: ``from ..base.files import x``, ``from . import stats``, ``emoselect.engine.x``."""
    package = module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                parts = [*base, *(node.module.split(".") if node.module else [])]
                if node.module:
                    found.add(".".join(parts))
                else:
                    found.update(".".join([*parts, alias.name]) for alias in node.names)
            elif node.module and node.module.startswith("emoselect."):
                found.add(node.module.removeprefix("emoselect."))
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("emoselect.") for a in node.names if a.name.startswith("emoselect."))
    return {name for name in found if name}


def imports_torch(source: str) -> bool:
    """Whether a source imports torch (or a torch library) anywhere, also inside a function."""
    for node in ast.walk(ast.parse(source)):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module]
        if any(name.split(".")[0] in TORCH for name in names):
            return True
    return False


def violations(sources: dict[str, str]) -> list[str]:
    """One line per import that goes against the layers, per torch import outside engine/ and stages/,
    and per module in a folder that is not a layer."""
    out = []
    for module, source in sorted(sources.items()):
        layer, folder = layer_of(module), module.split(".")[0]
        if "." in module and folder != layer:
            out.append(f"{module}: {folder}/ is not a layer (add it to docs/architecture.md and LAYERS)")
            continue
        for target in sorted(imported_modules(source, module)):
            if layer_of(target) not in MAY_IMPORT[layer]:
                out.append(f"{module} ({layer}) imports {target} ({layer_of(target)})")
        if layer not in TORCH_LAYERS and imports_torch(source):
            out.append(f"{module} ({layer}) imports torch")
    return out


def package_sources() -> dict[str, str]:
    """{dotted module below the package: source}, ``__init__`` files named by their folder."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] + ("__init__",)) if parts[-1] == "__init__" else ".".join(parts)
        out[name] = path.read_text()
    return out


def test_the_package_keeps_its_layers():
    assert violations(package_sources()) == []


def test_every_folder_is_a_layer_and_every_layer_a_folder():
    folders = {path.name for path in PACKAGE.iterdir() if path.is_dir() and path.name != "__pycache__"}
    assert folders == set(LAYERS) - {"interface"}


def test_a_violation_is_caught():
    sources = package_sources()
    sources["analysis.stats"] += "\nfrom ..stages.run import run_all\n"
    sources["output.figures"] += "\ndef f():\n    from ..engine.probe import load_network\n"
    sources["pictures.images"] += "\ndef g():\n    import torch.nn\n"
    sources["analysis.tuning"] += "\nfrom . import claims\nfrom .. import cli\n"
    assert violations(sources) == [
        "analysis.stats (analysis) imports stages.run (stages)",
        "analysis.tuning (analysis) imports cli (interface)",
        "output.figures (output) imports engine.probe (engine)",
        "pictures.images (pictures) imports torch",
    ]
    assert violations({"gadgets.new": ""}) == [
        "gadgets.new: gadgets/ is not a layer (add it to docs/architecture.md and LAYERS)"
    ]


def test_core_and_outputs_do_not_load_torch_and_import_has_no_side_effects():
    modules = [m for m in package_sources() if layer_of(m) not in TORCH_LAYERS | {"interface"}]
    code = (
        "import sys, matplotlib; matplotlib.use('svg'); import emoselect; "
        + "; ".join(f"import emoselect.{m.removesuffix('.__init__')}" for m in modules)
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


def _functions() -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """(module, function node) for every function and method of the package, nested ones too."""
    return [
        (module, node)
        for module, source in package_sources().items()
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.arg]:
    arguments = node.args
    named = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
    named = [a for a in named if a.arg not in ("self", "cls")]
    return named + [a for a in (arguments.vararg, arguments.kwarg) if a is not None]


def test_no_function_is_longer_than_50_lines_of_code_or_takes_more_than_8_parameters():
    """Docstrings (numpydoc Parameters/Returns) are not counted; the code of a function fits a screen,
    and more than 8 parameters call for an options record."""
    long = []
    for module, node in _functions():
        lines = node.end_lineno - node.lineno + 1
        first = node.body[0]
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            lines -= first.end_lineno - first.lineno + 1
        if lines > 50:
            long.append(f"{module}.{node.name}: {lines} lines")
        if len(_parameters(node)) > 8:
            long.append(f"{module}.{node.name}: {len(_parameters(node))} parameters")
    assert long == []


def test_every_function_is_annotated():
    """Every parameter and every return value of every function carries a type (mypy checks them)."""
    missing = [
        f"{module}.{node.name}"
        for module, node in _functions()
        if node.returns is None or any(a.annotation is None for a in _parameters(node))
    ]
    assert missing == []
