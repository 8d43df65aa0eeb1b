"""Command line: ``python -m harness run|ls|params|report|analyze``.

Every user error (unknown name, bad option, missing data) is one line on stderr and exit code 2,
raised before any model is loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.spec import train_override_flags

EXIT_USAGE = 2
# TrainConfig fields a `run` flag can override (--max-train-samples -> max_train_samples), with the flag's
# help: declared on the fields themselves (harness.spec, metadata ``cli``)
TRAIN_HELP = train_override_flags()
TRAIN_OVERRIDES = tuple(TRAIN_HELP)


def _seeds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise HarnessError(f"--seeds takes comma-separated non-negative integers, got {text!r}") from None


def _positive_int(name: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise HarnessError(f"{name} must be a positive integer, got {text!r}") from None
        if value < 1:
            raise HarnessError(f"{name} must be a positive integer, got {text!r}")
        return value

    return parse


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse prints usage and exits 2; keep it one line
        raise HarnessError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="harness", description="PEFT benchmark harness")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run suites x tasks x adapters x seeds, one record per run",
                         description=RUN_DESCRIPTION, epilog=RUN_EXAMPLES,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_run_arguments(run)

    ls = sub.add_parser("ls", help="list adapters, suites, models or presets")
    ls.add_argument("what", choices=["adapters", "suites", "models", "presets"])

    params = sub.add_parser("params", help="trainable parameters per adapter, counted on the meta device")
    params.add_argument("--model", default="roberta-base")
    params.add_argument("--adapters", default="all")
    params.add_argument("--suite", default=None, help="count with this suite's head (default: by model family)")
    params.add_argument("--json", action="store_true")
    _adapter_flags(params)

    report = sub.add_parser("report", help="ranked tables with confidence intervals (CSV, Markdown, LaTeX)")
    report.add_argument("--results-dir", help="the result store to read (default: results/)")
    report.add_argument("--out", help="write <suite>.csv, <suite>-limited.csv, <suite>-vs-<baseline>.csv, "
                                      "<suite>.md, <suite>.tex and leaderboard.md here (atomically)")
    report.add_argument("--suite", help="only this suite")
    report.add_argument("--baseline", default="lora", help="adapter every configuration is compared with")
    report.add_argument("--format", default="csv,md,latex", help="comma list of csv, md, latex")

    _reproduce_parser(sub)

    analyze = sub.add_parser("analyze", help="SVD analyses across runs (subspace similarity)")
    analyze.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _reproduce_parser(sub: Any) -> None:
    rep = sub.add_parser("reproduce", help="plan or run a paper table's rows (harness.paper_tables)")
    rep.add_argument("table", nargs="?", help="table name (reproduce --list)")
    rep.add_argument("--list", action="store_true", help="list the tables")
    rep.add_argument("--row", dest="rows", action="append", metavar="ROW",
                     help="only this row (repeatable): its name as --dry-run prints it")
    rep.add_argument("--dry-run", action="store_true", help="rows, planned runs, parameter counts vs the paper's")
    rep.add_argument("--json", action="store_true", help="with --dry-run: one JSON object per row")
    rep.add_argument("--preset", choices=["paper", "cpu"], help="paper (default) or cpu: the suite's embedded model")
    rep.add_argument("--data-dir", help="local data root laid out like ../shared/data (env HARNESS_DATA_DIR)")
    rep.add_argument("--results-dir", help="result store (default: results/, env HARNESS_RESULTS_DIR)")
    rep.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    rep.add_argument("--force", action="store_true", help="rerun runs that already have a record")
    rep.add_argument("--max-steps", type=_positive_int("--max-steps"), help="smoke runs: stop each run after N steps")
    rep.add_argument("--executor", default="local", help="local (default) or ray")
    rep.add_argument("--workers", type=_positive_int("--workers"), help="parallel runs (executor workers)")
    rep.add_argument("--address", help="ray executor: 'auto' or ray://host:10001")
    rep.add_argument("--no-progress", action="store_true", help="no progress bars")


def cmd_reproduce(args: argparse.Namespace) -> int:
    from harness.reproduce import cmd_reproduce as run_reproduce

    return run_reproduce(args)


def _adapter_flags(p: Any) -> None:
    p.add_argument("--rank", type=str, help="rank r of low-rank adapters (the others ignore it)")
    p.add_argument("--alpha", type=str, help="scaling alpha of low-rank adapters (default: equal to the rank)")
    p.add_argument("--targets", help="module names inside the blocks (query,value), all-linear, or a role: "
                   "attention-qv, attention-qk, attention-kv, attention-qkv, attention-ffn (harness.targets)")
    p.add_argument("--opt", action="append", default=[], metavar="[ADAPTER.]KEY=VALUE",
                   help="adapter option, repeatable: KEY=VALUE goes to every selected adapter that has KEY "
                        "(an error if none has it), ADAPTER.KEY=VALUE to that adapter only "
                        "(see `harness ls adapters` for the options and defaults)")


RUN_DESCRIPTION = """Run a grid: every suite task x adapter x seed is one run and one JSON record in the results
folder. Finished runs are skipped, so rerunning the same command resumes an interrupted grid."""
RUN_EXAMPLES = """examples:
  # the main job: every adapter on the six GLUE tasks, CPU preset, offline (prints the plan's ETA first)
  python -m harness run --suite glue --adapters all --preset cpu --data-dir ../shared/data --dry-run
  # two adapters, one task, a 30-step smoke run, SeRA's split only for SeRA
  python -m harness run --suite glue --tasks rte --adapters lora,sera --opt sera.split=8 --max-steps 30

