"""Per-method tuning on held-out data (`harness tune`): one Optuna study per (suite, task, adapter, model,
preset), an equal trial budget for every method, trials selected on the validation split only.

Every trial is a run through the normal grid path (``run_with_executor``: local, workers, Ray; resume;
exit codes) into a store of its own, ``<results>/tuning/trials``, which the leaderboard never reads
(``harness.records.store`` skips ``tuning/``; ``harness.aggregate`` drops any record marked as a trial). The
study lives in Optuna's storage (a SQLite file beside the results by default, any database URL so that
several workers or machines share it); a killed `tune` resumes: a trial whose owner died is run again
(its record, if it was written, is found by the grid and only told to the study). Pruning is Optuna's:
each run reports its per-epoch validation score to its trial (``TrialLink``) and stops when the
study's pruner says so. The choice per study is written to ``<results>/tuning/choices/...json``;
``run --tuned`` plans the seeds at those values.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import timezone
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.records.tuning_choice import read_choice, tuned_section, write_choice  # noqa: F401  (re-exported)
from harness.records.tuning_paths import (  # noqa: F401  (re-exported)
    TUNING_DIR,
    choice_path,
    default_storage,
    public_url,
    tuning_root,
)
from harness.search_space import Choice, LogUniform, split_params
from harness.spec import RunSpec

SAMPLERS = ("tpe", "grid", "random")
PRUNERS = ("hyperband", "halving", "median", "none")
# a RUNNING trial of another host is taken over only after this long without finishing
FOREIGN_TRIAL_TIMEOUT_S = 12 * 3600


@dataclass(frozen=True)
class TuneConfig:
    trials: int
    sampler: str = "tpe"
    pruner: str = "hyperband"
    seed: int = 42  # the seed every trial trains with, and the sampler's seed
    storage: str | None = None  # an Optuna storage URL; None: sqlite beside the results

    def __post_init__(self) -> None:
        if isinstance(self.trials, bool) or not isinstance(self.trials, int) or not 1 <= self.trials <= 10_000:
            raise HarnessError(f"--trials must be an integer from 1 to 10000, got {self.trials!r}")
        if self.sampler not in SAMPLERS:
            raise HarnessError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.pruner not in PRUNERS:
            raise HarnessError(f"--pruner must be one of {', '.join(PRUNERS)}, got {self.pruner!r}")


def study_name(base: RunSpec) -> str:
    """The study of a (suite, task, adapter, model, preset) at the base configuration (the preset's
    settings and the adapter's options at the tuning seed: another rank is another study)."""
    return f"{base.suite}/{base.task}/{base.adapter}/{base.model}/{base.preset}/{base.config_hash}"


# ---- Optuna objects ------------------------------------------------------------------------------

def distributions(space: Mapping[str, Any]) -> dict[str, Any]:
    import optuna

    out: dict[str, Any] = {}
    for key, dim in space.items():
        if isinstance(dim, LogUniform):
            out[key] = optuna.distributions.FloatDistribution(dim.low, dim.high, log=True)
        elif isinstance(dim, Choice):
            out[key] = optuna.distributions.CategoricalDistribution(list(dim.values))
    return out


def grid_points(space: Mapping[str, Any], trials: int) -> dict[str, list[Any]]:
    """The grid sampler's points: log-spaced for each rate, so that the grid has about ``trials`` points."""
    import numpy as np

    continuous = [k for k, d in space.items() if isinstance(d, LogUniform)]
    fixed = math.prod(len(d.values) for d in space.values() if isinstance(d, Choice))
    per_dim = max(2, round((trials / max(1, fixed)) ** (1 / max(1, len(continuous))))) if continuous else 0
    grid: dict[str, list[Any]] = {}
    for key, dim in space.items():
        if isinstance(dim, LogUniform):
            grid[key] = [float(f"{v:.3g}") for v in np.geomspace(dim.low, dim.high, per_dim)]
        else:
            grid[key] = list(dim.values)
    return grid


def build_sampler(cfg: TuneConfig, space: Mapping[str, Any]) -> Any:
    import optuna

    if cfg.sampler == "grid":
        return optuna.samplers.GridSampler(grid_points(space, cfg.trials), seed=cfg.seed)
    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=cfg.seed)
    # few trials: start modelling after a third of the budget (at least 2 points, the prior among them)
    return optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=max(2, cfg.trials // 3))


def build_pruner(name: str, max_epochs: int) -> Any:
    import optuna

    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, max_epochs), reduction_factor=3)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    return optuna.pruners.NopPruner()


