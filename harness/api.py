"""The harness from Python (a notebook): plan and run a grid, get its records as a pandas DataFrame.

    from harness import run_grid_api
    frame = run_grid_api("glue", adapters="lora,head", tasks="rte", preset="cpu", data_dir="../shared/data",
                         max_steps=20)
    frame[["task", "adapter", "seed", "score", "params_adapter", "train_seconds", "store"]]

Every keyword is the ``harness run`` flag of the same name (``max_train_samples`` is
``--max-train-samples``; ``opt`` and ``suite_opt`` take a dict or a list of ``KEY=VALUE``; lists may be
Python lists). The grid runs exactly as ``harness run`` runs it (same plan, checks, records, resume:
finished runs are read back, not rerun, unless ``force=True``). One row per planned run (of a run that
did not finish: its status and error). Bad input raises ``harness.errors.HarnessError`` before anything
loads; a grid with failed runs returns them (``status`` column) rather than raising.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

from harness.errors import HarnessError


def _argv(suite: str, kwargs: dict[str, Any]) -> list[str]:
    argv = ["run", "--suite", suite]
    for key, value in kwargs.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif key in ("opt", "suite_opt"):
            items = [f"{k}={v}" for k, v in value.items()] if isinstance(value, dict) else list(value)
            for item in items:
                argv += [flag, str(item)]
        elif isinstance(value, (list, tuple)):
            argv += [flag, ",".join(str(v) for v in value)]
        else:
            argv += [flag, str(value)]
    return argv


def run_grid_api(suite: str, *, quiet: bool = True, **kwargs: Any) -> Any:
    """Run the grid ``harness run --suite SUITE **kwargs`` describes; its records as a DataFrame (the
    columns of ``harness.aggregate.load_frame`` plus ``store``). ``dry_run=True`` plans only: one row per
    planned run with its state. ``quiet`` keeps the per-run lines off stdout (errors still raise)."""
    import pandas as pd

    from harness import aggregate
    from harness.cli.main import main
    from harness.cli.parser import build_parser
    from harness.cli.run import _cuda_available, grid_request, resolve_data
    from harness.grid.run_grid import default_results_dir
    from harness.pipeline.plan import plan_grid
    from harness.records.store import ResultStore
    from harness.records.stores import add_source, record_sources, source_name

    kwargs.setdefault("no_progress", quiet)
    argv = _argv(suite, kwargs)
    args = build_parser().parse_args(argv)
    err = io.StringIO()
    out = io.StringIO() if quiet else None
    with contextlib.redirect_stderr(err), (contextlib.redirect_stdout(out) if out else contextlib.nullcontext()):
        code = main(argv)
    if code == 2:
        lines = [line for line in err.getvalue().splitlines() if line.startswith("error:")]
        raise HarnessError(lines[-1][len("error: "):] if lines else err.getvalue().strip())
    if code not in (0, 1):
        raise KeyboardInterrupt(f"harness run exited {code}")
    cuda = _cuda_available()
    preset = args.preset or ("paper" if cuda else "cpu")
    specs = plan_grid(grid_request(args, preset, cuda), cuda_available=cuda, data=resolve_data(args.data_dir, preset))
    store = ResultStore(args.results_dir or default_results_dir())
    if args.dry_run:
        from harness.cli.run import plan_state

        return pd.DataFrame([{"suite": s.suite, "task": s.task, "adapter": s.adapter, "seed": s.seed,
                              "config_hash": s.config_hash, "options": dict(s.adapter_options),
                              "state": plan_state(store.status(s.key), bool(args.force))} for s in specs])
    records = [r for r in (store.get(s.key) for s in specs) if r is not None]
    frame = aggregate.load_frame(records)
    return add_source(frame, record_sources([(source_name(store.root), records)])).reset_index(drop=True)
