"""The dependency rule of lib/inrcompress, checked by parsing every module's imports (ast).

Layers, and what each may import (besides itself):

    base         errors.py, config.py, nn.py (and the package's __init__)   -> base only
    signals      signals/    loading, grids, meshes, SDF samples          -> base
    evaluate     evaluate/   metrics, rate-distortion curves              -> base, signals
    fit          fit/        the fit engine, batched fitting, MAML        -> base, signals, evaluate
    codec        codec/      quantization, entropy coding, the .inr file  -> base, signals, evaluate
                             (codec never imports fit)
    experiments  experiments/  run folders, results, quantize-over-a-glob -> base, signals, evaluate, fit, codec
    tools        tools/      every command main(argv)                     -> anything
    Nothing outside tools imports tools.

Modality: no shape module (a module whose name starts with "shape") imports an image module (name
starting with "image") or the reverse; tools, which wire a modality to the command line, are exempt.

Every import counts: at the top of a module, inside functions (deferred imports), relative imports,
and importlib.import_module("inrcompress...") with a literal name. A module that is in no layer fails
the test, so a new top-level module or subpackage must be placed in the rule first.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "inrcompress"
LIB = Path(__file__).resolve().parents[1] / "lib" / PACKAGE

BASE_MODULES = {"errors", "config", "nn"}
ALLOWED = {
    "base": {"base"},
    "signals": {"base", "signals"},
    "evaluate": {"base", "signals", "evaluate"},
    "fit": {"base", "signals", "evaluate", "fit"},
    "codec": {"base", "signals", "evaluate", "codec"},
    "experiments": {"base", "signals", "evaluate", "fit", "codec", "experiments"},
    "tools": {"base", "signals", "evaluate", "fit", "codec", "experiments", "tools"},
}


@dataclass(frozen=True)
class Edge:
    importer: str  # dotted module name
    imported: str  # dotted module name (a submodule when the import names one)
    line: int

    def __str__(self) -> str:
        return f"{self.importer} (line {self.line}) imports {self.imported}"


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name of the package; None when the rule does not place it."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    if len(parts) == 1 or parts[1] in BASE_MODULES:
        return "base"
    return parts[1] if parts[1] in ALLOWED and parts[1] != "base" else None


def modality_of(module: str) -> str | None:
    leaf = module.rsplit(".", 1)[-1]
    return "image" if leaf.startswith("image") else "shape" if leaf.startswith("shape") else None


def package_modules(root: Path) -> dict[str, Path]:
    """{dotted name: file} of every module under root (the package's folder)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def import_edges(root: Path) -> list[Edge]:
    """Every import of a package module by a package module, wherever in the file it is."""
    modules = package_modules(root)
    edges = []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                # `from inrcompress.fit import train` imports the submodule inrcompress.fit.train
                targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                           for alias in node.names]
            elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
                  and isinstance(node.args[0].value, str) and _is_import_module(node.func)):
                targets = [node.args[0].value]
            for target in targets:
                if target.split(".")[0] == PACKAGE:
                    edges.append(Edge(name, target, node.lineno))
    return list(dict.fromkeys(edges))  # `from m import a, b` is one edge


def _is_import_module(func: ast.expr) -> bool:
    return (isinstance(func, ast.Attribute) and func.attr == "import_module") or \
        (isinstance(func, ast.Name) and func.id in ("import_module", "__import__"))


def violations(edges: list[Edge], modules: list[str] | None = None) -> list[str]:
    """The edges (and unplaced modules) that break the layer rule of this file's docstring, one line each."""
    problems = [f"{m} is in no layer of the dependency rule (tests/test_layout.py)"
                for m in modules or [] if layer_of(m) is None]
    for edge in edges:
        source, target = layer_of(edge.importer), layer_of(edge.imported)
        if source is not None and target is None:
            problems.append(f"{edge}: {edge.imported} is in no layer")
        elif source is not None and target not in ALLOWED[source]:
            problems.append(f"{edge}: {source} may not import {target}")
    return problems


