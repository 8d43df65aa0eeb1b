"""The shape of the code: stage packages that import downwards only, no import circle (imports at module
level and inside functions both count: a function-level import hides a circle, it does not remove it),
and no file longer than MAX_LINES in harness/, suites/, adapters/ or app/, so that a reader can follow
the pipeline top to bottom, one concern per file.

The stages of harness/ (docs/architecture.md):

    contracts  harness/*.py (adapter, suite, registry, spec, config, metrics, errors, status, ...)
    records    harness/records/    the record layout, its check and schema, the store
    aggregate  harness/aggregate/  records -> tables and statistics (pure Python, no torch)
    pipeline   harness/pipeline/   one spec in, one record out (plan, load, attach, train, evaluate, collect)
    grid       harness/grid/       pending runs, executors, progress
    tuning     harness/tuning/     Optuna studies whose trials run through the grid
    papers     harness/papers/     the papers' tables and their reproduction
    cli        harness/cli/        the command line
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "harness"
MAX_LINES = 400
STAGES = ("records", "aggregate", "pipeline", "grid", "tuning", "papers", "cli")
ENTRIES = ("__init__", "__main__", "api")  # the package's front doors: they may import any stage

# what each stage may import besides itself; everything may import the contracts
ALLOWED = {
    "contracts": set(),
    "records": set(),
    "aggregate": {"records"},
    "pipeline": {"records"},
    "grid": {"records", "aggregate", "pipeline"},
    "tuning": {"records", "aggregate", "pipeline", "grid"},
    "papers": {"records", "aggregate", "pipeline", "grid"},
    "cli": set(STAGES),
    "entry": set(STAGES),
    "adapters": set(),
    "suites": set(),
    # the leaderboard app never imports torch or the runner; the papers' tables are plain data
    "app": {"records", "aggregate", "papers"},
}


def _module_name(path: Path) -> str:
    """``harness/pipeline/plan.py`` -> ``pipeline.plan``; ``harness/aggregate/__init__.py`` ->
    ``aggregate``; ``adapters/lora.py`` -> ``adapters.lora``; ``harness/errors.py`` -> ``errors``."""
    base = HARNESS if path.is_relative_to(HARNESS) else ROOT
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def stage(module: str) -> str:
    """The stage of a module named as _module_name names it."""
    head = module.split(".")[0]
    if head in STAGES or head in ("adapters", "suites", "app"):
        return head
    return "entry" if head in ENTRIES else "contracts"


def _sources(*folders: Path) -> list[Path]:
    return sorted(p for folder in folders for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _imported_harness_modules(path: Path, modules: set[str] | None = None) -> set[str]:
    """The harness modules a file imports anywhere in it (``from harness import x`` counts x when x is a
    module of the package, ``import harness.x.y`` counts x.y, ``from harness.x import y`` counts x.y when y
    is a module and x otherwise)."""
    modules = {_module_name(p) for p in _sources(HARNESS)} if modules is None else modules
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


def import_graph(*folders: Path) -> dict[str, set[str]]:
    """Module -> the harness modules it imports, for the files under folders (default: harness/)."""
    sources = _sources(*(folders or (HARNESS,)))
    modules = {_module_name(p) for p in _sources(HARNESS)}
    return {_module_name(p): _imported_harness_modules(p, modules) - {_module_name(p)} for p in sources}


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


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import that goes against the stage order, as 'a (stage) -> b (stage)'."""
    wrong = []
    for module, imported in sorted(graph.items()):
        own = stage(module)
        for target in sorted(imported):
            theirs = stage(target)
            if theirs not in (own, "contracts") and theirs not in ALLOWED[own]:
                wrong.append(f"{module} ({own}) -> {target} ({theirs})")
    return wrong


def test_the_cycle_finder_finds_a_circle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_function_level_imports(tmp_path: Path):
    source = ("def f():\n    from harness.pipeline.runner import execute_run\n    import harness.grid.run_grid\n"
              "    from harness import errors\n    from harness.pipeline import plan\n")
    (tmp_path / "x.py").write_text(source)
    assert _imported_harness_modules(tmp_path / "x.py") == {"pipeline.runner", "grid.run_grid", "errors", "pipeline.plan"}


def test_the_graph_walks_sub_packages(tmp_path: Path):
    source = "from harness.aggregate import frame\nfrom harness.aggregate.wide import wide_table\nimport harness.aggregate.stats\n"
    (tmp_path / "x.py").write_text(source)
    assert _imported_harness_modules(tmp_path / "x.py") == {"aggregate.frame", "aggregate.wide", "aggregate.stats"}
    assert {"aggregate", "aggregate.frame", "aggregate.report", "pipeline.runner", "errors"} <= set(import_graph())


def test_the_stage_rule_catches_an_upward_import():
    assert upward_imports({"pipeline.runner": {"grid.run_grid", "records.store", "errors"}}) == [
        "pipeline.runner (pipeline) -> grid.run_grid (grid)"]
    assert upward_imports({"adapters.lora": {"pipeline.measure"}}) == ["adapters.lora (adapters) -> pipeline.measure (pipeline)"]
    assert upward_imports({"errors": {"records.store"}}) == ["errors (contracts) -> records.store (records)"]
    assert upward_imports({"cli.run": {"grid.run_grid", "pipeline.plan"}, "app.views": {"aggregate.frame"}}) == []


def test_harness_modules_import_each_other_without_a_circle():
    graph = import_graph()
    assert {"pipeline.runner", "pipeline.plan", "pipeline.attach", "pipeline.train", "grid.run_grid"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "import circle among harness modules: " + " -> ".join(cycle or [])


def test_every_import_goes_down_the_stages():
    graph = import_graph(HARNESS, ROOT / "adapters", ROOT / "suites", ROOT / "app")
    assert {stage(m) for m in graph} >= {*STAGES, "contracts", "entry", "adapters", "suites", "app"}
    wrong = upward_imports(graph)
    assert not wrong, "imports against the stage order (tests/test_imports.py ALLOWED):\n" + "\n".join(wrong)


def test_the_pipeline_never_imports_the_grid_the_cli_or_the_papers():
    # the rule the issue names, spelt out (ALLOWED says the same)
    graph = import_graph(HARNESS / "pipeline")
    assert graph and not {stage(t) for imported in graph.values() for t in imported} & {"grid", "cli", "papers", "tuning"}


def test_no_file_is_longer_than_the_limit():
    too_long = {}
    for path in _sources(HARNESS, ROOT / "suites", ROOT / "adapters", ROOT / "app"):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            too_long[str(path.relative_to(ROOT))] = lines
    assert not too_long, f"files over {MAX_LINES} lines (split them by concern): {too_long}"


def test_the_pure_analysis_maths_does_not_reach_into_the_pipeline():
    # the SVD maths is imported by the run's collect step; the `analyze` command is its own module
    assert import_graph()["pipeline.analysis"] <= {"adapter", "errors"}