`harness ls adapters|suites|models|presets` lists what exists, with options, defaults and budgets."""


def _suite_help() -> str:
    try:
        from harness.registry import SUITES

        return ", ".join(SUITES.names())
    except Exception as exc:  # the help must print even when a plug-in fails to import
        return f"(could not list them: {type(exc).__name__})"


class _SuiteHelp(str):
    """A help string that lists the suites when argparse formats it, not when the parser is built."""

    def __mod__(self, params: Any) -> str:
        return str.__mod__(f"the suite to run, one of: {_suite_help()}", params)


def _add_run_arguments(run: argparse.ArgumentParser) -> None:
    what = run.add_argument_group("what to run")
    what.add_argument("--suite", required=True, help=_SuiteHelp("the suite to run"))
    what.add_argument("--tasks", help="comma list, or 'all' (default: the preset's tasks whose data is present)")
    what.add_argument("--adapters", default="all", help="comma list or 'all' (default: all that apply to the suite)")
    what.add_argument("--seeds", type=str, help="comma list of seeds (default: the preset's)")
    what.add_argument("--preset", help="paper or cpu: model, seeds and budgets (default: paper with a GPU, cpu without; "
                                       "see `harness ls presets`)")
    what.add_argument("--data-dir", help="local data root laid out like ../shared/data (env HARNESS_DATA_DIR)")
    what.add_argument("--config", help="JSON file with any of these options (keys as flag names); flags win")
    what.add_argument("--dry-run", action="store_true",
                      help="print the plan (runs, parameter counts, done or not) and its estimated time, run nothing")

    model = run.add_argument_group("model and adapter")
    model.add_argument("--model", help="catalogue name, hub id or local folder (default: the preset's; "
                                       "see `harness ls models`)")
    _adapter_flags(model)
    model.add_argument("--suite-opt", action="append", default=[], metavar="KEY=VALUE",
                       help="suite-specific option, repeatable (e.g. allow_code_execution=true for INSTRUCTEVAL)")

    training = run.add_argument_group("training (each overrides the preset's budget)")
    for name in TRAIN_OVERRIDES:
        training.add_argument("--" + name.replace("_", "-"), type=str, help=TRAIN_HELP.get(name, f"override {name}"))
    training.add_argument("--precision", default="fp32", choices=("auto", "fp32", "bf16"),
                          help="fp32 (default), bf16 autocast, or auto: bf16 on a GPU that supports it, else fp32; "
                               "recorded, and part of the config hash when not fp32")
    training.add_argument("--compile", action="store_true",
                          help="torch.compile the model after the adapter is applied (recorded; part of the hash)")

    grid = run.add_argument_group("grid and executors")
    grid.add_argument("--device", default="auto", help="auto (default: cuda when available), cpu, cuda or cuda:N")
    grid.add_argument("--executor", default="local", help="local (default) or ray")
    grid.add_argument("--workers", type=_workers_arg,
                      help="local executor: runs at once in worker processes (one per GPU; on CPU the cores split "
                           "evenly), or 'auto': the faster layout for this machine (see the README)")
    grid.add_argument("--threads", type=_positive_int("--threads"), help="torch CPU threads per run")
    grid.add_argument("--address", help="ray executor: 'auto' or ray://host:10001 for an existing cluster "
                                        "(default: a local Ray instance for this grid)")
    grid.add_argument("--no-cache", action="store_true",
                      help="load the model and tokenize the data again for every run (default: shared within a process)")
    grid.add_argument("--force", action="store_true", help="rerun runs that already have a record")

    out = run.add_argument_group("output")
    out.add_argument("--results-dir", help="result store (default: results/, env HARNESS_RESULTS_DIR)")
    out.add_argument("--save-adapters", action="store_true", help="keep each run's adapter tensors next to its record")
    out.add_argument("--no-progress", action="store_true",
                     help="no progress bars (training, evaluation, model loading); the per-run lines stay")


def _workers_arg(text: str) -> int | str:
    if str(text).strip().lower() == "auto":
        return "auto"
    return _positive_int("--workers")(text)


def _int_flag(value: int | str | None, name: str) -> int | None:
    return value if value is None or isinstance(value, int) else _positive_int(name)(value)


def _rank(text: str | None) -> int | None:
    if text is None:
        return None
    return _positive_int("--rank")(text)


def _alpha(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise HarnessError(f"--alpha must be a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:  # nan <= 0 is False
        raise HarnessError(f"--alpha must be a positive number, got {text!r}")
    return value


# ------------------------------------------------------------------------------------------------------


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


def _load_config_file(path: str, parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    try:
        raw = Path(path).read_bytes()
        data = json.loads(raw.decode("utf-8-sig"))
    except OSError as exc:
        raise HarnessError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise HarnessError(f"cannot read config file {path}: not UTF-8 text (a JSON object is expected)") from None
    except json.JSONDecodeError as exc:
        raise HarnessError(f"cannot read config file {path}: {exc}") from None
    except RecursionError:
        raise HarnessError(f"cannot read config file {path}: JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise HarnessError(f"config file {path} must hold a JSON object")
    run_parser = parser._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    actions = {a.dest: a for a in run_parser._actions}
    known = set(actions)
    for key, value in data.items():
        dest = key.replace("-", "_")
        if dest not in known or dest in ("config", "help"):
            from harness.errors import closest

            hint = closest(dest, known)
            raise HarnessError(f"unknown key '{key}' in config file {path}" + (f"; did you mean '{hint}'?" if hint else ""))
        value = _config_value(dest, value, actions[dest], lambda want, k=key, v=value: HarnessError(
            f"config file {path}: key '{k}' must be {want}, got {json.dumps(v)[:80]}"))
        if value is None:  # null: as if the key were absent
            continue
        current = getattr(args, dest)
        if current == run_parser.get_default(dest):  # the command line wins over the file
            setattr(args, dest, value)


# keys of a config file by the JSON type they take (the rest of the run flags take a string)
_CONFIG_INT_KEYS = ("rank", "threads", "workers")
_CONFIG_LIST_KEYS = ("tasks", "adapters", "targets", "seeds")  # a string (comma list) or a JSON list


def _config_value(dest: str, value: Any, action: argparse.Action, bad: Callable[[str], HarnessError]) -> Any:
    """A config-file value checked against its JSON type and given as the command line would give it
    (a string; a bool for switches; a list for --opt/--suite-opt). A JSON true is never the string
    "false": switches take JSON booleans only, numbers take JSON numbers (or their text)."""
    from harness.config import field_types
    from harness.spec import TrainConfig

    if value is None:
        return None
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise bad("true or false (a JSON boolean)")
        return value
    if dest in ("opt", "suite_opt"):
        if isinstance(value, dict):  # {"split": 4} -> ["split=4"]
            items = []
            for k, v in value.items():
                if not _scalar(v):
                    raise bad("an object of KEY: scalar values or a list of \"KEY=VALUE\" strings")
                items.append(f"{k}={_text(v)}")
            return items
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise bad("a list of \"KEY=VALUE\" strings or an object")
    if dest in _CONFIG_LIST_KEYS:
        item_ok = (lambda v: isinstance(v, int) and not isinstance(v, bool)) if dest == "seeds" else (
            lambda v: isinstance(v, str))
        if isinstance(value, list):
            if not value or not all(item_ok(v) for v in value):
                raise bad("a non-empty list of " + ("integers" if dest == "seeds" else "strings") + " or a comma list")
            return ",".join(str(v) for v in value)
        if isinstance(value, str) or (dest == "seeds" and item_ok(value)):
            return str(value)
        raise bad("a comma-list string or a JSON list")
    train_types = field_types(TrainConfig)
    if dest in _CONFIG_INT_KEYS or (dest in train_types and "int" in str(train_types[dest])):
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, str):  # the command line's text, checked where the flag's text is
            return value
        raise bad("an integer")
    if dest == "alpha" or dest in train_types:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return repr(float(value)) if isinstance(value, float) else str(value)
        if isinstance(value, str):
            return value
        raise bad("a number")
    if not isinstance(value, str):
        raise bad("a string")
    return value


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def cmd_run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import time

    t_cmd = time.perf_counter()
    if args.no_progress:  # before transformers is imported: its loading bars read this once
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    from harness.config import parse_key_values
    from harness.executors import ExecutorConfig, run_with_executor
    from harness.runner import (
        ExecutionOptions,
        GridRequest,
        check_against_shapes,
        default_results_dir,
        note_startup,
        plan_grid,
        preflight,
        process_age_seconds,
    )
    from harness.store import ResultStore

    age = process_age_seconds()
    if args.config:
        _load_config_file(args.config, parser, args)
    check_device(args.device)
    # validated before anything is planned; a config file gives strings, the command line ints
    auto_workers = str(args.workers).strip().lower() == "auto" if args.workers is not None else False
    args.workers = None if auto_workers else _int_flag(args.workers, "--workers")
    args.threads = _int_flag(args.threads, "--threads")
    executor = ExecutorConfig(kind=args.executor, workers=args.workers or 1, address=args.address)
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
    overrides = {}
    for name in TRAIN_OVERRIDES:
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    overrides["precision"] = _resolve_precision(args.precision, args.device, cuda)
    if args.compile:
        overrides["compile"] = True
    request = GridRequest(
        suite=args.suite,
        adapters=args.adapters,
        tasks=args.tasks,
        seeds=_seeds(args.seeds) if args.seeds else None,
        preset=preset,
        model=args.model,
        rank=_rank(args.rank),
        alpha=_alpha(args.alpha),
        targets=args.targets,
        adapter_options=parse_key_values(args.opt),
        train_overrides=overrides,
        suite_options=parse_key_values(args.suite_opt),
    )
    t_plan = time.perf_counter()
    specs = plan_grid(request, cuda_available=cuda, data=data)
    t_shapes = time.perf_counter()
    counts = check_against_shapes(specs)
    t_preflight = time.perf_counter()
    preflight(specs)
    store = ResultStore(Path(args.results_dir) if args.results_dir else default_results_dir())
    _check_writable(store.root)
    _check_store(store, specs)
    print(f"data: {data.root if data.offline else 'Hugging Face hub'}; results: {store.root}", file=sys.stderr)
    options = ExecutionOptions(device=args.device, data=data, save_adapters=args.save_adapters,
                               progress=not args.no_progress, threads=args.threads, cache=not args.no_cache)
    pending = _pending_specs(specs, store, args.force)
    if auto_workers:
        from harness.executors import auto_worker_count

        workers, why = auto_worker_count(len(pending), options)
        executor = ExecutorConfig(kind="local", workers=workers)
        print(f"--workers auto: {workers} ({why})", file=sys.stderr)
    talk = _grid_talk(specs, pending, store, options, executor)
    if args.dry_run:
        print(_plan_table(specs, counts, store, args.force))
        print(talk.estimate_line)
        return 0
    print(talk.header, flush=True)
    print(talk.estimate_line, flush=True)
    t_run = time.perf_counter()
    # named by what each span does; the heavy imports happen where they are first needed: torch at the
    # device check, transformers at the first shape check
    note_startup(process_start_to_command=age, harness_imports=t_imports - t_cmd,
                 torch_import_and_device_check=t_plan - t_imports, planning=t_shapes - t_plan,
                 shape_checks_with_transformers_import=t_preflight - t_shapes,
                 preflight_store_scan_and_estimate=t_run - t_preflight)
    outcome = run_with_executor(executor, specs, store, options, force=args.force,
                                echo=lambda line: print(line, flush=True), on_result=talk.on_result)
    print(outcome.totals_line())
    return 1 if outcome.unfinished or outcome.unsaved else 0  # see GridOutcome.unfinished


def _resolve_precision(requested: str, device: str, cuda: bool) -> str:
    """--precision auto becomes what the device supports, before planning, so that the spec (and the
    config hash) names the precision the run really used."""
    if requested != "auto":
        return requested
    if not cuda or device == "cpu":
        return "fp32"
    import torch

    return "bf16" if torch.cuda.is_bf16_supported() else "fp32"


def _pending_specs(specs: list[Any], store: Any, force: bool) -> list[Any]:
    from harness.runner import iter_pending

    return [spec for spec, complete in iter_pending(specs, store, force) if not complete]


@dataclasses.dataclass
class _GridTalk:
    header: str
    estimate_line: str
    on_result: Callable[[Any], None]


def _grid_talk(specs: list[Any], pending: list[Any], store: Any, options: Any, executor: Any) -> _GridTalk:
    """The header, the grid's estimated time, and the ``[i/N] ... | ETA`` reporter of finished runs."""
    from harness import progress
    from harness.executors import layout_line

    device, layout, parallel = layout_line(executor, options)
    header = progress.grid_header(specs, len(specs) - len(pending), device=device, layout=layout)
    estimator = progress.Estimator.from_records(progress.reference_records(store.root))
    estimate = progress.estimate_grid(pending, estimator)
    tracker = progress.GridProgress([s.run_id for s in pending], estimate.per_run, parallel=parallel,
                                    echo=lambda line: print(line, flush=True))
    return _GridTalk(header, estimate.line(parallel),
                     lambda result: tracker.finished(result.run_id, result.summary, result.path))


