"""``harness run``: flags -> a ``GridRequest`` -> planned, shape-checked specs -> the store checked ->
the plan (``--dry-run``) or the grid on its executor, with its header, estimate and totals.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.cli.config_file import _load_config_file
from harness.cli.parser import _int_flag, check_plausible
from harness.cli.run_options import (  # noqa: F401  (re-exported for callers of harness.cli.run)
    _resolve_precision,
    checkpoint_options,
    grid_request,
    resolved_settings,
    slurm_options,
    tuned_sections,
)
from harness.errors import HarnessError
from harness.untrusted import safe_print


@dataclasses.dataclass
class PlannedGrid:
    """What ``run`` (and ``tune``) planned from the flags, before anything trains."""

    specs: list[Any]
    counts: dict[tuple[str, str], int]
    store: Any
    options: Any
    executor: Any
    auto_workers: bool
    timings: dict[str, float]


def plan_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser, *, tuned_from: Path | None = None
                   ) -> PlannedGrid:
    """Flags -> a ``GridRequest`` -> planned, shape-checked specs, the store checked, the options."""
    import time

    t_cmd = time.perf_counter()
    if args.no_progress:  # before transformers is imported: its loading bars read this once
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    from harness.grid.executors import ExecutorConfig
    from harness.grid.run_grid import default_results_dir
    from harness.pipeline.plan import check_against_shapes, plan_grid, preflight
    from harness.pipeline.runner import ExecutionOptions, process_age_seconds
    from harness.records.store import ResultStore

    age = process_age_seconds()
    if args.config:
        _load_config_file(args.config, parser, args)
    if not args.suite:
        raise HarnessError("run: --suite is required (on the command line or as \"suite\" in --config); "
                           "`harness ls suites` lists them")
    check_plausible(args)
    from harness.grid.tracking import parse_report_to

    parse_report_to(getattr(args, "report_to", None))  # a tracker that is not installed: one line, before planning
    check_device(args.device)
    # validated before anything is planned; a config file gives strings, the command line ints
    auto_workers = str(args.workers).strip().lower() == "auto" if args.workers is not None else False
    args.workers = None if auto_workers else _int_flag(args.workers, "--workers")
    args.threads = _int_flag(args.threads, "--threads")
    executor = ExecutorConfig(kind=args.executor, workers=args.workers or 1, address=args.address,
                              slurm=slurm_options(args), shared_disk=not getattr(args, "no_shared_disk", False),
                              data_url=getattr(args, "ray_data_url", None),
                              runs_per_gpu=_int_flag(getattr(args, "runs_per_gpu", None), "--runs-per-gpu") or 1)
    if auto_workers and args.executor != "local":
        raise HarnessError("--workers auto applies to --executor local")
    if args.precision not in ("auto", "fp32", "bf16"):
        raise HarnessError(f"--precision must be auto, fp32 or bf16, got {args.precision!r}")
    t_imports = time.perf_counter()
    cuda = _cuda_available()
    preset = args.preset or ("paper" if cuda else "cpu")
    if not args.preset:
        print(f"preset: {preset} ({'GPU found' if cuda else 'no GPU: the embedded CPU default'})", file=sys.stderr)
    data = resolve_data(args.data_dir, preset)
    results_root = Path(args.results_dir) if args.results_dir else default_results_dir()
    if getattr(args, "tuned", False):
        tuned_from = results_root
        for name in ("lr", "head_lr"):
            if getattr(args, name, None) is not None:
                raise HarnessError(f"--tuned takes the learning rates from the tuning choices; drop --{name.replace('_', '-')}")
    request = grid_request(args, preset, cuda, tuned_from=tuned_from)
    t_plan = time.perf_counter()
    specs = plan_grid(request, cuda_available=cuda, data=data)
    t_shapes = time.perf_counter()
    counts = check_against_shapes(specs)
    t_preflight = time.perf_counter()
    preflight(specs)
    store = ResultStore(results_root)
    _check_writable(store.root)
    _check_store(store, specs)
    print(f"data: {data.root if data.offline else 'Hugging Face hub'}; results: {store.root}", file=sys.stderr)
    options = ExecutionOptions(device=args.device, data=data, save_adapters=args.save_adapters,
                               progress=not args.no_progress, threads=args.threads, cache=not args.no_cache,
                               runs_per_gpu=executor.runs_per_gpu, **checkpoint_options(args, store.root))
    if tuned_from is not None:
        options = dataclasses.replace(options, tuning_sections=tuned_sections(specs, tuned_from))
    timings = {"process_start_to_command": age, "harness_imports": t_imports - t_cmd,
               "torch_import_and_device_check": t_plan - t_imports, "planning": t_shapes - t_plan,
               "shape_checks_with_transformers_import": t_preflight - t_shapes, "t_preflight": t_preflight}
    return PlannedGrid(specs, counts, store, options, executor, auto_workers, timings)


def cmd_run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import time

    from harness.grid.tracking import parse_report_to
    from harness.pipeline.runner import note_startup

    report_to = parse_report_to(getattr(args, "report_to", None))  # a tracker not installed: one line, first
    planned = plan_from_args(args, parser)
    executor, talk = prepare_grid(planned.specs, planned.store, planned.options, planned.executor,
                                  force=args.force, auto_workers=planned.auto_workers)
    if args.dry_run:
        safe_print(_plan_table(planned.specs, planned.counts, planned.store, args.force))
        safe_print(resolved_settings(planned.specs))
        safe_print(talk.estimate_line)
        if executor.kind == "slurm":
            from harness.grid.executor_slurm import SLURM_DIR, sbatch_preview

            pending = _pending_specs(planned.specs, planned.store, args.force)
            print("the job array's sbatch script (submitit writes and submits it):")
            print(sbatch_preview(executor.slurm, planned.options, planned.store.root.resolve() / SLURM_DIR,
                                 max(1, len(pending))))
        return 0
    # named by what each span does; the heavy imports happen where they are first needed: torch at the
    # device check, transformers at the first shape check
    timings = dict(planned.timings)
    t_preflight = timings.pop("t_preflight")
    note_startup(**timings, preflight_store_scan_and_estimate=time.perf_counter() - t_preflight)
    return launch_grid(planned.specs, planned.store, planned.options, executor, talk, force=args.force,
                       report_to=report_to)


def prepare_grid(specs: list[Any], store: Any, options: Any, executor: Any, *, force: bool,
                 auto_workers: bool = False) -> tuple[Any, _GridTalk]:
    """The executor (``--workers auto`` resolved against the runs still to do) and what the grid says:
    its header, estimated time and ``[i/N] ... | ETA`` reporter. Every command that runs a grid (``run``,
    ``reproduce``) goes through here and ``launch_grid``, so that they talk and exit alike."""
    pending = _pending_specs(specs, store, force)
    if getattr(executor, "runs_per_gpu", 1) > 1:
        from harness.grid.executors import check_gpu_packing

        problem = check_gpu_packing(executor.runs_per_gpu, store.root, pending)
        if problem:
            raise HarnessError(problem)
    if auto_workers:
        from harness.grid.executors import ExecutorConfig, auto_worker_count

        workers, why = auto_worker_count(len(pending), options)
        executor = ExecutorConfig(kind="local", workers=workers, runs_per_gpu=executor.runs_per_gpu)
        print(f"--workers auto: {workers} ({why})", file=sys.stderr)
    return executor, _grid_talk(specs, pending, store, options, executor)


def launch_grid(specs: list[Any], store: Any, options: Any, executor: Any, talk: _GridTalk, *,
                force: bool, report_to: tuple[str, ...] = ()) -> int:
    """Header, estimate, the runs (each reported as it finishes), the totals line; the exit code:
    1 when any run of this invocation is not done (failed, cancelled, lost) or its record unsaved."""
    from harness.grid.executors import run_with_executor

    safe_print(talk.header, flush=True)
    safe_print(talk.estimate_line, flush=True)
    on_result = talk.on_result
    if report_to:  # each finished run's record to the trackers (harness.grid.tracking)
        from harness.grid.tracking import log_record_file

        def on_result(result: Any) -> None:
            talk.on_result(result)
            if not result.unsaved:
                log_record_file(result.path, report_to, store.root, warn=lambda line: safe_print(line, file=sys.stderr))

    outcome = run_with_executor(executor, specs, store, options, force=force,
                                echo=lambda line: safe_print(line, flush=True), on_result=on_result)
    safe_print(outcome.totals_line())
    return outcome.exit_code


def _pending_specs(specs: list[Any], store: Any, force: bool) -> list[Any]:
    from harness.grid.run_grid import iter_pending

    return [spec for spec, complete in iter_pending(specs, store, force) if not complete]


@dataclasses.dataclass
class _GridTalk:
    header: str
    estimate_line: str
    on_result: Callable[[Any], None]


def _grid_talk(specs: list[Any], pending: list[Any], store: Any, options: Any, executor: Any) -> _GridTalk:
    """The header, the grid's estimated time, and the ``[i/N] ... | ETA`` reporter of finished runs."""
    from harness.grid import progress
    from harness.grid.executors import layout_line

    layout = layout_line(executor, options)
    header = progress.grid_header(specs, len(specs) - len(pending), device=layout.device, layout=layout.text)
    references = progress.reference_records(store.root)
    estimator = progress.Estimator.from_records(references, _machine_probe(pending, references, layout))
    estimate = progress.estimate_grid(pending, estimator, layout.threads)
    tracker = progress.GridProgress([s.run_id for s in pending], estimate.per_run, parallel=layout.parallel,
                                    echo=lambda line: safe_print(line, flush=True))
    return _GridTalk(header, estimate.line(layout.parallel),
                     lambda result: tracker.finished(result.run_id, result.summary, result.path))


