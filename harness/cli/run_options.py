"""What ``run`` (and ``tune``, and the Python API) build from the parsed flags: the plan's request, the
executor's Slurm and checkpoint options, the tuned runs' record sections, the dry run's resolved
settings (harness/cli/run.py calls these)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from harness.cli.parser import TRAIN_OVERRIDES, _alpha, _int_flag, _rank, _seeds
from harness.errors import HarnessError


def slurm_options(args: argparse.Namespace) -> Any:
    """--slurm-* flags -> SlurmOptions (None unless --executor slurm; an error if given without it)."""
    given = {name: getattr(args, name, None) for name in ("slurm_partition", "slurm_gpus_per_task", "slurm_time",
                                                          "slurm_array_parallelism", "slurm_resubmit")}
    extra = tuple(getattr(args, "slurm_extra", None) or ())
    if getattr(args, "executor", "local") != "slurm":
        named = [f"--{k.replace('_', '-')}" for k, v in given.items() if v is not None] + (["--slurm-extra"] if extra else [])
        if named:
            raise HarnessError(f"{', '.join(named)} apply to --executor slurm")
        return None
    from harness.grid.executor_slurm import SlurmOptions

    kwargs: dict[str, Any] = {"extra": extra, "partition": given["slurm_partition"]}
    if given["slurm_time"] is not None:
        kwargs["time"] = given["slurm_time"]
    for name, flag in (("gpus_per_task", "slurm_gpus_per_task"), ("array_parallelism", "slurm_array_parallelism"),
                       ("resubmit", "slurm_resubmit")):
        value = given[flag]
        if value is not None:
            kwargs[name] = int(value) if str(value).strip().isdigit() else _int_flag(value, f"--{flag.replace('_', '-')}")
    return SlurmOptions(**kwargs)


def checkpoint_options(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """In-run checkpoints under <results>/.checkpoints (unless --no-checkpoints), every epoch's end and
    every --checkpoint-every N steps. Execution options only: no run's identity changes."""
    from harness.pipeline.checkpoint import CHECKPOINT_DIR

    every = _int_flag(getattr(args, "checkpoint_every", None), "--checkpoint-every")
    if getattr(args, "no_checkpoints", False):
        if every:
            raise HarnessError("--checkpoint-every and --no-checkpoints contradict each other")
        return {"checkpoint_dir": None, "checkpoint_every": None}
    return {"checkpoint_dir": str(root.resolve() / CHECKPOINT_DIR), "checkpoint_every": every}


def tuned_sections(specs: list[Any], results: Path) -> dict[str, dict[str, Any]]:
    """The ``tuning`` record section of every run planned at tuned values, by run id."""
    from harness.records.tuning_choice import read_choice, tuned_section
    from harness.records.tuning_paths import choice_path

    out = {}
    for spec in specs:
        choice = read_choice(results, spec.suite, spec.task, spec.adapter, spec.model, spec.preset)
        path = choice_path(results, spec.suite, spec.task, spec.adapter, spec.model, spec.preset)
        out[spec.run_id] = tuned_section(choice, path, results)
    return out


def grid_request(args: argparse.Namespace, preset: str, cuda: bool, *, tuned_from: Path | None = None) -> Any:
    """The parsed run flags as the plan's request (``run``, ``tune`` and the Python API, harness.api)."""
    from harness.config import parse_key_values
    from harness.pipeline.plan import GridRequest

    overrides = {}
    for name in TRAIN_OVERRIDES:
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    overrides["precision"] = _resolve_precision(args.precision, args.device, cuda)
    if args.compile:
        overrides["compile"] = True
    return GridRequest(
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
        tuned_from=tuned_from,
        warm_start=getattr(args, "warm_start", None),
    )


def _resolve_precision(requested: str, device: str, cuda: bool) -> str:
    """--precision auto becomes what the device supports, before planning, so that the spec (and the
    config hash) names the precision the run really used."""
    if requested != "auto":
        return requested
    if not cuda or device == "cpu":
        return "fp32"
    import torch

    return "bf16" if torch.cuda.is_bf16_supported() else "fp32"


def resolved_settings(specs: list[Any]) -> str:
    """What the planned runs will use, resolved (adapter defaults < suite < preset < command line): each
    adapter's options, and the training settings per task (``harness ls adapters --suite S --preset P``
    shows the same options without planning a grid)."""
    from harness.cli.info import format_options

    if not specs:
        return ""
    first = specs[0]
    lines = [f"resolved settings (suite {first.suite}, preset {first.preset}, model {first.model}):"]
    seen: dict[str, list[str]] = {}
    for spec in specs:
        text = format_options(spec.adapter_options)
        if text not in seen.setdefault(spec.adapter, []):
            seen[spec.adapter].append(text)
    for adapter, texts in seen.items():
        for text in texts:
            lines.append(f"  {adapter:<10} {text}")
    training: dict[str, list[str]] = {}
    keys = ("epochs", "lr", "head_lr", "batch_size", "grad_accum", "max_length", "max_train_samples",
            "max_eval_samples", "max_steps", "limit")
    for spec in specs:
        train = dataclasses.asdict(spec.train) if dataclasses.is_dataclass(spec.train) else dict(spec.train)
        text = " ".join(f"{k}={train.get(k)}" for k in keys if k in train and train.get(k) is not None)
        label = f"{spec.task} {spec.adapter}"
        if label not in training.setdefault(text, []):
            training[text].append(label)
    lines.append("  training (per task and adapter):")
    for text, labels in training.items():
        tasks = sorted({lab.split(" ")[0] for lab in labels})
        adapters = sorted({lab.split(" ")[1] for lab in labels})
        lines.append(f"    {','.join(tasks)} [{','.join(adapters) if len(adapters) < len(seen) else 'all'}]: {text}")
    return "\n".join(lines)