def _check_writable(root: Path) -> None:
    """Probe by writing, not with os.access: root passes every permission check, and a read-only
    mount or a path under a regular file fails only when written to. Nothing is created but a probe
    file in the nearest existing folder, removed at once."""
    import tempfile

    probe_dir = root
    while not probe_dir.exists() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent
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
        print(f"warning: {path} holds a record of a newer schema version: kept, that run is skipped "
              "(use another --results-dir to run it with this version)", file=sys.stderr)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def plan_state(status: str | None, force: bool) -> str:
    """What the next invocation does with a run, given its recorded status (None: no record)."""
    from harness.store import DONE_STATUSES, NEWER_SCHEMA

    if status is None:
        return "pending"
    if status == NEWER_SCHEMA:
        return "newer schema version (kept, skip)"
    if status in DONE_STATUSES:
        return f"done: {status} (will rerun: --force)" if force else f"done: {status} (skip)"
    return f"{status} (will rerun)"


def _plan_table(specs: list[Any], counts: dict[tuple[str, str], int], store: Any, force: bool) -> str:
    from harness.store import DONE_STATUSES

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


def cmd_ls(args: argparse.Namespace) -> int:
    from harness.registry import ADAPTERS, SUITES

    if args.what == "adapters":
        for name in ADAPTERS.names():
            cls = ADAPTERS.get(name)
            print(f"{name:<12} {cls.description}  [families: {', '.join(cls.families)}]")
            print(f"{'':<12} options: {_adapter_option_text(cls)}")
    elif args.what == "suites":
        for name in SUITES.names():
            cls = SUITES.get(name)
            print(f"{name:<16} {cls.description}  [tasks: {', '.join(cls.tasks)}]")
    elif args.what == "models":
        from harness.models import model_entries

        for entry in model_entries():
            where = "local" if entry.local_path() is not None else ("hub" if entry.hub_id else "-")
            print(f"{entry.name:<20} {entry.family:<12} {where:<6} {entry.hub_id or '':<36} {entry.description}")
    else:
        from harness.presets import PRESETS

        for preset in PRESETS.values():
            print(f"{preset.name:<8} seeds={','.join(map(str, preset.seeds)):<18} {preset.description}")
            for line in _preset_budget_lines(preset.name):
                print(f"{'':<8} {line}")
    return 0