def _machine_probe(pending: list[Any], references: list[dict[str, Any]], layout: Any) -> dict[str, Any] | None:
    """This machine's speed probe at the grid's threads per run, taken (about 5 s) only when there
    are CPU runs to estimate and some reference record has a probe to compare it with. The runs of
    this process reuse it for their records."""
    from harness import speed_probe

    if not pending or layout.threads is None or str(layout.device).startswith("cuda"):
        return None
    if not any(speed_probe.seconds_per_step((r.get("environment") or {}).get("speed_probe")) for r in references):
        return None
    return speed_probe.measure(layout.threads)


def resolve_data(arg: str | None, preset: str) -> Any:
    """--data-dir > HARNESS_DATA_DIR > a local root (./data, ../shared/data) for the cpu preset or when
    the hub is off > the hub."""
    from harness.models import hub_offline
    from harness.suite import DataSource

    chosen = arg or os.environ.get("HARNESS_DATA_DIR")
    if chosen:
        root = Path(chosen).expanduser()
        if not root.is_dir():
            raise HarnessError(
                f"data folder {root} does not exist; point --data-dir at a root laid out like ../shared/data "
                "(glue/, mmlu/, ...) or leave it out to load from the hub"
            )
        return DataSource(root.resolve())
    if preset == "cpu" or hub_offline():
        for candidate in (Path("data"), Path("..") / "shared" / "data"):
            if candidate.is_dir():
                return DataSource(candidate.resolve())
    return DataSource(None)


