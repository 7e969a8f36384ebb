"""The import graph of `exporter` (docs/architecture.md, "Who owns what"): no cycle between
modules, none between packages (rules/, serve/, web/, ... and the top-level modules, each a node
of its own), and no module imports another's `_private` names. Imports inside functions count;
those under `if TYPE_CHECKING:` do not (they never run)."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "exporter"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(module: str) -> str:
    """`exporter.serve.snapshot` → `exporter.serve`; `exporter.readings` → itself."""
    return ".".join(module.split(".")[:2])


def type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes under `if TYPE_CHECKING:`."""
    hidden = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            hidden |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return hidden


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names imported from it) of every run-time import of an exporter module."""
    tree = ast.parse(path.read_text(), str(path))
    hidden = type_checking_only(tree)
    out = []
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.split(".")[0] == "exporter"
        ):
            assert node.level == 0, f"{path}: relative import"
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.split(".")[0] == "exporter"]
    return out


def graph(node_of) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        src = node_of(module_name(path))
        targets = edges.setdefault(src, set())
        targets |= {node_of(m) for m, _ in imports(path)} - {src}
    return edges


def cycle(edges: dict[str, set[str]]) -> list[str]:
    try:
        tuple(TopologicalSorter(edges).static_order())
    except CycleError as e:
        return e.args[1]
    return []


def test_the_graph_is_read_at_all():
    edges = graph(package_of)
    assert {"exporter.serve", "exporter.web", "exporter.cli", "exporter.rules"} <= set(edges)
    assert "exporter.path" in edges["exporter.serve"]


@pytest.mark.parametrize(("level", "node_of"), [("module", lambda m: m), ("package", package_of)])
def test_no_import_cycle(level, node_of):
    found = cycle(graph(node_of))
    assert not found, f"{level} import cycle: {' -> '.join(found)}"


def test_a_cycle_is_found_when_there_is_one():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert cycle({"a": {"b"}, "b": set()}) == []


def test_type_checking_imports_are_left_out():
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import exporter.x\n")
    assert len(type_checking_only(tree)) >= 2


def test_no_module_imports_another_modules_private_names():
    private = [
        f"{module_name(path)}: {name} from {module}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for module, names in imports(path)
        for name in names
        if name.startswith("_") and not name.startswith("__") and module != module_name(path)
    ]
    assert not private