def _adapter_option_text(cls: Any) -> str:
    """Each option of an adapter with its default ('(none)' for an adapter without options)."""
    fields = [f for f in dataclasses.fields(cls.config_cls) if f.init]
    if not fields:
        return "(none)"
    parts = []
    for f in fields:
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "required")
        if isinstance(default, tuple):
            default = ",".join(map(str, default)) or "()"
        parts.append(f"{f.name}={default}")
    return " ".join(parts)


def _preset_budget_lines(preset: str) -> list[str]:
    """Per suite: the model and the training budget of its default tasks under this preset."""
    from harness.registry import SUITES

    lines = []
    for name in SUITES.names():
        suite = SUITES.get(name)()
        if preset not in suite.presets:
            continue
        try:
            model = suite.default_model(preset)
            tasks = suite.default_tasks(preset)
        except Exception as exc:  # a suite that cannot say (e.g. needs data) still lists the rest
            lines.append(f"{name}: ({type(exc).__name__}: {exc})")
            continue
        budgets: dict[str, list[str]] = {}
        for task in tasks:
            t = suite.train_config(preset, task, model)
            text = (f"epochs={t.epochs:g} batch={t.batch_size}x{t.grad_accum} lr={t.lr:g} max_length={t.max_length} "
                    f"train={t.max_train_samples or 'all'} eval={t.max_eval_samples or 'all'}"
                    + (f" limit={t.limit}" if t.limit else ""))
            budgets.setdefault(text, []).append(task)
        lines.append(f"{name}: model {model}")
        for text, names in budgets.items():
            lines.append(f"  {','.join(names)}: {text}")
    return lines


