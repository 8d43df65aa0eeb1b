"""Planning: what the user asked for (``GridRequest``) -> validated run specs, before anything loads.

``plan_grid`` validates everything it can without loading a model (names, options, ranks against the
model's shapes on the meta device, data folders) so bad input fails before any training starts:
``check_against_shapes`` attaches every adapter to the model's meta-device skeleton, ``preflight``
runs each suite's own option checks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.adapter import Adapter
from harness.config import build, field_types, to_jsonable
from harness.errors import HarnessError, UnknownNameError, closest
from harness.pipeline.attach import build_adapter, build_adapter_config, count_on_skeleton
from harness.records.record import CAP_FIELDS
from harness.registry import ADAPTERS, SUITES
from harness.spec import RunSpec, TrainConfig
from harness.suite import DataSource, Suite


@dataclass(frozen=True)
class GridRequest:
    """What the user asked for, before validation (the CLI fills it)."""

    suite: str
    adapters: str | list[str] = "all"
    tasks: str | None = None
    seeds: tuple[int, ...] | None = None
    preset: str | None = None
    model: str | None = None
    rank: int | None = None
    alpha: float | None = None
    targets: str | None = None
    adapter_options: dict[str, str] = field(default_factory=dict)
    train_overrides: dict[str, Any] = field(default_factory=dict)
    suite_options: dict[str, Any] = field(default_factory=dict)
    # `run --tuned`: the results folder whose tuning choices (harness/tuning/study.py) set each (task,
    # adapter)'s tuned values; a missing choice is an error that names the `tune` command
    tuned_from: Path | None = None
    # the papers' protocol: no validation split, the epoch selected on the test split (what `reproduce`
    # plans, and what every record made before the validation split used)
    papers_protocol: bool = False
    # `run --warm-start SOURCE`: the suite's tasks that start from SOURCE's run of the same adapter,
    # config and seed (Suite.warm_start_tasks; GLUE: mnli -> rte, mrpc, stsb); those runs are planned too
    warm_start: str | None = None


SEED_MAX = 2**32 - 1  # numpy's seeds are 32-bit; torch and random take them too


def validate_seeds(seeds: tuple[int, ...]) -> tuple[int, ...]:
    if not seeds:
        raise HarnessError("no seeds given")
    if any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise HarnessError(f"seeds must be non-negative integers in [0, {SEED_MAX}], got {list(seeds)}")
    bad = [s for s in seeds if not 0 <= s <= SEED_MAX]
    if bad:
        raise HarnessError(f"seeds must be non-negative integers in [0, {SEED_MAX}], got {bad[0]}")
    if len(set(seeds)) != len(seeds):
        raise HarnessError(f"duplicate seeds in {list(seeds)}")
    return seeds


def layer_options(adapter_cls: type[Adapter], base: Mapping[str, Any], *, rank: int | None = None,
                  alpha: float | None = None, targets: Any = None, extra: Mapping[str, Any] | None = None
                  ) -> dict[str, Any]:
    """``base`` < ``--rank``/``--alpha``/``--targets`` (each only when the adapter's config has it) < ``--opt``
    (already scoped to this adapter). The one merge of command-line options: `run` and `params` use it."""
    fields = set(field_types(adapter_cls.config_cls))  # options only: init=False fields are not options
    options = dict(base)
    for key, value in (("rank", rank), ("alpha", alpha), ("targets", targets)):
        if value is not None and key in fields:
            options[key] = value
    options.update(extra or {})
    return options


def adapter_options_for(
    adapter_cls: type[Adapter], suite: Suite, preset: str, model: str, request: GridRequest
) -> dict[str, Any]:
    """Adapter defaults < suite defaults for this model < preset options < command line."""
    fields = set(field_types(adapter_cls.config_cls))
    suite_defaults = suite.default_adapter_options(model)
    base = {key: value for key, value in suite_defaults.items() if key in fields}
    base.update(adapter_cls.preset_options(preset, suite.name, model))
    options = layer_options(adapter_cls, base, rank=request.rank, alpha=request.alpha, targets=request.targets,
                            extra=request.adapter_options)
    # a target role ("attention-qv", ...) becomes the model's module names (harness.targets)
    from harness.targets import resolve_target_options

    return resolve_target_options(options, model, fallback=suite_defaults.get("targets"))


def scope_adapter_options(adapters: list[str], options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``--opt`` per adapter: ``KEY=VALUE`` goes to each of ``adapters`` whose config has KEY (an error
    when none has it, naming the closest option); ``ADAPTER.KEY=VALUE`` to that adapter only (it
    must be selected; a KEY it lacks fails when its config is built)."""
    fields = {name: set(field_types(ADAPTERS.get(name).config_cls)) for name in adapters}
    scoped: dict[str, dict[str, Any]] = {name: {} for name in adapters}
    for key, value in options.items():
        if "." in key:
            target, option = key.split(".", 1)
            if target not in scoped:
                known = ADAPTERS.names()
                if target in known:
                    raise HarnessError(f"--opt {key}: adapter '{target}' is not in this grid "
                                       f"(selected: {', '.join(adapters)})")
                hint = closest(target, known)
                raise HarnessError(f"--opt {key}: no adapter '{target}'" + (f"; did you mean '{hint}'?" if hint else ""))
            scoped[target][option] = value
            continue
        norm = key.replace("-", "_")
        having = [name for name in adapters if norm in fields[name]]
        if not having:
            every = sorted(set().union(*fields.values())) if fields else []
            hint = closest(norm, every)
            raise HarnessError(
                f"unknown option '{key}' for the selected adapters ({', '.join(adapters)}): none of them has it"
                + (f"; did you mean '{hint}'?" if hint else ".")
                + f" Their options: {', '.join(every) or '(none)'}"
            )
        for name in having:
            scoped[name].setdefault(key, value)
    # a scoped value wins over an unscoped one for the same adapter and option
    for key, value in options.items():
        if "." in key:
            target, option = key.split(".", 1)
            scoped[target][option] = value
    return scoped


def plan_grid(request: GridRequest, *, cuda_available: bool, data: DataSource | None = None) -> list[RunSpec]:
    from harness.presets import default_preset_name, get_preset

    suite: Suite = SUITES.get(request.suite)()
    preset_name = request.preset or default_preset_name(cuda_available)
    preset = get_preset(preset_name)
    if preset_name not in suite.presets:
        raise HarnessError(f"suite '{suite.name}' has no preset '{preset_name}'; its presets: {', '.join(suite.presets)}")
    tasks = suite.resolve_tasks(request.tasks, preset_name)
    if request.tasks is None and data is not None:
        tasks = [t for t in tasks if suite.task_available(t, data)]
    adapters = ADAPTERS.resolve_list(request.adapters)
    seeds = validate_seeds(tuple(request.seeds) if request.seeds is not None else preset.seeds)
    model = request.model or suite.default_model(preset_name)
    check_model_reachable(model)
    suite.check_model(model)
    for key in request.suite_options:
        if key not in suite.option_names():
            hint = closest(key, suite.option_names())
            raise HarnessError(
                f"unknown suite option '{key}' for suite '{suite.name}'"
                + (f"; did you mean '{hint}'?" if hint else ".")
                + f" Valid options: {', '.join(suite.option_names()) or '(none)'}"
            )
    # plan-time values the suite resolves from the environment (MT-Bench's judge) enter the spec, and so
    # the config hash: runs judged by different judges never share a record
    suite_options = suite.resolve_options(preset_name, model, dict(request.suite_options))
    refuse_secrets("--suite-opt", suite_options)
    refuse_secrets("--opt", request.adapter_options)
    explicit = request.adapters != "all" and request.adapters != ["all"]
    applicable = [a for a in adapters if suite.family in ADAPTERS.get(a).families]
    per_adapter = scope_adapter_options(applicable, dict(request.adapter_options)) if applicable else {}
    specs: list[RunSpec] = []
    for adapter_name in adapters:
        adapter_cls = ADAPTERS.get(adapter_name)
        if suite.family not in adapter_cls.families:
            if explicit:
                raise HarnessError(
                    f"adapter '{adapter_name}' does not apply to {suite.family} models (suite '{suite.name}'); "
                    f"it applies to: {', '.join(adapter_cls.families)}"
                )
            continue  # `--adapters all` means all that apply
        options = adapter_options_for(adapter_cls, suite, preset_name, model,
                                      replace(request, adapter_options=per_adapter[adapter_name]))
        adapter_config = build_adapter_config(adapter_name, options)  # the spec records its options
        for task in tasks:
            train = suite.train_config(preset_name, task, model)
            merged = {**to_jsonable(train), **adapter_cls.train_overrides_for(preset_name, suite.name, model),
                      **_drop_none(request.train_overrides)}
            if request.papers_protocol:
                merged["validation"] = None
            task_config = adapter_config
            if request.tuned_from is not None:
                from harness.records.tuning_choice import read_choice

                choice = read_choice(request.tuned_from, suite.name, task, adapter_name, model, preset_name)
                merged.update(choice.get("train") or {})
                if choice.get("adapter_options"):
                    task_config = build_adapter_config(adapter_name, {**options, **choice["adapter_options"]})
            train = build(TrainConfig, merged, "training")
            train.check_plausible()  # --lr 2e5, --batch-size 10**30: refused here with the range
            suite.check_train_config(task, train)  # --limit on a suite that ignores it, undeclared metrics
            annotations = None
            for seed in seeds:
                spec = RunSpec(suite=suite.name, task=task, adapter=adapter_name, model=model, preset=preset_name,
                               seed=seed, adapter_options=task_config.to_dict(), train=train,
                               suite_options=dict(suite_options))
                # the record's annotations, the same for every seed: computed once, handed to the run
                annotations = preset_annotations(spec, suite) if annotations is None else annotations
                specs.append(replace(spec, annotations=annotations))
    if not specs:
        raise HarnessError(f"no adapter in the list applies to suite '{suite.name}'")
    if data is not None:
        for task in tasks:
            suite.check_data(task, data)
    if request.warm_start:
        specs = with_warm_starts(specs, suite, request, cuda_available, data)
    return specs


def with_warm_starts(specs: list[RunSpec], suite: Suite, request: GridRequest, cuda_available: bool,
                     data: DataSource | None) -> list[RunSpec]:
    """The runs of the warm-started tasks start from the source task's run of the same adapter and seed
    (planned here with the source task's own budget, and put first); the others are unchanged."""
    source = request.warm_start
    targets = suite.warm_start_tasks.get(source or "")
    if not targets:
        offered = ", ".join(f"{s} (for {', '.join(t)})" for s, t in suite.warm_start_tasks.items()) or "none"
        raise HarnessError(f"--warm-start {source}: suite '{suite.name}' warm-starts from: {offered}")
    if not any(spec.task in targets for spec in specs):
        raise HarnessError(f"--warm-start {source} applies to the tasks {', '.join(targets)}; none is planned")
    parents = plan_grid(replace(request, tasks=source, warm_start=None), cuda_available=cuda_available, data=data)
    by_run = {(p.adapter, p.seed): p for p in parents}
    planned = {s.run_id for s in specs}
    out = [p for p in parents if p.run_id not in planned]
    for spec in specs:
        if spec.task in targets:
            parent = by_run[(spec.adapter, spec.seed)]
            spec = replace(spec, warm_start={"task": parent.task, "config_hash": parent.config_hash})
        out.append(spec)
    return out


def refuse_secrets(flag: str, options: Mapping[str, Any]) -> None:
    """No option value that enters a spec may carry a URL's credentials or query (they would be in
    the record, the config hash and every log line): a suite that takes such a URL (MT-Bench's
    judge_base_url) keeps the secret out of its resolved options itself; anything else is refused,
    the line showing the URL's public form only."""
    from harness.redact import has_secret, public_url

    for key, value in options.items():
        if has_secret(value):
            raise HarnessError(f"{flag} {key}={public_url(str(value))}...: the URL carries credentials or a query "
                               "string, which would be written into the run's record and config hash; give them "
                               "through the environment instead")


def check_model_reachable(model: str) -> None:
    """A model must be a catalogue name, a local folder, or a hub id (org/name) with the hub reachable;
    anything else fails here with the closest catalogue name, before a download is tried."""
    from harness.models import find_model_entry, get_model_entry, hub_offline

    if find_model_entry(model) is not None:
        return
    if Path(model).expanduser().is_dir():
        check_model_folder(Path(model).expanduser())
        return
    try:
        get_model_entry(model)
    except UnknownNameError as exc:
        if hub_offline():
            hint = closest(exc.name, exc.known)
            raise HarnessError(
                f"model '{model}' is neither in the catalogue nor a local folder, and the hub is off (HF_HUB_OFFLINE=1)"
                + (f"; did you mean '{hint}'?" if hint else "")
            ) from None
        if "/" not in model:  # hub ids are org/name; a bare unknown name is a typo, not a download
            raise
    # an org/name hub id while online: the download itself reports an unreachable hub


MODEL_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                      "pytorch_model.bin.index.json")


