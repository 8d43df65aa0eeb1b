"""After the training loop: the adapter's extra evaluations, the SVD analyses of its updates, the saved
adapter tensors, and the record's result sections (metrics, params, memory, timing, precision, ...), all
from the frozen ``harness.pipeline.trained.TrainedRun`` that ``TrainingRun.run()`` returns.
"""

from __future__ import annotations

import shutil
from typing import Any

from harness.pipeline.evaluation import compile_stats, evaluate_variants
from harness.pipeline.measure import PhaseTimer
from harness.pipeline.run_record import metric_annotations
from harness.pipeline.trained import TrainedRun


def _analysis(run: TrainedRun) -> dict[str, Any]:
    components = run.adapter.delta_components(run.model)
    if not components:
        return {}
    from harness.pipeline.analysis import analyze_components

    return analyze_components(components)


def _save_adapter(run: TrainedRun) -> dict[str, Any]:
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
    if run.keep_adapter and run.record_path is not None:
        run.record_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(adapter_file, run.record_path.with_suffix(".adapter.safetensors"))
        from harness.pipeline.saved_run import save_run_folder, saved_folder

        save_run_folder(run, saved_folder(run.record_path), state)  # loadable: peft's layout or load_saved_run
    return params


def validation_sections(run: TrainedRun, chosen: dict[str, Any]) -> dict[str, Any]:
    """The validation protocol's part of ``metrics``: the validation scores that selected the epoch,
    the protocols side by side (``best-validation-epoch``: the score, ``best-test-epoch``: the papers'
    protocol, selected on the test split itself, present only when the test split was scored every
    epoch), and how often the test split was read."""
    scores = run.scores
    primary, val_primary, val_best = scores.primary, scores.validation_primary, scores.validation_best
    if val_best is None:
        protocol = "best-test-epoch" if run.spec.train.eval_each_epoch else "final"
        return {"protocol": protocol, "test_reads": scores.test_reads}
    protocols: dict[str, Any] = {"best-validation-epoch": {"score": chosen.get(primary), "epoch": scores.best_epoch}}
    if scores.test_best is not None:
        protocols["best-test-epoch"] = {"score": scores.test_best.get(primary), "epoch": scores.test_best_epoch}
    return {
        "protocol": "best-validation-epoch",
        "validation": {"primary": val_primary, "score": val_best.get(val_primary), "best": val_best,
                       "best_epoch": scores.best_epoch, "per_epoch": scores.validation_per_epoch,
                       "examples": run.data_info.get("validation_examples")},
        "protocols": protocols,
        "test_reads": scores.test_reads,
        "stopped_early": scores.stopped_early,
    }


def _selection(run: TrainedRun, final_metrics: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """How the record's score was selected, and the metrics of that epoch."""
    train, best = run.spec.train, run.scores.best
    if run.scores.validation_best is not None:  # selected on the held-out validation split; the test split never steered
        return ("best-validation-epoch" if train.eval_each_epoch else "final"), best or {}
    selection = run.suite.selection if train.eval_each_epoch else "final"
    return selection, ((best or {}) if selection == "best-dev-epoch" else final_metrics)


def collect_sections(run: TrainedRun) -> dict[str, Any]:
    """The record's result sections of a trained run (``TrainingRun.run()``'s value)."""
    spec, train, scores, timing = run.spec, run.spec.train, run.scores, run.timing
    phases = PhaseTimer()  # the loop's phases, then this step's own
    phases.seconds.update(timing.phases)
    final = scores.per_epoch[-1] if scores.per_epoch else {}
    final_metrics = {k: v for k, v in final.items() if k not in ("epoch", "step")}
    selection, chosen = _selection(run, final_metrics)

    with phases.time("eval_variants"):
        variants, variant_seconds = evaluate_variants(run.adapter, run.model, run.suite, run.data, run.loaded,
                                                      train, run.ctx)
    with phases.time("analysis"):
        analysis = _analysis(run)
    with phases.time("save_adapter"):
        params = _save_adapter(run)

    primary, train_seconds = scores.primary, timing.train_seconds
    return {
        "metrics": {
            **metric_annotations(spec, primary, run.suite),
            "primary": primary,
            "score": chosen.get(primary),
            "selection": selection,
            "best": scores.best or {},
            "best_epoch": scores.best_epoch,
            "final": final_metrics,
            "per_epoch": scores.per_epoch,
            "variants": variants,
            **validation_sections(run, chosen),
        },
        "params": params,
        "memory": run.memory,
        "timing": {
            "train_seconds": train_seconds,
            "eval_seconds": timing.eval_seconds + variant_seconds,
            "load_seconds": timing.load_seconds,
            # model / data served from this process's cache (load_seconds then is small)
            "load_cached": timing.load_cached,
            "steps": timing.steps,
            "epochs": timing.epochs,
            "mean_step_seconds": timing.mean_step_seconds,
            "samples_per_second": timing.samples / train_seconds if train_seconds > 0 else None,
            "samples": timing.samples,
            # where the run's wall time went (execute_run adds environment and the rest), and each
            # evaluation; total_seconds is their sum up to what no phase names ("unaccounted")
            "phases": {"load": timing.load_seconds, **phases.seconds},
            "eval_seconds_per_epoch": timing.eval_per_epoch,
            "eval_validation_seconds": timing.validation_seconds,  # the validation passes' part of eval_seconds
            "eval_merged": timing.eval_merged,
            # in-run checkpoints written, and where a resumed run continued from (harness/pipeline/checkpoint.py)
            "checkpoints": {"saved": timing.checkpoints_saved, "resumed_from": timing.resumed_from},
        },
        "precision": {"requested": train.precision, "used": run.precision,
                      "autocast": run.precision != "fp32", "compile": compile_stats(run.compile_info)},
        "loss_curve": run.loss_curve,
        "adapter_info": run.adapter.summary(run.model),
        "analysis": analysis,
        **({"warm_start": run.warm_start} if run.warm_start is not None else {}),
        "model_info": run.model_info,
        "data_info": run.data_info,
    }