def modality_violations(edges: list[Edge]) -> list[str]:
    """The edges from a shape module to an image module or the reverse, tools left out."""
    return [f"{edge}: {modality_of(edge.importer)} modules may not import {modality_of(edge.imported)} modules"
            for edge in edges if layer_of(edge.importer) != "tools"
            and {modality_of(edge.importer), modality_of(edge.imported)} == {"image", "shape"}]


def test_the_package_follows_the_dependency_rule():
    problems = violations(import_edges(LIB), list(package_modules(LIB)))
    assert not problems, "dependency rule broken:\n" + "\n".join(problems)


def test_no_shape_module_imports_an_image_module_or_the_reverse():
    problems = modality_violations(import_edges(LIB))
    assert not problems, "modality rule broken:\n" + "\n".join(problems)


def test_the_parser_sees_the_real_imports():
    """The real tree has edges of every kind the parser resolves (so the rule test is not vacuous)."""
    edges = import_edges(LIB)
    imported = {(e.importer, e.imported) for e in edges}
    assert ("inrcompress.tools.decode_shape", "inrcompress.tools.flags") in imported
    assert ("inrcompress.config", "inrcompress.errors") in imported
    assert len(edges) > 50


def _tree(root: Path, files: dict[str, str]) -> Path:
    package = root / PACKAGE
    for relative, text in {"__init__.py": "", **files}.items():
        path = package / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


@pytest.mark.parametrize("files, expected", [
    # deferred import inside a function: codec never imports fit
    ({"codec/__init__.py": "", "fit/__init__.py": "", "fit/train.py": "",
      "codec/quant.py": "def f():\n    from inrcompress.fit.train import fit\n"},
     ["inrcompress.codec.quant (line 2) imports inrcompress.fit.train: codec may not import fit"]),
    # relative import of tools from a library module
    ({"signals/__init__.py": "", "tools/__init__.py": "", "tools/flags.py": "",
      "signals/image.py": "from ..tools import flags\n"},
     ["inrcompress.signals.image (line 1) imports inrcompress.tools.flags: signals may not import tools"]),
    # `from package import submodule`, and a base module reaching up
    ({"fit/__init__.py": "", "fit/meta.py": "", "config.py": "from inrcompress.fit import meta\n"},
     ["inrcompress.config (line 1) imports inrcompress.fit.meta: base may not import fit"]),
    # importlib with a literal name
    ({"evaluate/__init__.py": "", "experiments/__init__.py": "", "experiments/images.py": "",
      "evaluate/rd.py": "import importlib\nm = importlib.import_module('inrcompress.experiments.images')\n"},
     ["inrcompress.evaluate.rd (line 2) imports inrcompress.experiments.images: evaluate may not import experiments"]),
    # modality: a shape module importing an image module, allowed layers notwithstanding
    ({"signals/__init__.py": "", "signals/image.py": "", "signals/shape.py": "from inrcompress.signals.image import x\n"},
     ["inrcompress.signals.shape (line 1) imports inrcompress.signals.image: shape modules may not import "
      "image modules"]),
    # a module the rule does not place
    ({"helpers.py": "import inrcompress.errors\n", "errors.py": ""},
     ["inrcompress.helpers is in no layer of the dependency rule (tests/test_layout.py)"]),
    # what the rule allows gives nothing
    ({"errors.py": "", "config.py": "from .errors import InrError\n", "signals/__init__.py": "",
      "signals/image.py": "from inrcompress.config import x\n", "codec/__init__.py": "",
      "codec/compress.py": "from inrcompress.signals import image\n", "tools/__init__.py": "",
      "tools/encode.py": "from inrcompress.codec import compress\nfrom inrcompress.signals.image import x\n"},
     []),
])
def test_the_rule_catches_a_broken_edge(tmp_path, files, expected):
    package = _tree(tmp_path, files)
    edges = import_edges(package)
    assert violations(edges, list(package_modules(package))) + modality_violations(edges) == expected