def check_model_folder(folder: Path) -> None:
    """A local --model folder must be a Hugging Face model (as save_pretrained writes it): a config.json
    that transformers can read, and weights; else one line now instead of a traceback at load time."""
    if not (folder / "config.json").is_file():
        raise HarnessError(f"model folder {folder} is not a model: it has no config.json (give a folder written by "
                           "save_pretrained, a catalogue name or a hub id)")
    if not any((folder / name).is_file() for name in MODEL_WEIGHT_FILES):
        raise HarnessError(f"model folder {folder} has no weights ({', '.join(MODEL_WEIGHT_FILES)})")
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(str(folder))
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, JSONDecodeError...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HarnessError(f"model folder {folder}: transformers cannot read its config.json ({first[:200]})") from None


def preflight(specs: list[RunSpec]) -> None:
    """Each suite's option checks (``Suite.preflight``), once per distinct (suite, preset, model,
    options): they must fail before the first run loads anything."""
    seen: set[str] = set()
    for spec in specs:
        ident = json.dumps([spec.suite, spec.preset, spec.model, spec.suite_options], sort_keys=True, default=str)
        if ident in seen:
            continue
        seen.add(ident)
        SUITES.get(spec.suite)().preflight(dict(spec.suite_options), spec.preset, spec.model)


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def check_against_shapes(specs: list[RunSpec]) -> dict[tuple[str, str], int]:
    """Build each (adapter, config) on the model's meta-device skeleton: rank/split errors surface
    here, before any weights load. Returns the adapter parameter count per (adapter, config hash)."""
    counts: dict[tuple[str, str], int] = {}
    done: set[tuple[str, str, str]] = set()
    for spec in specs:
        key = (spec.adapter, spec.model, spec.config_hash)
        if key in done:
            continue
        done.add(key)
        suite: Suite = SUITES.get(spec.suite)()
        skeleton = suite.meta_model(spec.model, spec.task)
        if skeleton is None:
            continue
        model, head = skeleton
        adapter = build_adapter(spec.adapter, dict(spec.adapter_options))
        counts[(spec.adapter, spec.config_hash)] = count_on_skeleton(adapter, model, head, suite.family)
    return counts


