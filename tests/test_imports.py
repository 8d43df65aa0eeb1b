"""The shape of harness/: no import circle among its modules (imports at module level and inside
functions both count: a function-level import hides a circle, it does not remove it) and no module
longer than MAX_LINES, so that a reader can follow the pipeline top to bottom, one concern per file."""

from __future__ import annotations

import ast
from pathlib import Path

HARNESS = Path(__file__).resolve().parents[1] / "harness"
MAX_LINES = 400


def _module_name(path: Path) -> str:
    """``harness/plan.py`` -> ``plan``; ``harness/aggregate/__init__.py`` -> ``aggregate``;
    ``harness/aggregate/frame.py`` -> ``aggregate.frame`` (sub-packages are walked like top-level modules)."""
    parts = list(path.relative_to(HARNESS).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> list[Path]:
    return sorted(p for p in HARNESS.rglob("*.py") if p != HARNESS / "__init__.py")


def _imported_harness_modules(path: Path, modules: set[str] | None = None) -> set[str]:
    """The harness modules a file imports anywhere in it (``from harness import x`` counts x when x is a
    module of the package, ``import harness.x.y`` counts x.y, ``from harness.x import y`` counts x.y when y
    is a module and x otherwise)."""
    modules = {_module_name(p) for p in _sources()} if modules is None else modules
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "harness" and len(parts) > 1:
                    found.add(".".join(parts[1:]))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] != "harness":
                continue
            prefix = ".".join(parts[1:])
            for alias in node.names:
                child = f"{prefix}.{alias.name}" if prefix else alias.name
                if child in modules:
                    found.add(child)
                elif prefix:
                    found.add(prefix)
    return found & modules


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p) for p in _sources()}
    graph = {}
    for path in _sources():
        name = _module_name(path)
        graph[name] = _imported_harness_modules(path, modules) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None (depth-first search with colours)."""
    colour = dict.fromkeys(graph, 0)  # 0 unvisited, 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if colour.get(nxt) == 0:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        colour[node] = 2
        return None

    for start in sorted(graph):
        if colour[start] == 0:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_a_circle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_function_level_imports(tmp_path: Path):
    source = ("def f():\n    from harness.runner import execute_run\n    import harness.grid\n"
              "    from harness import plan\n")
    (tmp_path / "x.py").write_text(source)
    assert _imported_harness_modules(tmp_path / "x.py") == {"runner", "grid", "plan"}


def test_the_graph_walks_sub_packages(tmp_path: Path):
    source = "from harness.aggregate import frame\nfrom harness.aggregate.wide import wide_table\nimport harness.stats\n"
    (tmp_path / "x.py").write_text(source)
    assert _imported_harness_modules(tmp_path / "x.py") == {"aggregate.frame", "aggregate.wide", "stats"}
    assert {"aggregate", "aggregate.frame", "aggregate.report"} <= set(import_graph())


def test_harness_modules_import_each_other_without_a_circle():
    graph = import_graph()
    assert {"runner", "plan", "attach", "train", "grid"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "import circle among harness modules: " + " -> ".join(cycle or [])


def test_no_harness_module_is_longer_than_the_limit():
    too_long = {}
    for path in _sources():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            too_long[str(path.relative_to(HARNESS))] = lines
    assert not too_long, f"harness modules over {MAX_LINES} lines (split them by concern): {too_long}"


def test_the_pure_analysis_maths_does_not_reach_into_the_pipeline():
    # the SVD maths is imported by the run's collect step; the `analyze` command is its own module
    assert import_graph()["analysis"] <= {"adapter", "errors"}
