"""The dependency rule, read from the code (AST), so a change that breaks the layering fails CI.

Imports run one way, top to bottom of ``LAYERS``: a package may import the packages listed before it and
never one after it; ``livecart`` (the app wiring and CLI) is imported by no package. Imports under
``if TYPE_CHECKING:`` count too: a type is a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Each package and the packages of ours it may import.
LAYERS: dict[str, frozenset[str]] = {
    "base": frozenset(),
    "identity": frozenset({"base"}),
    "realtime": frozenset({"base", "identity"}),
    "live": frozenset({"base", "identity", "realtime"}),
    "shop": frozenset({"base", "identity", "realtime", "live"}),
    "reporting": frozenset({"base", "identity", "realtime", "live", "shop"}),
    "livecart": frozenset({"base", "identity", "realtime", "live", "shop", "reporting"}),
}
OURS = frozenset(LAYERS)


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for every absolute import in the file, wherever it stands (functions included)."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            yield node.lineno, "." * node.level + (node.module or "")


def package_graph() -> dict[str, dict[str, list[str]]]:
    """package -> imported package -> the places (file:line) that import it."""
    graph: dict[str, dict[str, list[str]]] = {name: {} for name in LAYERS}
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, module in imports_of(path):
                top = module.split(".")[0]
                if top in OURS and top != package:
                    graph[package].setdefault(top, []).append(f"{path.relative_to(ROOT)}:{line}")
    return graph


def test_every_package_is_known() -> None:
    """A new top-level package must be given its place in the layers."""
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "loadtests"}
    assert packages == set(LAYERS)


def test_no_relative_imports() -> None:
    """Relative imports would hide a crossing of layers from a reader (and from this test)."""
    relative = [
        f"{path.relative_to(ROOT)}:{line}"
        for package in LAYERS
        for path in (ROOT / package).rglob("*.py")
        for line, module in imports_of(path)
        if module.startswith(".")
    ]
    assert relative == []


@pytest.mark.parametrize("package", list(LAYERS))
def test_a_package_imports_only_the_layers_below_it(package: str) -> None:
    wrong = {
        imported: places
        for imported, places in package_graph()[package].items()
        if imported not in LAYERS[package]
    }
    assert wrong == {}, f"{package} may import only {sorted(LAYERS[package])}"


def test_nothing_imports_the_app_wiring() -> None:
    graph = package_graph()
    assert {p: g["livecart"] for p, g in graph.items() if "livecart" in g} == {}


def test_no_cycle_between_packages() -> None:
    graph = {p: set(g) for p, g in package_graph().items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph[start]:
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    assert [p for p in graph if reaches(p, p, {p})] == []


def test_the_rule_itself_is_acyclic_and_ordered() -> None:
    """Each layer may import only layers declared before it: the rule admits no cycle."""
    order = list(LAYERS)
    for i, package in enumerate(order):
        assert LAYERS[package] <= set(order[:i]), package