def preset_annotations(spec: RunSpec, suite: Suite | None = None) -> dict[str, Any]:
    """What the tables need without importing torch or the suites (harness/aggregate/): the preset's
    training settings and adapter options for this run, so that a row shows what differs from them;
    the caps applied and those below the preset's (a "limited" run); the suite's default tasks. Never
    part of the config hash. A plug-in whose defaults cannot be rebuilt gets ``preset_defaults_error``
    and the tables label its row "preset defaults unknown" (harness/aggregate/identity.py)."""
    try:
        suite = suite if suite is not None else SUITES.get(spec.suite)()
        adapter_cls = ADAPTERS.get(spec.adapter)
        preset_train = build(TrainConfig, {**to_jsonable(suite.train_config(spec.preset, spec.task, spec.model)),
                                           **adapter_cls.train_overrides_for(spec.preset, spec.suite, spec.model)},
                             "training")
        options = adapter_options_for(adapter_cls, suite, spec.preset, spec.model, GridRequest(suite=spec.suite))
        preset_options = build_adapter_config(spec.adapter, options).to_dict()
        tasks = suite.default_tasks(spec.preset)
    except Exception as exc:  # an annotation must never cost a run
        return {"preset_defaults_error": f"{type(exc).__name__}: {exc}"}
    applied = {name: getattr(spec.train, name) for name in CAP_FIELDS}
    preset = {name: getattr(preset_train, name) for name in CAP_FIELDS}
    below = [n for n in CAP_FIELDS if applied[n] is not None and (preset[n] is None or applied[n] < preset[n])]
    return {
        "preset_defaults": {"train": to_jsonable(preset_train), "adapter_options": preset_options,
                            "suite_tasks": list(tasks)},
        "caps": {"applied": applied, "preset": preset, "below_preset": below},
    }