def cmd_params(args: argparse.Namespace) -> int:
    from harness.config import parse_key_values
    from harness.models import get_model_entry
    from harness.registry import ADAPTERS
    from harness.runner import build_adapter, count_on_skeleton, scope_adapter_options

    entry = get_model_entry(args.model)
    names = ADAPTERS.resolve_list(args.adapters)
    explicit = args.adapters != "all"
    extra = parse_key_values(args.opt)
    applicable = [n for n in names if entry.family in ADAPTERS.get(n).families]
    scoped = scope_adapter_options(applicable, extra) if applicable else {}
    rows: list[dict[str, Any]] = []
    build_skeleton, default_targets = _params_skeleton(entry, args.suite)
    for name in names:
        cls = ADAPTERS.get(name)
        if entry.family not in cls.families:
            if explicit:
                raise HarnessError(f"adapter '{name}' does not apply to {entry.family} models")
            continue
        from harness.config import field_types

        fields = set(field_types(cls.config_cls))  # options only: init=False fields are not options
        options: dict[str, Any] = {}
        if "targets" in fields:
            options["targets"] = args.targets or default_targets
        if "rank" in fields and args.rank is not None:
            options["rank"] = _rank(args.rank)
        if "alpha" in fields and args.alpha is not None:
            options["alpha"] = _alpha(args.alpha)
        # an option goes to the selected adapters that have it (ADAPTER.KEY to that one only), as in `run`
        options.update(scoped[name])
        from harness.targets import resolve_target_options  # --targets attention-qv: the model's module names

        adapter = build_adapter(name, resolve_target_options(options, entry.name, fallback=default_targets))
        model, head = build_skeleton()
        count = count_on_skeleton(adapter, model, head, entry.family)
        rows.append({"adapter": name, "trainable_params": count, "model": entry.name,
                     "options": adapter.config.to_dict()})
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(f"{'adapter':<12} {'trainable params':>18}  options  (model {entry.name}, backbone only: heads excluded)")
        for row in rows:
            opts = ", ".join(f"{k}={v}" for k, v in row["options"].items())
            print(f"{row['adapter']:<12} {row['trainable_params']:>18,}  {opts}")
    return 0


