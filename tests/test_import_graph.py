"""The package's layout rules (docs/architecture.md, "Layers"), enforced over the source with ast.

Every import counts: top-level, inside functions, under ``TYPE_CHECKING``, relative or absolute,
and a string that names a flowscope module (``importlib``, multiprocessing preloads, Jinja
package loaders). Each folder (or top-level module) of ``src/flowscope`` sits on one layer and
may import only its own layer and the layers below it; the package's face
(``flowscope/__init__.py``) may import anything.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "flowscope"

# Bottom to top. A library layer never imports examples, demo or cli (they sit above it).
LAYERS = ("_version", "workflows", "telemetry", "analysis", "reports", "benchmark", "ci", "performance",
          "integrations", "testing", "examples", "demo", "cli")
LIBRARY = LAYERS[:LAYERS.index("testing") + 1]
MAX_MODULES_PER_FOLDER = 20
_MODULE_STRING = re.compile(r"^flowscope(\.[A-Za-z_]\w*)+$")


def module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """Every flowscope module ``source`` (the text of ``module``) imports or names."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)   # submodules imported by name
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE_STRING.match(node.value):
            found.add(node.value)
    return {name for name in found if name == "flowscope" or name.startswith("flowscope.")}


def layer_of(module: str) -> str | None:
    """The layer of a flowscope module: its folder (or top-level module) under the package."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None      # None: the package's face


def violations(sources: dict[str, tuple[str, bool]]) -> list[str]:
    """``module imports target`` for every import that points up or sideways, or leaves the layers."""
    found = []
    for module, (source, is_package) in sorted(sources.items()):
        own = layer_of(module)
        if own is None:
            continue
        if own not in LAYERS:
            found.append(f"{module} is in no layer (add its folder to LAYERS and docs/architecture.md)")
            continue
        reported: set[str | None] = set()
        for target in sorted(imported_modules(source, module, is_package)):
            other = layer_of(target)
            if other in reported:
                continue
            if other is None:
                found.append(f"{module} imports the package's face {target!r} (import the module it needs)")
            elif other != own and other in LAYERS and LAYERS.index(other) > LAYERS.index(own):
                found.append(f"{module} ({own}) imports {target} ({other}), a layer above it")
            else:
                continue
            reported.add(other)
    return found


def package_sources() -> dict[str, tuple[str, bool]]:
    sources = {}
    for path in PACKAGE.rglob("*.py"):
        module, is_package = module_name(path)
        sources[module] = (path.read_text(encoding="utf-8"), is_package)
    return sources


def test_every_import_points_down_the_layers() -> None:
    assert violations(package_sources()) == []


def test_the_checker_sees_upward_imports_of_every_form() -> None:
    planted = {
        "flowscope.telemetry._x": ("from ..reports import _exit_report\n", False),
        "flowscope.workflows._y": ("def f():\n    import flowscope.telemetry\n", False),
        "flowscope.analysis._z": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                  "    from flowscope.performance import Monitor\n", False),
        "flowscope.benchmark._w": ('PRELOAD = ["flowscope.examples"]\n', False),
        "flowscope.reports._v": ("from .. import __version__\n", False),
        "flowscope.analysis._ok": ("from ..telemetry import fingerprint\nfrom . import _findings\n", False),
    }
    found = violations(planted)
    assert [line.split(" ")[0] for line in found] == [
        "flowscope.analysis._z", "flowscope.benchmark._w", "flowscope.reports._v", "flowscope.telemetry._x",
        "flowscope.workflows._y"]


def test_every_folder_and_module_of_the_package_has_a_layer() -> None:
    tops = {layer_of(module) for module in package_sources()} - {None}
    assert tops <= set(LAYERS), f"not in any layer: {sorted(tops - set(LAYERS))}"


def test_no_library_module_imports_demo_examples_or_cli() -> None:
    for module, (source, is_package) in package_sources().items():
        if layer_of(module) in LIBRARY:
            named = {layer_of(t) for t in imported_modules(source, module, is_package)}
            assert not named & {"demo", "examples", "cli"}, module


def test_no_cycle_between_folders() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, (source, is_package) in package_sources().items():
        own = layer_of(module)
        for target in imported_modules(source, module, is_package):
            other = layer_of(target)
            if own is not None and other is not None and other != own:
                graph[own].add(other)
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> None:
        if node in done:
            return
        assert node not in visiting, f"cycle between folders: {' -> '.join(visiting[visiting.index(node):] + [node])}"
        visiting.append(node)
        for nxt in sorted(graph[node]):
            visit(nxt)
        visiting.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)


def test_no_folder_holds_more_than_20_modules() -> None:
    for init in PACKAGE.rglob("__init__.py"):
        modules = [p for p in init.parent.glob("*.py") if p.name != "__init__.py"]
        assert len(modules) <= MAX_MODULES_PER_FOLDER, f"{init.parent}: {len(modules)} modules"


@pytest.mark.parametrize("folder", sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()))
def test_each_folder_says_its_job_in_its_docstring(folder: str) -> None:
    docstring = ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text(encoding="utf-8")))
    assert docstring and len(docstring.split()) >= 8, f"flowscope/{folder}/__init__.py needs a docstring saying its job"
