"""``harness tune``: the run flags plan one base run per (task, adapter) at the tuning seed; each becomes
an Optuna study (harness/tuning/study.py) whose trials run through the normal grid path."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.untrusted import safe_print


def cmd_tune(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from harness.cli.run import plan_from_args
    from harness.grid.executors import auto_worker_count, run_with_executor
    from harness.records.store import ResultStore
    from harness.registry import ADAPTERS
    from harness.search_space import check_space
    from harness.tuning.study import (
        TuneConfig,
        default_storage,
        public_url,
        study_name,
        tune_study,
        tuning_root,
    )

    if args.seeds and "," in str(args.seeds):
        raise HarnessError("tune trains every trial with one seed: give --seeds a single seed (default 42)")
    args.seeds = args.seeds or "42"
    for name in ("lr", "head_lr"):
        if getattr(args, name, None) is not None:
            raise HarnessError(f"tune searches the learning rates itself; drop --{name.replace('_', '-')}")
    planned = plan_from_args(args, parser)
    results = planned.store.root
    cfg = TuneConfig(trials=args.trials, sampler=args.sampler, pruner=args.pruner, seed=planned.specs[0].seed,
                     storage=args.storage)
    storage = args.storage or default_storage(results)
    bases = []
    for spec in planned.specs:
        adapter_cls = ADAPTERS.get(spec.adapter)
        space = adapter_cls.tuning_space()
        check_space(space, set(spec.adapter_options), f"adapter '{spec.adapter}'")
        if spec.train.validation is None:
            raise HarnessError(
                f"suite '{spec.suite}' (preset {spec.preset}, task {spec.task}) declares no validation split; "
                "tune selects on held-out data only: give one with --validation N (examples) or --validation F "
                "(a fraction of the training split)")
        if not adapter_cls.trains:
            continue  # nothing to tune (zero-shot)
        bases.append((spec, space))
    if args.dry_run:
        safe_print(f"studies: {len(bases)}, {cfg.trials} trials each ({cfg.sampler}, pruner {cfg.pruner}), "
              f"seed {cfg.seed}; storage {public_url(storage)}")
        for spec, space in bases:
            dims = "; ".join(f"{k}: {d.describe()}" for k, d in space.items())
            safe_print(f"  {study_name(spec)}  {dims}")
        return 0
    tuning_root(results).mkdir(parents=True, exist_ok=True)
    executor = planned.executor
    if planned.auto_workers:
        from harness.grid.executors import ExecutorConfig

        workers, why = auto_worker_count(cfg.trials, planned.options)
        executor = ExecutorConfig(kind="local", workers=workers)
        safe_print(f"--workers auto: {workers} ({why})", file=sys.stderr)
    parallel = max(1, executor.workers if executor.parallel else 1)
    store = ResultStore(tuning_root(results) / "trials")
    safe_print(f"tune: {len(bases)} studies x {cfg.trials} trials ({cfg.sampler}, pruner {cfg.pruner}), "
          f"{parallel} at a time; storage {public_url(storage)}; trials -> {store.root}", flush=True)
    t0 = time.perf_counter()
    totals = {"ran": 0, "failed": 0, "lost": 0, "not_done": 0}
    done_studies = 0

    def run_batch(specs: list[Any], links: dict[str, Any]) -> None:
        options = dataclasses.replace(planned.options, trial_links=links)
        outcome = run_with_executor(executor, specs, store, options, force=False,
                                    echo=lambda line: safe_print(line, flush=True))
        totals["lost"] += outcome.lost
        totals["not_done"] += outcome.unfinished

    exit_code = 0
    for i, (spec, space) in enumerate(bases, 1):
        result = tune_study(spec, space, cfg, results, storage, run_batch, parallel=parallel,
                            echo=lambda line: safe_print(line, flush=True))
        totals["ran"] += result.ran
        totals["failed"] += result.failed
        done_studies += 1
        elapsed = time.perf_counter() - t0
        eta = elapsed / done_studies * (len(bases) - done_studies)
        if result.choice is None:
            exit_code = 1
            safe_print(f"[{i}/{len(bases)}] {result.name}: no trial finished with a validation score; no choice written",
                  flush=True)
            continue
        chosen = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in sorted(result.choice["chosen"].items()))
        safe_print(f"[{i}/{len(bases)}] {result.name}: chose {chosen} (validation "
              f"{result.choice['validation_score']:.4f}, trial #{result.choice['chosen_trial']} of "
              f"{result.choice['trials_run']}) | elapsed {_minutes(elapsed)}, ETA {_minutes(eta)}", flush=True)
    safe_print(f"tuned {done_studies} studies; trials run now {totals['ran']}, failed {totals['failed']}, lost {totals['lost']}; "
          f"choices in {Path(tuning_root(results)) / 'choices'}")
    if totals["failed"] or totals["lost"] or totals["not_done"]:
        exit_code = 1
    return exit_code


def _minutes(seconds: float) -> str:
    minutes = int(round(seconds / 60))
    return f"{minutes // 60}h{minutes % 60:02d}min" if minutes >= 60 else f"{int(round(seconds))}s" if seconds < 90 else f"{minutes}min"
