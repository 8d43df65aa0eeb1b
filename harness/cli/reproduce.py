"""``harness reproduce``: list the paper tables, print a table's dry run (rows, planned runs, parameter
counts beside the paper's, the estimated time), or run its rows through the same grid as ``harness run``
(``cli_run.prepare_grid`` / ``launch_grid``: the same header, ETA, totals and exit code).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.papers.dry_run import dry_run_rows, format_dry_run
from harness.papers.reproduce import (
    all_specs,
    check_reachable,
    plan_table,
    select_rows,
)
from harness.papers.tables import TABLES, get_table, validate_tables
from harness.spec import RunSpec
from harness.untrusted import safe_print


def list_tables() -> str:
    lines = []
    for t in TABLES:
        runnable = sum(r.runnable for r in t.rows)
        lines.append(f"{t.name:<11} {t.paper}, {t.where}: {t.title} ({len(t.rows)} rows, {runnable} runnable)")
    return "\n".join(lines)


def cmd_reproduce(args: Any) -> int:
    """The ``reproduce`` subcommand (harness.cli.main parses the flags)."""
    import sys

    if args.no_progress:  # before transformers is imported: its loading bars read this once
        import os

        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    validate_tables()
    if args.list or not args.table:
        print(list_tables())
        return 0
    table = select_rows(get_table(args.table), getattr(args, "rows", None))
    preset = args.preset or "paper"
    auto_workers = args.workers == "auto"
    if auto_workers and args.executor != "local":
        raise HarnessError("--workers auto applies to --executor local")
    if args.dry_run:
        from harness.grid.run_grid import default_results_dir
        from harness.records.store import ResultStore

        store = ResultStore(Path(args.results_dir) if args.results_dir else default_results_dir())
        planned = plan_table(table, preset)  # once: the rows and the estimate both read it
        rows = dry_run_rows(table, preset, store, planned)
        if args.json:
            print(json.dumps(rows, indent=1))
            return 0
        safe_print(format_dry_run(table, rows, preset))
        safe_print(_estimate_line(planned, store, args))
        return 0
    from harness.cli.run import _check_writable, _cuda_available, launch_grid, prepare_grid, resolve_data
    from harness.grid.run_grid import default_results_dir
    from harness.pipeline.plan import check_against_shapes, preflight
    from harness.pipeline.runner import ExecutionOptions
    from harness.records.store import ResultStore

    planned = plan_table(table, preset, cuda_available=_cuda_available())
    if preset == "cpu":
        print(f"PRESET CPU: {table.name} runs on {', '.join(sorted({p.model for p in planned}))} with the cpu "
              f"budget, not on the paper's {', '.join(table.models)}", file=sys.stderr)
    else:
        check_reachable(planned)
    specs = _with_max_steps(all_specs(planned), args.max_steps)
    data = resolve_data(args.data_dir, preset)
    for spec in specs:
        from harness.registry import SUITES

        SUITES.get(spec.suite)().check_data(spec.task, data)
    check_against_shapes(specs)
    preflight(specs)
    store = ResultStore(Path(args.results_dir) if args.results_dir else default_results_dir())
    _check_writable(store.root)
    from harness.cli.run import checkpoint_options

    options = ExecutionOptions(device=args.device, data=data, progress=not args.no_progress,
                               **checkpoint_options(args, store.root))
    executor = _executor(args)
    executor, talk = prepare_grid(specs, store, options, executor, force=args.force, auto_workers=auto_workers)
    return launch_grid(specs, store, options, executor, talk, force=args.force)


def _with_max_steps(specs: list[RunSpec], max_steps: int | None) -> list[RunSpec]:
    if not max_steps:
        return specs
    from dataclasses import replace

    return [replace(s, train=s.train.with_overrides(max_steps=max_steps)) for s in specs]


def _executor(args: Any) -> Any:
    """The executor the flags name; ``--workers auto`` starts at 1 and ``prepare_grid`` resolves it."""
    from harness.grid.executors import ExecutorConfig

    workers = 1 if args.workers == "auto" else args.workers or 1
    return ExecutorConfig(kind=args.executor, workers=workers, address=args.address)


def _estimate_line(planned: list[Any], store: Any, args: Any) -> str:
    """The dry run's estimated time of the runs still to do, as ``run --dry-run`` prints it."""
    from harness.cli.run import prepare_grid
    from harness.pipeline.runner import ExecutionOptions

    specs = _with_max_steps(all_specs(planned), args.max_steps)
    options = ExecutionOptions(device=args.device, progress=False)
    _, talk = prepare_grid(specs, store, options, _executor(args), force=args.force,
                           auto_workers=args.workers == "auto")
    return talk.estimate_line