def _check_writable(root: Path) -> None:
    """Probe by writing, not with os.access: root passes every permission check, and a read-only
    mount or a path under a regular file fails only when written to. Nothing is created but a probe
    file in the nearest existing folder, removed at once."""
    import tempfile

    from harness.errors import short_path

    probe_dir = root
    try:
        while not probe_dir.exists() and probe_dir != probe_dir.parent:
            probe_dir = probe_dir.parent
    except OSError as exc:  # a name too long, a folder that cannot be searched
        raise HarnessError(f"results folder {short_path(root)} cannot be used ({exc.strerror or exc})") from None
    if not probe_dir.is_dir():
        raise HarnessError(f"results folder {root} is not writable ({probe_dir} is not a folder)")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=probe_dir)
    except OSError as exc:
        raise HarnessError(f"results folder {root} is not writable (cannot create a file in {probe_dir}: "
                           f"{exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


def check_device(text: str) -> None:
    """--device: auto, cpu, cuda or cuda:N, and a CUDA device that exists; before anything loads."""
    import re

    if not isinstance(text, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", text):
        raise HarnessError(f"--device must be auto, cpu, cuda or cuda:N, got {text!r}")
    if text.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise HarnessError(f"--device {text} was requested but no CUDA device is available (use cpu or auto)")
        index = int(text.split(":")[1]) if ":" in text else 0
        if index >= torch.cuda.device_count():
            raise HarnessError(f"--device {text}: there are {torch.cuda.device_count()} CUDA device(s) (cuda:0 .. "
                               f"cuda:{torch.cuda.device_count() - 1})")


def _check_store(store: Any, specs: list[Any]) -> None:
    """Before any training: every planned record path must be writable (one error line if not), and
    records of a newer schema are named (a grid skips them, never overwrites them)."""

    keys = [spec.key for spec in specs]
    problems = store.write_blockers(keys)
    if problems:
        more = f" (and {len(problems) - 1} more such paths)" if len(problems) > 1 else ""
        raise HarnessError(f"the result store cannot take this grid's records: {problems[0]}{more}")
    for path in store.newer_records(keys):
        safe_print(f"warning: {path} holds a record of a newer schema version: kept, that run is skipped "
              "(use another --results-dir to run it with this version)", file=sys.stderr)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def plan_state(status: str | None, force: bool) -> str:
    """What the next invocation does with a run, given its recorded status (None: no record)."""
    from harness.records.store import NEWER_SCHEMA
    from harness.status import DONE_STATUSES

    if status is None:
        return "pending"
    if status == NEWER_SCHEMA:
        return "newer schema version (kept, skip)"
    if status in DONE_STATUSES:
        return f"done: {status} (will rerun: --force)" if force else f"done: {status} (skip)"
    return f"{status} (will rerun)"


def _plan_table(specs: list[Any], counts: dict[tuple[str, str], int], store: Any, force: bool) -> str:
    from harness.status import DONE_STATUSES

    lines = [f"{len(specs)} runs planned"]
    header = f"{'suite':<10} {'task':<8} {'adapter':<10} {'seed':>5} {'params':>12}  {'config':<12} state"
    lines.append(header)
    done = rerun = 0
    for spec in specs:
        status = store.status(spec.key)
        done += status in DONE_STATUSES
        rerun += status is not None and status not in DONE_STATUSES
        n = counts.get((spec.adapter, spec.config_hash))
        lines.append(f"{spec.suite:<10} {spec.task:<8} {spec.adapter:<10} {spec.seed:>5} "
                     f"{(f'{n:,}' if n is not None else '?'):>12}  {spec.config_hash:<12} {plan_state(status, force)}")
    to_run = len(specs) if force else len(specs) - done
    lines.append(f"{done} already done, {to_run} to run"
                 + (f" ({rerun} failed or cancelled, rerun)" if rerun else "")
                 + (" (--force reruns all)" if force else ""))
    return "\n".join(lines)
