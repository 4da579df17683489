"""The package's dependency rules (docs/architecture.md), read from the import statements.

- the ground floor (``io``, ``metrics``, ``biometry``) never imports ``networks``, the two
  pipelines (``segment3d``, ``planes2d``), ``study`` or ``cli``;
- ``networks`` never imports ``data``, the pipelines, ``study`` or ``cli``;
- nothing imports ``cli``;
- the Slicer module never imports ``networks``.

Every ``import`` and ``from ... import`` is found with :mod:`ast`, including those inside
functions (the CLI and the Slicer module import lazily), so a late import cannot slip past.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "MonaiBundle" / "fetalbiometry"
SLICER_MODULE = REPO / "FetalHeadSeg"
PIPELINES = ("segment3d", "planes2d")

#: Top-level parts of ``fetalbiometry`` that each part must never import.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "io": ("networks", *PIPELINES, "study", "cli"),
    "metrics": ("networks", *PIPELINES, "study", "cli"),
    "biometry": ("networks", *PIPELINES, "study", "cli"),
    "networks": ("data", *PIPELINES, "study", "cli"),
}


def imported_modules(source: str, module: str) -> set[str]:
    """Absolute names of every module that ``source`` (the module named ``module``) imports."""
    names: set[str] = set()
    package = module.split(".")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing module's package
                base = ".".join(package[: len(package) - node.level])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            names.add(target)
            # ``from fetalbiometry import cli`` imports the submodule ``fetalbiometry.cli``
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return names


def package_part(name: str) -> str | None:
    """The top-level part of ``fetalbiometry`` (``io``, ``networks``, ...) that ``name`` is in."""
    parts = name.split(".")
    return parts[1] if parts[0] == "fetalbiometry" and len(parts) > 1 else None


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def violations(sources: dict[str, str], forbidden: dict[str, tuple[str, ...]]) -> list[str]:
    """``"importer -> imported"`` for each import that breaks a rule of ``forbidden`` or imports ``cli``."""
    found = []
    for module, source in sources.items():
        own_part = package_part(module)
        for imported in sorted(imported_modules(source, module)):
            part = package_part(imported)
            if part is None or part == own_part:
                continue
            if part == "cli" or part in forbidden.get(own_part or "", ()):
                found.append(f"{module} -> {imported}")
    return found


def package_sources() -> dict[str, str]:
    return {module_name(path): path.read_text(encoding="utf-8") for path in sorted(PACKAGE.rglob("*.py"))}


def test_the_package_follows_its_dependency_rules() -> None:
    sources = package_sources()
    assert {"fetalbiometry.io", "fetalbiometry.cli", "fetalbiometry.segment3d.segmenter"} <= set(sources)
    assert violations(sources, FORBIDDEN) == []


@pytest.mark.parametrize(
    ("module", "statement", "broken"),
    [
        ("fetalbiometry.io", "from fetalbiometry.networks import USegNet", "fetalbiometry.networks"),
        ("fetalbiometry.metrics", "import fetalbiometry.segment3d.segmenter", "fetalbiometry.segment3d.segmenter"),
        (
            "fetalbiometry.biometry.planes",
            "from fetalbiometry.planes2d.predictor import PlanePredictor",
            "fetalbiometry.planes2d.predictor",
        ),
        ("fetalbiometry.biometry.growth", "from fetalbiometry import study", "fetalbiometry.study"),
        ("fetalbiometry.networks.mtln", "from fetalbiometry.data.hc18 import read_frame", "fetalbiometry.data.hc18"),
        ("fetalbiometry.networks.usegnet", "from ..planes2d import losses", "fetalbiometry.planes2d"),
        ("fetalbiometry.demo", "from fetalbiometry.cli import main", "fetalbiometry.cli"),
        ("fetalbiometry.study.runner", "def f():\n    from fetalbiometry import cli", "fetalbiometry.cli"),
    ],
)
def test_a_forbidden_import_is_caught(module: str, statement: str, broken: str) -> None:
    assert f"{module} -> {broken}" in violations({module: statement}, FORBIDDEN)


def test_allowed_imports_pass() -> None:
    assert violations({"fetalbiometry.networks.mtln": "from fetalbiometry.biometry.ellipse import Ellipse"}, FORBIDDEN) == []
    assert violations({"fetalbiometry.planes2d.predictor": "from fetalbiometry.weights import read_weights"}, FORBIDDEN) == []


def test_the_slicer_module_never_imports_networks() -> None:
    sources = sorted(SLICER_MODULE.rglob("*.py"))
    assert sources, "the Slicer module's sources are missing"
    for path in sources:
        imported = imported_modules(path.read_text(encoding="utf-8"), path.stem)
        assert not [name for name in imported if package_part(name) in ("networks", "cli")], path