def _params_skeleton(entry: Any, suite_name: str | None) -> tuple[Callable[[], tuple[Any, tuple[str, ...]]], str]:
    """How ``params`` builds the model on the meta device, and the default targets. Language models
    come from their architecture JSON; models that only a suite knows how to assemble (CLIP towers,
    timm ViTs) come from that suite's ``meta_model``: ``--suite`` names it, else the first suite of
    the model's family that can build it."""
    from harness.models import meta_model
    from harness.registry import SUITES

    if suite_name is None and entry.arch_config is not None:
        return (lambda: (meta_model(entry), ())), _default_targets(entry.family, entry.name)
    candidates = [suite_name] if suite_name else SUITES.names()
    for name in candidates:
        suite = SUITES.get(name)()
        if suite.family != entry.family:
            if suite_name:
                raise HarnessError(f"suite '{name}' runs {suite.family} models; '{entry.name}' is {entry.family}")
            continue
        task = suite.default_tasks("paper")[0]
        if suite.meta_model(entry.name, task) is None:
            continue
        targets = suite.default_adapter_options(entry.name).get("targets") or _default_targets(entry.family, entry.name)
        if not isinstance(targets, str):
            targets = ",".join(targets)
        return functools.partial(suite.meta_model, entry.name, task), targets  # type: ignore[return-value]
    raise HarnessError(f"no architecture config for model '{entry.name}' is available offline"
                       + (f" and suite '{suite_name}' cannot build it" if suite_name else ""))


