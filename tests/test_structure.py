"""Checks of the code's shape, read from the source: no import circle between the modules of
app/, no function longer than 60 lines, and a docstring on every module and package."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "workers")
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(*packages: str) -> dict[str, ast.Module]:
    """Every module of the packages by dotted name, parsed."""
    return {
        module_name(path): ast.parse(path.read_text(), filename=str(path))
        for package in packages
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def imported_names(name: str, tree: ast.Module, is_package: bool) -> Iterator[str]:
    """Every module name an import statement anywhere in the module names: top-level, in a
    function, or under TYPE_CHECKING (an arrow of the design even when it is not run)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".")
                anchor = package[: len(package) - node.level + is_package]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            # `from package import module` imports the module itself.
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    """The arrows between app modules: each module to the app modules it imports."""
    trees = modules("app")
    return {
        name: {
            target
            for target in imported_names(name, tree, is_package=_is_package(name))
            if target in trees and target != name
        }
        for name, tree in trees.items()
    }


def _is_package(name: str) -> bool:
    return (ROOT / name.replace(".", "/") / "__init__.py").exists()


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle through each strongly connected group of modules (Tarjan), as a path that
    ends where it starts."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group: set[str] = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_circle_within(graph, group) for group in groups]


def _circle_within(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """The shortest path from the group's first module back to itself, inside the group."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & group):
                if target == start:
                    return [*paths[node], start]
                if target not in paths:
                    paths[target] = [*paths[node], target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"{sorted(group)} is strongly connected but has no circle")


def test_no_import_circle_between_app_modules() -> None:
    found = cycles(import_graph())
    assert not found, "import circles:\n" + "\n".join(" -> ".join(path) for path in found)


def test_the_circle_finder_names_a_circle_and_passes_a_tree() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_no_function_longer_than_60_lines() -> None:
    too_long = sorted(
        (node.end_lineno - node.lineno + 1, f"{name}.{node.name} (line {node.lineno})")
        for name, tree in modules(*PACKAGES).items()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    )
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(
        f"{lines:4} {where}" for lines, where in reversed(too_long)
    )


def test_every_module_and_package_says_what_it_owns() -> None:
    undocumented = [
        name
        for name, tree in modules(*PACKAGES).items()
        if not (ast.get_docstring(tree) or "").strip()
    ]
    assert not undocumented, "modules without a docstring:\n" + "\n".join(undocumented)
