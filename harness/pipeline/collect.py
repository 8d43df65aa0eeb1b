"""After the training loop: the adapter's extra evaluations, the SVD analyses of its updates, the saved
adapter tensors, and the record's result sections (metrics, params, memory, timing, precision, ...).
"""

from __future__ import annotations

import shutil
import time
from typing import Any

from harness.pipeline.evaluation import compile_stats, evaluate_variants
from harness.pipeline.run_record import metric_annotations
from harness.pipeline.train import TrainingRun


def _analysis(run: TrainingRun) -> dict[str, Any]:
    components = run.adapter.delta_components(run.model)
    if not components:
        return {}
    from harness.pipeline.analysis import analyze_components

    return analyze_components(components)


def _save_adapter(run: TrainingRun) -> dict[str, Any]:
    """The adapter's tensors (and the trained head) to the run's work folder, copied next to the
    record with --save-adapters; returns the parameter section with the file's size."""
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu").contiguous().clone()
             for k, v in run.adapter.adapter_state_dict(run.model, run.head_ids).items()}
    adapter_file = run.work_dir / "adapter.safetensors"
    save_file(state, str(adapter_file))
    params = run.counts.to_dict()
    params["adapter_file_bytes"] = adapter_file.stat().st_size
    params["adapter_tensors_saved"] = sum(t.numel() for t in state.values())
    keep = run.options.save_adapters or spec_id(run) in getattr(run.options, "keep_adapters", frozenset())
    if keep and run.record_path is not None:
        run.record_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(adapter_file, run.record_path.with_suffix(".adapter.safetensors"))
        from harness.pipeline.saved_run import save_run_folder, saved_folder

        save_run_folder(run, saved_folder(run.record_path), state)  # loadable: peft's layout or load_saved_run
    return params


def spec_id(run: TrainingRun) -> str:
    return run.spec.run_id


def validation_sections(run: TrainingRun, chosen: dict[str, Any]) -> dict[str, Any]:
    """The validation protocol's part of ``metrics``: the validation scores that selected the epoch,
    the protocols side by side (``best-validation-epoch``: the score, ``best-test-epoch``: the papers'
    protocol, selected on the test split itself, present only when the test split was scored every
    epoch), and how often the test split was read."""
    primary = run.primary
    if run.val_best is None:
        return {"protocol": "best-test-epoch" if run.train.eval_each_epoch else "final", "test_reads": run.test_reads}
    protocols: dict[str, Any] = {"best-validation-epoch": {"score": chosen.get(primary), "epoch": run.best_epoch}}
    if run.test_best is not None:
        protocols["best-test-epoch"] = {"score": run.test_best.get(primary), "epoch": run.test_best_epoch}
    return {
        "protocol": "best-validation-epoch",
        "validation": {"primary": run.val_primary, "score": run.val_best.get(run.val_primary), "best": run.val_best, "best_epoch": run.best_epoch,
                       "per_epoch": run.val_per_epoch,
                       "examples": run.sections.get("data_info", {}).get("validation_examples")},
        "protocols": protocols,
        "test_reads": run.test_reads,
        "stopped_early": run.stopped_early,
    }


def collect_sections(run: TrainingRun) -> dict[str, Any]:
    """The record's result sections of a trained run (``TrainingRun.run`` done)."""
    spec, train, phases = run.spec, run.train, run.phases
    mem = run.memory.report(run.model, run.optimizer)
    cuda_steps = run.step_memory.report()
    if cuda_steps:  # accelerator figures in their own keys, never mixed with the CPU estimate
        mem["cuda_train_steps"] = cuda_steps
    final = run.per_epoch[-1] if run.per_epoch else {}
    final_metrics = {k: v for k, v in final.items() if k not in ("epoch", "step")}
    validated = run.val_best is not None
    if validated:  # selected on the held-out validation split; the test split never steered
        selection = "best-validation-epoch" if train.eval_each_epoch else "final"
        chosen = run.best or {}
    else:
        selection = run.suite.selection if train.eval_each_epoch else "final"
        chosen = (run.best or {}) if selection == "best-dev-epoch" else final_metrics

    t_variants = time.perf_counter()
    variants, variant_seconds = evaluate_variants(run.adapter, run.model, run.suite, run.data, run.loaded,
                                                  train, run.ctx)
    eval_seconds = run.eval_seconds + variant_seconds
    phases.add("eval_variants", time.perf_counter() - t_variants)

    t_analysis = time.perf_counter()
    analysis = _analysis(run)
    phases.add("analysis", time.perf_counter() - t_analysis)
    t_save = time.perf_counter()
    params = _save_adapter(run)
    phases.add("save_adapter", time.perf_counter() - t_save)

    primary, train_seconds = run.primary, run.train_seconds
    return {
        "metrics": {
            **metric_annotations(spec, primary, run.suite),
            "primary": primary,
            "score": chosen.get(primary),
            "selection": selection,
            "best": run.best or {},
            "best_epoch": run.best_epoch,
            "final": final_metrics,
            "per_epoch": run.per_epoch,
            "variants": variants,
            **validation_sections(run, chosen),
        },
        "params": params,
        "memory": mem,
        "timing": {
            "train_seconds": train_seconds,
            "eval_seconds": eval_seconds,
            "load_seconds": run.load_seconds,
            # model / data served from this process's cache (load_seconds then is small)
            "load_cached": run.cache_hits,
            "steps": run.step,
            "epochs": run.epoch,
            "mean_step_seconds": run.timer.mean_step_seconds,
            "samples_per_second": run.samples / train_seconds if train_seconds > 0 else None,
            "samples": run.samples,
            # where the run's wall time went (execute_run adds environment and the rest), and each
            # evaluation; total_seconds is their sum up to what no phase names ("unaccounted")
            "phases": {"load": run.load_seconds, **phases.seconds},
            "eval_seconds_per_epoch": run.eval_per_epoch,
            "eval_validation_seconds": run.validation_seconds,  # the validation passes' part of eval_seconds
            "eval_merged": run.merged_eval,
            # in-run checkpoints written, and where a resumed run continued from (harness/pipeline/checkpoint.py)
            "checkpoints": {"saved": run.checkpoints_saved, "resumed_from": run.resumed_from},
        },
        "precision": {"requested": train.precision, "used": run.precision,
                      "autocast": run.precision != "fp32", "compile": compile_stats(run.compile_info)},
        "loss_curve": run.sections["loss_curve"],
        "adapter_info": run.adapter.summary(run.model),
        "analysis": analysis,
        **({"warm_start": run.sections["warm_start"]} if "warm_start" in run.sections else {}),
        "model_info": run.sections["model_info"],
        "data_info": run.sections["data_info"],
    }