def _default_targets(family: str, model: str) -> str:
    if family == "causal_lm":
        return "q_proj,v_proj"
    if model == "deberta-v3-base":
        return "query_proj,value_proj"
    return "query,value"


def cmd_report(args: argparse.Namespace) -> int:
    # reads the store only (no torch): aggregate, stats and metrics are pure
    from harness import aggregate
    from harness.store import ResultStore

    formats = [f.strip() for f in str(args.format).split(",") if f.strip()]
    bad = [f for f in formats if f not in aggregate.REPORT_FORMATS]
    if bad or not formats:
        raise HarnessError(f"--format {args.format!r}: valid formats are {', '.join(aggregate.REPORT_FORMATS)}")
    root = Path(args.results_dir) if args.results_dir else Path(os.environ.get("HARNESS_RESULTS_DIR") or "results")
    if not root.is_dir():
        raise HarnessError(f"--results-dir {root} does not exist (no tables written)")
    loaded = ResultStore(root).load(warn=False)
    for line in loaded.warnings:  # one line per bad file; never fatal
        print(f"warning: {line}", file=sys.stderr)
    if not loaded.records:
        raise HarnessError(f"--results-dir {root} holds no run record (no tables written)")
    frame = aggregate.load_frame(loaded.records)
    for duplicate in frame.attrs.get("duplicates", []):
        print(f"warning: {duplicate} in {root} for one config and seed (a copy or a backup); counted once",
              file=sys.stderr)
    if args.suite:
        frame = frame[frame["suite"] == args.suite]
        if frame.empty:
            raise HarnessError(f"--suite {args.suite}: no record of that suite in {root} (no tables written)")
    if args.baseline not in set(frame["adapter"]):
        print(f"warning: --baseline {args.baseline}: no run of that adapter in {root}; the -vs- tables are empty "
              f"(adapters: {', '.join(sorted(set(frame['adapter'])))})", file=sys.stderr)
    files = aggregate.build_report(frame, baseline=args.baseline, formats=formats)
    if "leaderboard.md" in files:
        print(files["leaderboard.md"])
    if args.out:
        try:  # matching records to paper-table rows plans the rows (the suites' presets need torch)
            from harness.reproduce import reproduction_files

            files.update(reproduction_files(loaded.records))
        except ImportError as exc:
            print(f"warning: no reproduce-<table>.csv written: planning the paper tables' rows needs {exc.name} "
                  "(the leaderboard tables need only pandas and scipy)", file=sys.stderr)
        written = write_files_atomically(Path(args.out), files)
        print(f"wrote {len(written)} files to {args.out}: {', '.join(p.name for p in written)}", file=sys.stderr)
    return 0


def write_files_atomically(out: Path, files: dict[str, str]) -> list[Path]:
    """Each file written to a temporary file in ``out``, fsynced, then renamed over the old one: a
    report killed or failing at any point leaves every table either whole and old or whole and new."""
    import tempfile

    from harness.store import process_umask

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        fd, tmp = tempfile.mkstemp(prefix=f".tmp-{name}.", dir=out)
        try:
            os.chmod(tmp, 0o666 & ~process_umask())  # mkstemp's 0600 would hide the tables from others
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                fh.write(text if text.endswith("\n") else text + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, out / name)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        written.append(out / name)
    return written


def cmd_analyze(args: argparse.Namespace) -> int:
    from harness import analysis

    main_fn = getattr(analysis, "analyze_main", None)
    if main_fn is None:
        raise HarnessError("the analyze command is not available in this version")
    return int(main_fn(list(args.args)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "run":
            return cmd_run(args, parser)
        if args.command == "ls":
            return cmd_ls(args)
        if args.command == "params":
            return cmd_params(args)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "reproduce":
            return cmd_reproduce(args)
        if args.command == "analyze":
            return cmd_analyze(args)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP turned into one by harness/signals.py
        from harness.signals import exit_code, signal_name

        print(f"interrupted ({signal_name(exit_code(exc) - 128)})", file=sys.stderr)
        return exit_code(exc)
    return EXIT_USAGE
