"""``harness ls`` (adapters, suites, models, presets) and ``harness params`` (trainable parameters per
adapter, counted on the meta device).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
from collections.abc import Callable
from typing import Any

from harness.cli.parser import _alpha, _rank
from harness.errors import HarnessError
from harness.untrusted import safe_print


def cmd_ls(args: argparse.Namespace) -> int:
    from harness.registry import ADAPTERS, SUITES

    if args.what != "adapters" and (args.suite or args.preset or args.model):
        raise HarnessError("--suite, --preset and --model apply to `ls adapters`")
    if args.what == "adapters" and (args.suite or args.preset or args.model):
        if not args.suite:
            raise HarnessError("ls adapters: --preset/--model need --suite (the options depend on the suite)")
        preset, model, resolved = resolved_adapter_options(args.suite, args.preset or "cpu", args.model)
        print(f"options a run would use: suite {args.suite}, preset {preset}, model {model}")
        for name, (options, train) in resolved.items():
            print(f"{name:<12} {ADAPTERS.get(name).description}")
            print(f"{'':<12} options: {format_options(options)}")
            if train:
                print(f"{'':<12} training: {format_options(train)} (the adapter's own, over the preset's)")
    elif args.what == "adapters":
        print("adapter defaults; suites and presets change some of them: `harness ls adapters --suite S "
              "--preset P` shows what a run uses")
        for name in ADAPTERS.names():
            cls = ADAPTERS.get(name)
            safe_print(f"{name:<12} {cls.description}  [families: {', '.join(cls.families)}]")
            safe_print(f"{'':<12} options: {_adapter_option_text(cls)}")
    elif args.what == "suites":
        for name in SUITES.names():
            cls = SUITES.get(name)
            safe_print(f"{name:<16} {cls.description}  [tasks: {', '.join(cls.tasks)}]")
    elif args.what == "models":
        from harness.models import model_entries

        for entry in model_entries():
            where = "local" if entry.local_path() is not None else ("hub" if entry.hub_id else "-")
            safe_print(f"{entry.name:<20} {entry.family:<12} {where:<6} {entry.hub_id or '':<36} {entry.description}")
    else:
        from harness.presets import PRESETS

        for preset in PRESETS.values():
            safe_print(f"{preset.name:<8} seeds={','.join(map(str, preset.seeds)):<18} {preset.description}")
            for line in _preset_budget_lines(preset.name):
                safe_print(f"{'':<8} {line}")
    return 0


def format_options(options: dict[str, Any]) -> str:
    parts = []
    for key, value in sorted(options.items()):
        if isinstance(value, (list, tuple)):
            value = ",".join(map(str, value)) or "()"
        parts.append(f"{key}={value}")
    return " ".join(parts) or "(none)"


def resolved_adapter_options(suite_name: str, preset: str, model: str | None,
                             adapters: list[str] | None = None, request: Any = None
                             ) -> tuple[str, str, dict[str, tuple[dict[str, Any], dict[str, Any]]]]:
    """Per adapter that applies to the suite: the options and the adapter's own training overrides a run
    of this suite, preset and model would use (adapter defaults < suite < preset < command line), as
    ``harness.pipeline.plan`` resolves them."""
    from harness.pipeline.plan import GridRequest, adapter_options_for, build_adapter_config
    from harness.registry import ADAPTERS, SUITES

    suite = SUITES.get(suite_name)()
    if preset not in suite.presets:
        raise HarnessError(f"suite '{suite_name}' has no preset '{preset}'; its presets: {', '.join(suite.presets)}")
    model = model or suite.default_model(preset)
    request = request or GridRequest(suite=suite_name, adapters="all", preset=preset)
    out = {}
    for name in adapters or ADAPTERS.names():
        cls = ADAPTERS.get(name)
        if suite.family not in cls.families:
            continue
        options = build_adapter_config(name, adapter_options_for(cls, suite, preset, model, request)).to_dict()
        out[name] = (options, dict(cls.train_overrides_for(preset, suite.name, model)))
    return preset, model, out


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
    from harness.config import field_types, parse_key_values
    from harness.models import get_model_entry
    from harness.pipeline.attach import build_adapter, count_on_skeleton
    from harness.pipeline.plan import layer_options, scope_adapter_options
    from harness.registry import ADAPTERS

    if args.preset and not args.suite:
        raise HarnessError("params --preset needs --suite (the options a run uses depend on the suite)")
    if args.preset:
        return _params_resolved(args)
    entry = get_model_entry(args.model or "roberta-base")
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
        base = {"targets": default_targets} if "targets" in field_types(cls.config_cls) else {}
        # --rank/--alpha/--targets and --opt (ADAPTER.KEY to that one only) merged as `run` merges them
        options = layer_options(cls, base, rank=_rank(args.rank), alpha=_alpha(args.alpha), targets=args.targets or None,
                                extra=scoped[name])
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
            safe_print(f"{row['adapter']:<12} {row['trainable_params']:>18,}  {opts}")
        safe_print("(the adapters' default options; a run uses its suite's and preset's: "
              f"`harness params --suite {args.suite or 'S'} --preset cpu|paper` counts those)")
    return 0


def _params_resolved(args: argparse.Namespace) -> int:
    """``params --suite S --preset P``: planned exactly as ``run`` plans (harness.pipeline.plan), counted on the
    meta device by the same shape check, so the numbers are the runs' own."""
    from harness.config import parse_key_values
    from harness.pipeline.plan import GridRequest, check_against_shapes, plan_grid

    request = GridRequest(suite=args.suite, adapters=args.adapters, tasks=None, seeds=(0,), preset=args.preset,
                          model=args.model, rank=_rank(args.rank), alpha=_alpha(args.alpha), targets=args.targets,
                          adapter_options=parse_key_values(args.opt))
    specs = plan_grid(request, cuda_available=False, data=None)
    first = {}
    for spec in specs:  # the adapter's parameters do not depend on the task (the head is counted apart)
        first.setdefault(spec.adapter, spec)
    counts = check_against_shapes(list(first.values()))
    rows = [{"adapter": name, "trainable_params": counts.get((name, spec.config_hash)), "model": spec.model,
             "preset": spec.preset, "options": spec.adapter_options} for name, spec in first.items()]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    model = rows[0]["model"] if rows else "?"
    print(f"{'adapter':<12} {'trainable params':>18}  options  (suite {args.suite}, preset {args.preset}, "
          f"model {model}; as a run uses them; heads excluded)")
    for row in rows:
        n = row["trainable_params"]
        print(f"{row['adapter']:<12} {(f'{n:,}' if n is not None else '?'):>18}  {format_options(row['options'])}")
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