def open_study(name: str, storage: str, cfg: TuneConfig, space: Mapping[str, Any], max_epochs: int,
               direction: str = "maximize") -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=storage, sampler=build_sampler(cfg, space),
                                pruner=build_pruner(cfg.pruner, max_epochs), direction=direction,
                                load_if_exists=True)
    prior = {k: d.prior for k, d in space.items() if d.prior is not None}
    if prior and cfg.sampler != "grid" and not study.trials:
        study.enqueue_trial(prior, skip_if_exists=True)  # the paper's values are the first trial
    return study


@dataclass(frozen=True)
class TrialLink:
    """What a trial's run needs to talk to its study from any process (picklable: workers, Ray):
    ``report`` gives the study an epoch's validation score and says whether to stop (pruned)."""

    storage: str
    study: str
    trial_id: int
    number: int
    pruner: str
    max_epochs: int

    def report(self, epoch: int, value: float | None) -> bool:
        import optuna

        if value is None or not math.isfinite(value):
            return False
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(study_name=self.study, storage=self.storage,
                                  pruner=build_pruner(self.pruner, self.max_epochs))
        trial = optuna.trial.Trial(study, self.trial_id)
        trial.report(float(value), step=int(epoch))
        return bool(trial.should_prune())

    def section(self) -> dict[str, Any]:
        """The record's ``tuning`` section: a trial, never a leaderboard row."""
        return {"role": "trial", "study": self.study, "trial": self.number}


# ---- trials as runs ------------------------------------------------------------------------------

def trial_spec(base: RunSpec, params: Mapping[str, Any]) -> RunSpec:
    """The base run at a trial's values; the test split is read once, at the validation-selected
    epoch, and never reaches the study."""
    from harness.config import build, to_jsonable
    from harness.pipeline.attach import build_adapter_config
    from harness.spec import TrainConfig

    train_over, option_over = split_params(params)
    train = build(TrainConfig, {**to_jsonable(base.train), **train_over, "test_each_epoch": False}, "training")
    options = dict(base.adapter_options)
    if option_over:
        options = build_adapter_config(base.adapter, {**options, **option_over}).to_dict()
    return replace(base, train=train, adapter_options=options)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner() -> dict[str, Any]:
    return {"owner_host": socket.gethostname(), "owner_pid": os.getpid()}


def is_stale(trial: Any, now: float | None = None) -> bool:
    """A RUNNING trial nobody is running any more: its owner process on this host is gone, or one on
    another host has held it past ``FOREIGN_TRIAL_TIMEOUT_S``."""
    attrs = trial.user_attrs
    host, pid = attrs.get("owner_host"), attrs.get("owner_pid")
    if host == socket.gethostname() and isinstance(pid, int):
        return pid != os.getpid() and not _pid_alive(pid)
    started = trial.datetime_start
    if started is None:
        return True
    age = (now or time.time()) - started.replace(tzinfo=started.tzinfo or timezone.utc).timestamp()
    return age > FOREIGN_TRIAL_TIMEOUT_S


@dataclass
class StudyResult:
    name: str
    choice: dict[str, Any] | None
    failed: int = 0  # trials whose run failed or was lost (not diverged: that is a result)
    ran: int = 0


