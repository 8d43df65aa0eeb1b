"""The command line's parser: ``python -m harness run|ls|params|report|reproduce|analyze`` and the
checks of flag values (a bad value is one ``HarnessError`` line, never argparse's usage and exit).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from harness.errors import HarnessError
from harness.spec import train_override_flags

EXIT_USAGE = 2
# TrainConfig fields a `run` flag can override (--max-train-samples -> max_train_samples), with the flag's
# help: declared on the fields themselves (harness.spec, metadata ``cli``)
TRAIN_HELP = train_override_flags()
TRAIN_OVERRIDES = tuple(TRAIN_HELP)


# The plausible range of each integer flag (checked before anything is planned); --seeds: harness.pipeline.plan
INT_FLAG_MAX = {"--rank": 2**16, "--workers": 1024, "--threads": 1024, "--max-steps": 2**31 - 1}
ALPHA_MAX = 1e6


def _seeds(text: str) -> tuple[int, ...]:
    from harness.pipeline.plan import SEED_MAX, validate_seeds

    try:
        seeds = tuple(int(s) for s in str(text).split(",") if s.strip())
    except ValueError:
        raise HarnessError(f"--seeds takes comma-separated non-negative integers in [0, {SEED_MAX}], got {text!r}") from None
    try:
        return validate_seeds(seeds)
    except HarnessError as exc:
        raise HarnessError(f"--seeds: {exc}") from None


def _positive_int(name: str) -> Any:
    maximum = INT_FLAG_MAX.get(name, 2**31 - 1)

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise HarnessError(f"{name} must be a positive integer, got {text!r}") from None
        if value < 1:
            raise HarnessError(f"{name} must be a positive integer, got {text!r}")
        if value > maximum:
            raise HarnessError(f"{name} must be an integer in [1, {maximum}], got {text!r}")
        return value

    return parse


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse prints usage and exits 2; keep it one line
        raise HarnessError(f"{self.prog}: {message}")


TUNE_DESCRIPTION = """\
Tune every adapter on every task with the same trial budget, selecting on the held-out validation split
(the test split is scored once per trial, at the selected epoch, and never reaches the search). Each
trial is a run of the seed given by --seeds (default 42) through the normal grid (executors, workers,
resume); its record goes to <results-dir>/tuning/trials, never into a leaderboard table. The choice per
(suite, task, adapter, model, preset) is written to <results-dir>/tuning/choices; `run --tuned` then runs
the seeds at those values. A killed tune resumes without repeating finished trials; several tune
processes given the same --storage share each study."""
TUNE_EXAMPLES = """\
examples:
  python -m harness tune --suite glue --tasks sst2 --adapters lora,vera --trials 8 --data-dir ../shared/data
  python -m harness run  --suite glue --tasks sst2 --adapters lora,vera --tuned --seeds 42,64,128 --data-dir ../shared/data
  python -m harness tune --suite toy --adapters head,full --trials 4 --sampler grid --results-dir /tmp/toy"""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="harness", description="PEFT benchmark harness")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run suites x tasks x adapters x seeds, one record per run",
                         description=RUN_DESCRIPTION, epilog=RUN_EXAMPLES,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_run_arguments(run)

    tune = sub.add_parser("tune", help="tune each adapter per task on the validation split (Optuna), equal budget each",
                          description=TUNE_DESCRIPTION, epilog=TUNE_EXAMPLES,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_run_arguments(tune)
    search = tune.add_argument_group("search (one Optuna study per suite, task, adapter, model and preset)")
    search.add_argument("--trials", required=True, type=_positive_int("--trials"),
                        help="trials per study: the same budget for every method (pruned and failed trials count)")
    search.add_argument("--sampler", default="tpe", choices=("tpe", "grid", "random"),
                        help="tpe (default; the adapter's paper values are the first trial), grid (log-spaced, "
                             "about --trials points) or random")
    search.add_argument("--pruner", default="hyperband", choices=("hyperband", "halving", "median", "none"),
                        help="stops unpromising trials on their per-epoch validation score (default hyperband)")
    search.add_argument("--storage", help="Optuna storage URL shared by every worker or machine of a study "
                                          "(default: sqlite:///<results-dir>/tuning/studies.db)")

    ls = sub.add_parser("ls", help="list adapters, suites, models or presets")
    ls.add_argument("what", choices=["adapters", "suites", "models", "presets"])
    ls.add_argument("--suite", help="ls adapters: the options a run of this suite would use (resolved)")
    ls.add_argument("--preset", help="ls adapters --suite S: under this preset (default: cpu)")
    ls.add_argument("--model", help="ls adapters --suite S: with this model (default: the preset's)")

    params = sub.add_parser("params", help="trainable parameters per adapter, counted on the meta device")
    params.add_argument("--model", help="catalogue name (default: the preset's model with --suite --preset, "
                                          "else roberta-base)")
    params.add_argument("--preset", help="with --suite: count the options a run of this preset uses "
                                         "(the suite's and preset's adapter defaults, as `run` resolves them)")
    params.add_argument("--adapters", default="all")
    params.add_argument("--suite", default=None, help="count with this suite's head (default: by model family)")
    params.add_argument("--json", action="store_true")
    _adapter_flags(params)

    report = sub.add_parser("report", help="ranked tables with confidence intervals (CSV, Markdown, LaTeX)")
    report.add_argument("--results-dir", action="append", metavar="DIR",
                        help="a result store to read, repeatable (default: your store runs/, env HARNESS_RESULTS_DIR)")
    report.add_argument("--with-shipped", action="store_true",
                        help="also read the shipped reference store results/ (every row names its source)")
    report.add_argument("--out", help="write <suite>.csv, <suite>-limited.csv, <suite>-vs-<baseline>.csv, "
                                      "<suite>.md, <suite>.tex and leaderboard.md here (atomically); with tuning "
                                      "studies also tuning-<suite>-<task>-lr.png, -expected-max.png and "
                                      "tuning-<suite>.csv (docs/tuning.md)")
    report.add_argument("--suite", help="only this suite")
    report.add_argument("--baseline", default="lora", help="adapter every configuration is compared with")
    report.add_argument("--p-adjust", default="holm", choices=("holm", "bh", "none"),
                        help="adjustment of the paired p-values of one table against its baseline (one family): "
                             "holm (default), bh (Benjamini-Hochberg) or none; verdicts use the adjusted value")
    report.add_argument("--format", default="csv,md,latex", help="comma list of csv, md, latex")

    _reproduce_parser(sub)

    records = sub.add_parser("records", help="maintain a result store's records (migrate: to the current layout)")
    records_sub = records.add_subparsers(dest="records_command", required=True, parser_class=_Parser)
    migrate = records_sub.add_parser("migrate", help="bring every record under DIR (and its tuning trials) to "
                                                     "the current schema version, once; values never change")
    migrate.add_argument("dir", metavar="DIR", help="a results folder (e.g. results or runs)")

    analyze = sub.add_parser("analyze", help="SVD analyses across runs (subspace similarity)",
                             description=ANALYZE_DESCRIPTION)
    add_analyze_arguments(analyze)
    return parser


ANALYZE_DESCRIPTION = ("subspace similarity phi(i, j) = ||U1[:, :i]^T U2[:, :j]||_F^2 / min(i, j) (SeRA eq. 4) "
                       "between two runs saved with --save-adapters")


def add_analyze_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run1", help="run record (.json) or its .adapter.safetensors")
    parser.add_argument("run2", help="run record (.json) or its .adapter.safetensors")
    parser.add_argument("--max-rank", type=int, default=8, help="largest i and j (default 8)")
    parser.add_argument("--module", help="only modules whose name contains this text")
    parser.add_argument("--component", help="only this component (lora, sera, lora2, global, mid, layer)")
    parser.add_argument("--space", choices=["input", "output"], default="input",
                        help="compare input-space (the papers' U of an in x out dW, default) or output-space directions")
    parser.add_argument("--per-module", action="store_true", help="print every module's table, not only the mean")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _reproduce_parser(sub: Any) -> None:
    rep = sub.add_parser("reproduce", help="plan or run a paper table's rows (harness.papers.tables)")
    rep.add_argument("table", nargs="?", help="table name (reproduce --list)")
    rep.add_argument("--list", action="store_true", help="list the tables")
    rep.add_argument("--row", dest="rows", action="append", metavar="ROW",
                     help="only this row (repeatable): its name as --dry-run prints it")
    rep.add_argument("--dry-run", action="store_true", help="rows, planned runs, parameter counts vs the paper's")
    rep.add_argument("--json", action="store_true", help="with --dry-run: one JSON object per row")
    rep.add_argument("--preset", choices=["paper", "cpu"], help="paper (default) or cpu: the suite's embedded model")
    rep.add_argument("--data-dir", help="local data root laid out like ../shared/data (env HARNESS_DATA_DIR)")
    rep.add_argument("--results-dir", help="result store to write (default: runs/, env HARNESS_RESULTS_DIR; "
                                           "the shipped results/ only when named)")
    rep.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    rep.add_argument("--force", action="store_true", help="rerun runs that already have a record")
    rep.add_argument("--max-steps", type=_positive_int("--max-steps"), help="smoke runs: stop each run after N steps")
    rep.add_argument("--executor", default="local", help="local (default) or ray")
    rep.add_argument("--workers", type=_workers_arg, help="parallel runs (executor workers), or auto")
    rep.add_argument("--address", help="ray executor: 'auto' or ray://host:10001")
    rep.add_argument("--no-progress", action="store_true", help="no progress bars")


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
    what.add_argument("--suite", help=_SuiteHelp("the suite to run (required, here or in --config)"))
    what.add_argument("--tasks", help="comma list, or 'all' (default: the preset's tasks whose data is present)")
    what.add_argument("--adapters", default="all", help="comma list or 'all' (default: all that apply to the suite)")
    what.add_argument("--seeds", type=str, help="comma list of seeds (default: the preset's)")
    what.add_argument("--preset", help="paper or cpu: model, seeds and budgets (default: paper with a GPU, cpu without; "
                                       "see `harness ls presets`)")
    what.add_argument("--data-dir", help="local data root laid out like ../shared/data (env HARNESS_DATA_DIR)")
    what.add_argument("--config", help="JSON file with any of these options (keys as flag names); flags win")
    what.add_argument("--warm-start", metavar="TASK",
                      help="start the runs of the tasks the suite warm-starts from TASK from TASK's run of the same "
                           "adapter, config and seed (glue: mnli -> rte, mrpc, stsb, LoRA's protocol); the TASK runs "
                           "are planned and run first, and the dependency is part of the dependent runs' identity")
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
    grid.add_argument("--executor", default="local", help="local (default), ray or slurm")
    grid.add_argument("--workers", type=_workers_arg,
                      help="local executor: runs at once in worker processes (one per GPU; on CPU the cores split "
                           "evenly), or 'auto': the faster layout for this machine (see the README)")
    grid.add_argument("--threads", type=_positive_int("--threads"), help="torch CPU threads per run")
    grid.add_argument("--address", help="ray executor: 'auto' or ray://host:10001 for an existing cluster "
                                        "(default: a local Ray instance for this grid)")
    grid.add_argument("--runs-per-gpu", type=_positive_int("--runs-per-gpu"), metavar="K",
                      help="pack K runs on one GPU: K local workers per GPU, or Ray tasks asking for 1/K GPU "
                           "(checked against the GPU's free memory and the largest comparable record)")
    grid.add_argument("--no-shared-disk", action="store_true",
                      help="ray executor: the workers do not see the results folder; each task returns its record "
                           "and files and the driver writes them; the data folder is shipped once via Ray")
    grid.add_argument("--ray-data-url", metavar="URL",
                      help="with --no-shared-disk: every node reads the data root from this URL (fsspec: s3://, "
                           "gs://, file://...) instead of receiving the driver's data folder")
    slurm = run.add_argument_group("slurm executor (--executor slurm, through submitit: one job array per grid)")
    slurm.add_argument("--slurm-partition", help="sbatch --partition")
    slurm.add_argument("--slurm-gpus-per-task", type=str, help="GPUs per run (sbatch --gpus-per-task; default 0)")
    slurm.add_argument("--slurm-time", help="time limit per job, as sbatch --time (default 4:00:00); a job that "
                                            "reaches it is requeued and resumes from its checkpoint")
    slurm.add_argument("--slurm-array-parallelism", type=str, help="runs at once (the array's %%N; default 64)")
    slurm.add_argument("--slurm-extra", action="append", default=[], metavar='"#SBATCH --KEY=VALUE"',
                       help="a further #SBATCH line, repeatable (e.g. \"#SBATCH --qos=high\")")
    slurm.add_argument("--slurm-resubmit", type=str,
                       help="resubmit a job that ended without a record this many times (default 1)")
    grid.add_argument("--no-cache", action="store_true",
                      help="load the model and tokenize the data again for every run (default: shared within a process)")
    grid.add_argument("--force", action="store_true", help="rerun runs that already have a record")
    grid.add_argument("--checkpoint-every", type=_positive_int("--checkpoint-every"), metavar="N",
                      help="also checkpoint every N optimiser steps (default: at each epoch's end only); an "
                           "interrupted run resumes from its last checkpoint (<results-dir>/.checkpoints)")
    grid.add_argument("--no-checkpoints", action="store_true",
                      help="no in-run checkpoints: an interrupted run starts again from scratch")

    out = run.add_argument_group("output")
    out.add_argument("--results-dir", help="result store to write (default: runs/, env HARNESS_RESULTS_DIR; "
                                           "the shipped reference store results/ only when named)")
    out.add_argument("--save-adapters", action="store_true", help="keep each run's adapter tensors next to its record")
    out.add_argument("--report-to", metavar="TRACKERS",
                     help="log each run's loss, lr and per-epoch scores: comma list of tensorboard, wandb, mlflow "
                          "(or all, none; default none). Logs go under the results folder (harness.grid.tracking)")
    if run.prog.split()[-1] == "run":
        what.add_argument("--tuned", action="store_true",
                          help="run at the values `harness tune` chose per task and adapter (read from "
                               "<results-dir>/tuning/choices); the records say so and the rows are labelled tuned")
    out.add_argument("--no-progress", action="store_true",
                     help="no progress bars (training, evaluation, model loading); the per-run lines stay")


# Values a learning rate may plausibly take: --lr 3e4 (for 3e-4) is refused before anything loads. The plan
# checks the full ranges (harness.pipeline.plan); this is the parser layer's minimal guard against typos.
PLAUSIBLE = {"lr": (0.0, 1.0), "head_lr": (0.0, 1.0)}


def check_plausible(args: argparse.Namespace) -> None:
    for name, (low, high) in PLAUSIBLE.items():
        text = getattr(args, name, None)
        if text is None:
            continue
        try:
            value = float(text)
        except (TypeError, ValueError):
            continue  # not a number: the plan's own check names it
        if math.isfinite(value) and not low < value <= high:
            flag = "--" + name.replace("_", "-")
            raise HarnessError(f"{name} must be in ({low:g}, {high:g}], got {text} ({flag})"
                               + (f"; did you mean {text.replace('e', 'e-', 1)}?" if "e" in str(text)
                                  and "e-" not in str(text) and value > high else ""))


def _workers_arg(text: str) -> int | str:
    if str(text).strip().lower() == "auto":
        return "auto"
    return _positive_int("--workers")(text)


def _int_flag(value: int | str | None, name: str) -> int | None:
    """A flag's integer from the command line (a string) or a config file (an int), range-checked alike."""
    return value if value is None else _positive_int(name)(str(value))


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
    if value > ALPHA_MAX:
        raise HarnessError(f"--alpha must be in (0, {ALPHA_MAX:g}], got {text!r}")
    return value
