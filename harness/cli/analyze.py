"""``python -m harness analyze RUN1 RUN2``: SeRA's subspace similarity φ(i, j) between two runs'
updates, rebuilt from the adapter tensors saved with ``--save-adapters`` (the maths: harness.pipeline.analysis).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.pipeline.analysis import subspace_similarity
from harness.untrusted import safe_print

if TYPE_CHECKING:
    import torch


def _resolve_run(path_text: str) -> tuple[dict[str, Any], Path]:
    """A record (.json) or an adapter file (.adapter.safetensors) -> (record, adapter file)."""
    path = Path(path_text)
    if path.name.endswith(".adapter.safetensors"):
        adapter_file = path
        record_path = path.with_name(path.name[: -len(".adapter.safetensors")] + ".json")
    else:
        record_path = path
        adapter_file = path.with_suffix(".adapter.safetensors")
    if not record_path.is_file():
        raise HarnessError(f"run record {record_path} not found (analyze takes two records or their adapter files)")
    if not adapter_file.is_file():
        raise HarnessError(
            f"no adapter tensors at {adapter_file}; rerun that run with `harness run ... --save-adapters --force`"
        )
    try:
        record = json.loads(record_path.read_bytes().decode("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise HarnessError(f"cannot read run record {record_path}: {exc}") from None
    except UnicodeDecodeError:
        raise HarnessError(f"cannot read run record {record_path}: not UTF-8 JSON") from None
    except RecursionError:
        raise HarnessError(f"cannot read run record {record_path}: JSON nested too deeply") from None
    if not isinstance(record, dict) or not isinstance(record.get("spec"), dict):
        raise HarnessError(f"{record_path} is not a run record (no 'spec')")
    spec = record["spec"]
    for key in ("suite", "task", "adapter", "model"):  # what run_deltas rebuilds the run from
        if not isinstance(spec.get(key), str) or not spec[key]:
            raise HarnessError(f"{record_path} is not a usable run record: spec.{key} must be a name, "
                               f"got {json.dumps(spec.get(key))[:60]}")
    if not isinstance(spec.get("adapter_options", {}), dict):
        raise HarnessError(f"{record_path} is not a usable run record: spec.adapter_options must be an object")
    return record, adapter_file


def _materialise(model: Any, state: dict[str, torch.Tensor]) -> None:
    """Give the meta-device adapter tensors real storage (shared ones stay shared) and load them."""
    import torch

    from harness.parameters import unique_named_parameters

    by_name = dict(unique_named_parameters(model))
    missing = [k for k in state if k not in by_name]
    if missing:
        raise HarnessError(f"the saved adapter has tensors this model lacks: {missing[:3]}")
    wanted = {id(by_name[k]): state[k] for k in state}
    replaced: dict[int, torch.nn.Parameter] = {}
    for module in model.modules():
        for pname, param in list(module._parameters.items()):
            if param is not None and id(param) in wanted:
                if id(param) not in replaced:
                    value = wanted[id(param)].to(torch.float32)
                    if tuple(value.shape) != tuple(param.shape):  # a file from another run or model
                        raise HarnessError(f"the saved adapter tensor for {pname} has shape {tuple(value.shape)}, "
                                           f"the run's model needs {tuple(param.shape)}")
                    replaced[id(param)] = torch.nn.Parameter(value.clone(), requires_grad=False)
                module._parameters[pname] = replaced[id(param)]


def run_deltas(record: dict[str, Any], adapter_file: Path) -> dict[tuple[str, str], torch.Tensor]:
    """Rebuild one run's updates: the model skeleton on the meta device, the adapter applied with the
    run's options, its saved tensors loaded, then the adapter's own ``delta_components``."""
    from safetensors.torch import load_file

    from harness.pipeline.attach import SKELETON_TOTAL_STEPS, attach, build_adapter
    from harness.registry import SUITES

    spec = record["spec"]
    suite = SUITES.get(spec["suite"])()
    skeleton = suite.meta_model(spec["model"], spec["task"])
    if skeleton is None:
        raise HarnessError(f"suite '{suite.name}' cannot rebuild model '{spec['model']}' offline for the analysis")
    model, head = skeleton
    adapter = build_adapter(spec["adapter"], dict(spec.get("adapter_options") or {}))
    model = attach(adapter, model, family=suite.family, head_modules=head, total_steps=SKELETON_TOTAL_STEPS)
    try:
        state = load_file(str(adapter_file))
    except Exception as exc:  # safetensors raises its own SafetensorsError, OSError, ValueError...
        raise HarnessError(f"cannot read adapter file {adapter_file}: {type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else 'corrupt'}") from None
    _materialise(model, state)
    try:
        components = adapter.delta_components(model)
    except (NotImplementedError, RuntimeError) as exc:
        raise HarnessError(f"adapter '{spec['adapter']}' updates cannot be rebuilt from its saved tensors: {exc}") from None
    if not components:
        raise HarnessError(f"adapter '{spec['adapter']}' has no low-rank updates to compare")
    return {(c.module, c.component): c.delta for c in components if not c.delta.is_meta}


def _format_table(matrix: list[list[float]]) -> str:
    n = len(matrix)
    lines = ["i\\j " + " ".join(f"{j:>6}" for j in range(1, n + 1))]
    for i, row in enumerate(matrix, start=1):
        lines.append(f"{i:>3} " + " ".join(f"{v:6.3f}" for v in row))
    return "\n".join(lines)


def analyze_main(argv: list[str]) -> int:
    """``harness analyze RUN1 RUN2``: SeRA's subspace similarity φ(i, j) between two runs' updates."""
    from harness.cli.parser import ANALYZE_DESCRIPTION, add_analyze_arguments

    parser = argparse.ArgumentParser(prog="harness analyze", description=ANALYZE_DESCRIPTION)
    add_analyze_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse's own usage errors: one line and exit 2 like the CLI
        return int(exc.code or 0)
    if args.max_rank < 1:
        raise HarnessError(f"--max-rank must be a positive integer, got {args.max_rank}")
    runs = [_resolve_run(args.run1), _resolve_run(args.run2)]
    deltas = [run_deltas(record, path) for record, path in runs]
    keys = [k for k in deltas[0] if k in deltas[1]]
    if args.module:
        keys = [k for k in keys if args.module in k[0]]
    if args.component:
        keys = [k for k in keys if k[1] == args.component]
    if not keys:
        raise HarnessError("the two runs have no module and component in common (check --module/--component)")
    tables = {f"{m} {c}": subspace_similarity(deltas[0][(m, c)], deltas[1][(m, c)], args.max_rank, args.space) for m, c in keys}
    size = min(len(t) for t in tables.values())
    mean = [[sum(t[i][j] for t in tables.values()) / len(tables) for j in range(size)] for i in range(size)]
    ids = [r.get("run_id", "?") for r, _ in runs]
    if args.json:
        print(json.dumps({"runs": ids, "space": args.space, "mean": mean, "modules": tables}, indent=1))
        return 0
    safe_print(f"subspace similarity phi(i, j) between {ids[0]} and {ids[1]} ({args.space} space, {len(tables)} module(s))")
    if args.per_module:
        for name, table in tables.items():
            safe_print(f"\n{name}\n{_format_table(table)}")
    safe_print(f"\nmean over {len(tables)} module(s)\n{_format_table(mean)}")
    sys.stdout.flush()
    return 0
