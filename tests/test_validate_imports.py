"""The validation package's modules import one another one way only (no import cycle), read
from their source with ast, so a cycle hidden in a function body or under TYPE_CHECKING
counts too."""
from __future__ import annotations

import ast
from pathlib import Path

import ecomeasure.validate

PACKAGE = Path(ecomeasure.validate.__file__).parent


def local_imports(path: Path) -> set[str]:
    """The sibling modules (``from .x import ...``, ``from . import x``) a module imports,
    anywhere in its body."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
    return names


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, str] = {}  # "open" while on the path, "done" after

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt, path + [nxt])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_find_cycle_finds_a_cycle_and_only_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_local_imports_sees_lazy_and_type_checking_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .run import X\n"
                      "def f():\n    from .saved import load\nfrom .. import meter\nfrom . import plan\n")
    assert local_imports(module) == {"run", "saved", "plan"}


def test_the_validation_package_has_no_import_cycle():
    graph = {p.stem: local_imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert len(graph) > 5 and graph["analysis"], graph  # the package was found and read
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"