def tune_study(base: RunSpec, space: Mapping[str, Any], cfg: TuneConfig, results: Path, storage: str,
               run_batch: Callable[[list[RunSpec], dict[str, TrialLink]], Any], *, parallel: int = 1,
               echo: Callable[[str], None] = print, poll_seconds: float = 5.0) -> StudyResult:
    """Run one study to its budget (counting finished, pruned and failed trials, and those other
    workers are running) and write its choice. ``run_batch(specs, links)`` runs trials through the
    grid path into the trial store."""
    import optuna

    from harness.records.store import ResultStore

    TrialState = optuna.trial.TrialState
    name = study_name(base)
    study = open_study(name, storage, cfg, space, max(1, math.ceil(base.train.epochs)))
    dists = distributions(space)
    store = ResultStore(tuning_root(results) / "trials")
    out = StudyResult(name, None)
    while True:
        trials = study.get_trials(deepcopy=False)
        running = [t for t in trials if t.state == TrialState.RUNNING]
        stale = [t for t in running if is_stale(t)]
        live = len(running) - len(stale)
        settled = sum(1 for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
        batch: list[tuple[int, int, dict[str, Any]]] = []  # (number, id, params)
        for t in stale[:parallel]:  # adopt: rerun it (the grid finds its record if it was written)
            for key, value in _owner().items():
                study._storage.set_trial_user_attr(t._trial_id, key, value)
            batch.append((t.number, t._trial_id, dict(t.params)))
        new = min(parallel - len(batch), cfg.trials - settled - len(running))
        for _ in range(max(0, new)):
            trial = study.ask(dists)
            for key, value in _owner().items():
                trial.set_user_attr(key, value)
            batch.append((trial.number, trial._trial_id, dict(trial.params)))
        if not batch:
            if live:  # another worker is running this study's last trials
                time.sleep(poll_seconds)
                continue
            break
        specs, links = [], {}
        for number, trial_id, params in batch:
            spec = trial_spec(base, params)
            specs.append(spec)
            links[spec.run_id] = TrialLink(storage, name, trial_id, number, cfg.pruner,
                                           max(1, math.ceil(base.train.epochs)))
        echo(f"[tune] {name}: trial{'s' if len(batch) > 1 else ''} "
             + ", ".join(f"#{n} {_params_text(p)}" for n, _, p in batch))
        run_batch(specs, links)
        for (number, _, _params), spec in zip(batch, specs):
            out.ran += 1
            out.failed += _tell(study, number, store.get(spec.key))
    out.choice = write_choice(study, base, space, cfg, results, storage)
    return out


def _params_text(params: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items()))


def _told(study: Any, number: int, value: float | None = None, state: Any = None) -> None:
    """``study.tell``. Optuna's grid sampler calls ``Study.stop`` once the grid is used up, which only
    works inside ``optimize``: in the ask-and-tell loop the state is stored first (a ``finally`` in
    Optuna's tell) and the RuntimeError that follows is expected; the budget ends the loop here."""
    try:
        study.tell(number, value, state=state)
    except RuntimeError as exc:
        if "Study.stop" not in str(exc):
            raise


def _tell(study: Any, number: int, record: Any) -> int:
    """Tell the study how a trial's run ended; 1 when it failed for a reason that is not about the
    configuration (the run is rerun by the next `tune`), else 0."""
    import optuna

    TrialState = optuna.trial.TrialState
    trial = study._storage.get_trial(study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number))
    if trial.state != TrialState.RUNNING:
        return 0
    if record is None:  # lost (a dead worker): stays RUNNING-then-stale, rerun by the next invocation
        _told(study, number, state=TrialState.FAIL)
        return 1
    status = record.get("status")
    metrics = record.get("metrics") or {}
    validation = metrics.get("validation") or {}
    value = validation.get("score")
    for key, v in (("run_id", record.get("run_id")), ("status", status),
                   ("test_score", metrics.get("score")), ("best_epoch", metrics.get("best_epoch")),
                   ("compute_seconds", (record.get("timing") or {}).get("total_seconds"))):
        study._storage.set_trial_user_attr(trial._trial_id, key, v)
    if status == "success" and metrics.get("stopped_early"):
        _told(study, number, state=TrialState.PRUNED)
        return 0
    if status == "success" and isinstance(value, (int, float)) and math.isfinite(value):
        _told(study, number, float(value))
        return 0
    # diverged or oom: a result about this configuration (never chosen); failed: rerun by the next tune
    _told(study, number, state=TrialState.FAIL)
    return 0 if status in ("diverged", "oom") else 1


