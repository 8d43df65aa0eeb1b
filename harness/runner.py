"""Plan and execute runs: suites x tasks x adapters x seeds, one record per run.

``plan_grid`` validates everything it can without loading a model (names, options, ranks against the
model's shapes on the meta device, data folders) so bad input fails before any training starts.
``execute_run`` never raises for a run that goes wrong: a diverged, out-of-memory or failed run becomes
a record with that status, so one bad run cannot crash or hide in a grid. ``run_grid`` runs a grid
sequentially in this process; ``harness.executors`` runs it on parallel local workers or on Ray.

Within a process, runs that share (suite, model, task, seed, ...) share one model load and one
tokenized dataset (``LoadCache``); the grid is executed in an order that puts such runs next to each
other, so a cache of one or two entries is enough.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.adapter import Adapter, ApplyContext, LowRankConfig, check_rank_fits
from harness.config import build, field_types, to_jsonable
from harness.errors import HarnessError, UnknownNameError, closest
from harness.measure import (
    CudaStepMemory,
    MemoryMeter,
    PhaseTimer,
    SavedTensorMeter,
    StepTimer,
    count_parameters,
    module_param_ids,
)
from harness.record import SCHEMA_VERSION
from harness.registry import ADAPTERS, SUITES
from harness.signals import deferred, signal_name
from harness.spec import RunSpec, TrainConfig, loop_only_fields
from harness.store import DONE_STATUSES, NEWER_SCHEMA, ResultStore
from harness.suite import DataSource, LoadedModel, RunContext, Suite, TaskData

MAX_LOSS_POINTS = 400
# A pristine copy of a loaded model is kept for the next run only when its weights are on the CPU and
# take at most this much memory (env HARNESS_MODEL_CACHE_MB; 0 turns the model cache off). Above it a
# second copy in RAM costs more than reloading from the local disk saves.
DEFAULT_MODEL_CACHE_MB = 2048
# TrainConfig fields that only steer the training loop (their metadata says so); every other field may
# change the loaded data
LOOP_ONLY_FIELDS = loop_only_fields()


class DivergedError(RuntimeError):
    def __init__(self, step: int, loss: float):
        super().__init__(f"loss became {loss} at step {step}")
        self.step = step
        self.loss = loss


class RunCancelled(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM/SIGHUP) during a run: carries the run's ``cancelled`` record so that it is
    written, not lost, and the signal (None for a plain KeyboardInterrupt) for the exit code."""

    def __init__(self, record: dict[str, Any], signum: int | None = None):
        super().__init__("run cancelled")
        self.record = record
        if signum is not None:
            self.signum = signum

    def __reduce__(self) -> tuple[Any, ...]:  # a pool worker sends it to the driver
        return (RunCancelled, (self.record, getattr(self, "signum", None)))


# ---------------------------------------------------------------------------------------------------
# planning
# ---------------------------------------------------------------------------------------------------


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


def validate_seeds(seeds: tuple[int, ...]) -> tuple[int, ...]:
    if not seeds:
        raise HarnessError("no seeds given")
    if any(s < 0 for s in seeds):
        raise HarnessError(f"seeds must be non-negative integers, got {list(seeds)}")
    if len(set(seeds)) != len(seeds):
        raise HarnessError(f"duplicate seeds in {list(seeds)}")
    return seeds


def adapter_options_for(
    adapter_cls: type[Adapter], suite: Suite, preset: str, model: str, request: GridRequest
) -> dict[str, Any]:
    """Adapter defaults < suite defaults for this model < preset options < command line."""
    options: dict[str, Any] = {}
    fields = set(field_types(adapter_cls.config_cls))  # options only: init=False fields are not options
    for key, value in suite.default_adapter_options(model).items():
        if key in fields:
            options[key] = value
    options.update(adapter_cls.preset_options(preset, suite.name, model))
    if request.rank is not None and "rank" in fields:
        options["rank"] = request.rank
    if request.alpha is not None and "alpha" in fields:
        options["alpha"] = request.alpha
    if request.targets is not None and "targets" in fields:
        options["targets"] = request.targets
    options.update(request.adapter_options)
    # a target role ("attention-qv", ...) becomes the model's module names (harness.targets)
    from harness.targets import resolve_target_options

    return resolve_target_options(options, model, fallback=suite.default_adapter_options(model).get("targets"))


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
                + (f"; did you mean '{hint}'?" if hint else "")
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


def build_adapter(name: str, options: dict[str, Any]) -> Adapter:
    adapter_cls = ADAPTERS.get(name)
    config = build(adapter_cls.config_cls, options, f"adapter '{name}'")
    return adapter_cls(config)


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
                + (f"; did you mean '{hint}'?" if hint else "")
                + f" Valid options: {', '.join(suite.option_names()) or '(none)'}"
            )
    # plan-time values the suite resolves from the environment (MT-Bench's judge) enter the spec, and so
    # the config hash: runs judged by different judges never share a record
    suite_options = suite.resolve_options(preset_name, model, dict(request.suite_options))
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
        adapter = build_adapter(adapter_name, options)
        for task in tasks:
            train = suite.train_config(preset_name, task, model)
            merged = {**to_jsonable(train), **adapter_cls.train_overrides_for(preset_name, suite.name, model),
                      **_drop_none(request.train_overrides)}
            train = build(TrainConfig, merged, "training")
            suite.check_train_config(task, train)  # --limit on a suite that ignores it, undeclared metrics
            for seed in seeds:
                specs.append(
                    RunSpec(
                        suite=suite.name,
                        task=task,
                        adapter=adapter_name,
                        model=model,
                        preset=preset_name,
                        seed=seed,
                        adapter_options=adapter.config.to_dict(),
                        train=train,
                        suite_options=dict(suite_options),
                    )
                )
    if not specs:
        raise HarnessError(f"no adapter in the list applies to suite '{suite.name}'")
    if data is not None:
        for task in tasks:
            suite.check_data(task, data)
    return specs


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


def count_on_skeleton(adapter: Adapter, model: Any, head: tuple[str, ...], family: str) -> int:
    from harness.targets import find_sites

    head_ids = module_param_ids(model, head)
    sites = tuple(find_sites(model, adapter.config.targets, exclude=head)) if isinstance(adapter.config, LowRankConfig) else ()
    check_rank_fits(adapter, sites)
    adapter.check_sites(sites)
    model = adapter.apply(model, ApplyContext(family=family, sites=sites, head_modules=head, total_steps=1000))
    return count_parameters(model, head_ids).adapter_trainable


# ---------------------------------------------------------------------------------------------------
# execution
# ---------------------------------------------------------------------------------------------------


@dataclass
class ExecutionOptions:
    device: str = "auto"
    data: DataSource = field(default_factory=lambda: DataSource(None))
    save_adapters: bool = False
    progress: bool = True
    threads: int | None = None
    cache: bool = True  # share model loads and tokenized data between the runs of this process


# ---------------------------------------------------------------------------------------------------
# caching loads within a process
# ---------------------------------------------------------------------------------------------------


class LoadCache:
    """A small LRU of loads, per process. Entries hold the value and the RNG state right after the
    load, which a hit restores: a cached run then sees exactly the random numbers an uncached run
    would (the classifier head is initialised by the seeded RNG inside the load)."""

    def __init__(self, entries: int):
        if entries < 1:
            raise ValueError("a LoadCache needs at least one entry")
        self.entries = entries
        self._items: OrderedDict[Hashable, tuple[Any, Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> tuple[Any, Any] | None:
        item = self._items.get(key)
        if item is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return item

    def put(self, key: Hashable, value: Any, rng: Any) -> None:
        self._items[key] = (value, rng)
        self._items.move_to_end(key)
        while len(self._items) > self.entries:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


# one entry each is enough because execution_order groups runs that share a load
MODEL_CACHE = LoadCache(1)
DATA_CACHE = LoadCache(2)


def _rng_state() -> tuple[Any, ...]:
    import numpy as np
    import torch

    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda


def _set_rng_state(state: tuple[Any, ...]) -> None:
    import numpy as np
    import torch

    py, npy, cpu, cuda = state
    random.setstate(py)
    np.random.set_state(npy)
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


def model_cache_limit_bytes() -> int:
    return int(float(os.environ.get("HARNESS_MODEL_CACHE_MB", DEFAULT_MODEL_CACHE_MB)) * 2**20)


def _cacheable_model(model: Any) -> bool:
    """Only CPU-resident models that fit the budget: a GPU copy would halve what a run may use."""
    tensors = [*model.parameters(), *model.buffers()]
    if any(t.device.type != "cpu" for t in tensors):
        return False
    return sum(t.numel() * t.element_size() for t in tensors) <= model_cache_limit_bytes()


def _load_key(suite: Suite, spec: RunSpec, ctx: RunContext) -> tuple[Hashable, ...]:
    # everything the suite's load_model sees (the seed too: a new head is drawn from the seeded RNG), and
    # the loader itself, so that a replaced (e.g. monkeypatched) loader never gets another's result
    return (type(suite).load_model, spec.suite, spec.model, spec.task, spec.preset, spec.seed, str(ctx.device),
            str(ctx.data.root), json.dumps(spec.suite_options, sort_keys=True, default=str))


def _data_key(suite: Suite, spec: RunSpec, ctx: RunContext) -> tuple[Hashable, ...]:
    fields = {k: v for k, v in to_jsonable(spec.train).items() if k not in LOOP_ONLY_FIELDS}
    return (type(suite).load_data, *_load_key(suite, spec, ctx), json.dumps(fields, sort_keys=True, default=str))


def load_for_run(suite: Suite, spec: RunSpec, ctx: RunContext, use_cache: bool) -> tuple[LoadedModel, TaskData, dict[str, bool]]:
    """The suite's load_model + load_data, served from the process cache when an earlier run of this
    process loaded the same thing. The run gets a deep copy of the cached model (adapters modify the
    model in place) and shares the cached TaskData (read-only during a run)."""
    hits = {"model": False, "data": False}
    key = _load_key(suite, spec, ctx)
    cached = MODEL_CACHE.get(key) if use_cache else None
    if cached is not None:
        pristine, rng = cached
        loaded = replace(pristine, model=copy.deepcopy(pristine.model), info=copy.deepcopy(pristine.info))
        _set_rng_state(rng)
        hits["model"] = True
    else:
        loaded = suite.load_model(spec.model, spec.task, ctx)
        if use_cache and _cacheable_model(loaded.model):
            pristine = replace(loaded, model=copy.deepcopy(loaded.model), info=copy.deepcopy(loaded.info))
            MODEL_CACHE.put(key, pristine, _rng_state())
    share = use_cache and suite.share_task_data
    data_key = _data_key(suite, spec, ctx)
    cached = DATA_CACHE.get(data_key) if share else None
    if cached is not None:
        data, rng = cached
        _set_rng_state(rng)
        hits["data"] = True
    else:
        data = suite.load_data(spec.task, loaded, spec.train, ctx)
        if share:
            DATA_CACHE.put(data_key, data, _rng_state())
    return loaded, data, hits


def resolve_device(name: str) -> Any:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HarnessError("--device cuda was requested but no CUDA device is available")
    return device


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def base_record(spec: RunSpec) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": spec.run_id,
        "key": spec.key,
        "spec": spec.to_dict(),
        "status": "failed",
        "error": None,
        "started_at": _now(),
        **preset_annotations(spec),
    }


CAP_FIELDS = ("max_train_samples", "max_eval_samples", "max_steps", "limit")


def preset_annotations(spec: RunSpec) -> dict[str, Any]:
    """What the tables need without importing torch or the suites (harness/aggregate.py): the preset's
    training settings and adapter options for this run, so that a row shows what differs from them;
    the caps applied and those below the preset's (a "limited" run); the suite's default tasks. Never
    part of the config hash. A plug-in whose defaults cannot be rebuilt gets ``preset_defaults_error``
    and the tables fall back to comparing records within the store."""
    try:
        suite: Suite = SUITES.get(spec.suite)()
        adapter_cls = ADAPTERS.get(spec.adapter)
        preset_train = build(TrainConfig, {**to_jsonable(suite.train_config(spec.preset, spec.task, spec.model)),
                                           **adapter_cls.train_overrides_for(spec.preset, spec.suite, spec.model)},
                             "training")
        options = adapter_options_for(adapter_cls, suite, spec.preset, spec.model, GridRequest(suite=spec.suite))
        preset_options = build_adapter(spec.adapter, options).config.to_dict()
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


def metric_annotations(spec: RunSpec, primary: str) -> dict[str, Any]:
    """The unit, display scale and direction of the primary metric and the units of every declared
    metric (harness/metrics.py), for the record's ``metrics`` section."""
    from harness.metrics import record_fields

    suite: Suite = SUITES.get(spec.suite)()
    try:
        return record_fields(suite.metrics, primary, suite.name) if suite.metrics else {"unit": None}
    except HarnessError as exc:  # plan_grid refuses this; a run started another way keeps its score
        return {"unit": None, "unit_error": str(exc)}


def execute_run(spec: RunSpec, options: ExecutionOptions, record_path: Path | None = None) -> dict[str, Any]:
    """Train and evaluate one run; always returns a record (status success/diverged/oom/failed)."""
    import torch

    from harness.environment import environment_info

    record = base_record(spec)
    t0 = time.perf_counter()
    device = resolve_device(options.device)
    partial: dict[str, Any] = {}
    work_dir: Path | None = None
    try:
        # inside the try: a full or unwritable temporary folder fails this run (recorded), not the grid
        work_dir = Path(tempfile.mkdtemp(prefix="harness-run-"))
        result = _train_and_evaluate(spec, options, device, work_dir, partial, record_path)
        record.update(result)
        record["status"] = "success"
    except DivergedError as exc:
        record["status"] = "diverged"
        record["error"] = {"type": "DivergedError", "message": str(exc), "step": exc.step, "traceback": None}
    except torch.OutOfMemoryError as exc:
        record["status"] = "oom"
        record["error"] = {"type": "OutOfMemoryError", "message": str(exc).splitlines()[0], "traceback": traceback.format_exc()}
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP (harness.signals raises Interrupted)
        signum = getattr(exc, "signum", None)
        ctrl_c = signum is None or signal_name(signum) == "SIGINT"
        how = "interrupted by the user (Ctrl-C)" if ctrl_c else f"stopped by {signal_name(signum)}"
        record["status"] = "cancelled"
        record["error"] = {"type": "KeyboardInterrupt", "message": how, "traceback": None,
                           "signal": signal_name(signum) if signum is not None else "SIGINT"}
        raise RunCancelled(record, signum) from None  # completed by the finally block before it propagates
    except Exception as exc:  # the grid goes on; the traceback is in the record
        record["status"] = "failed"
        record["error"] = {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc()}
    finally:
        for key, value in partial.items():
            record.setdefault(key, value)
        record["finished_at"] = _now()
        t_env = time.perf_counter()
        record["environment"] = environment_info(device)
        if work_dir is not None:
            shutil.rmtree(work_dir, ignore_errors=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        _finish_timing(record, t0, time.perf_counter() - t_env)
    return record


# What this process spent before its first run (imports, planning, shape checks), noted by the CLI
# and recorded in the timing of the first run the process executes: with it, the records of a
# one-run grid add up to the command's wall time (less the record write and the interpreter's exit).
_PROCESS_STARTUP: dict[str, float] = {}


def note_startup(**seconds: float) -> None:
    _PROCESS_STARTUP.update(seconds)


def process_age_seconds() -> float | None:
    """Seconds since this process started (Linux /proc), or None where that cannot be read."""
    try:
        with open("/proc/self/stat") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def _finish_timing(record: dict[str, Any], t0: float, environment_seconds: float) -> None:
    timing = record.setdefault("timing", {})
    timing["total_seconds"] = time.perf_counter() - t0
    phases = timing.get("phases")
    if isinstance(phases, dict):
        phases["environment"] = environment_seconds
        phases["unaccounted"] = timing["total_seconds"] - sum(phases.values())
    if _PROCESS_STARTUP:
        timing["startup"] = dict(_PROCESS_STARTUP)  # once per process: only its first run paid it
        _PROCESS_STARTUP.clear()


def _loss_points(losses: list[float]) -> list[list[float]]:
    """[[step, loss]] with at most MAX_LOSS_POINTS points (window means for long runs)."""
    if len(losses) <= MAX_LOSS_POINTS:
        return [[i + 1, v] for i, v in enumerate(losses)]
    window = math.ceil(len(losses) / MAX_LOSS_POINTS)
    out = []
    for start in range(0, len(losses), window):
        chunk = losses[start : start + window]
        out.append([start + len(chunk), sum(chunk) / len(chunk)])
    return out


def _lr_lambda(kind: str, warmup: int, total: int) -> Callable[[int], float]:
    def fn(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if kind == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        if kind == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return max(0.0, 1.0 - progress)

    return fn


def _better(a: float | None, b: float | None) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return False
    return b is None or a > b


# How often a CUDA run reads its losses back (one host sync per this many steps, not one per step)
LOSS_SYNC_STEPS = 25
PRECISIONS = ("auto", "fp32", "bf16")


def adapter_merges(adapter: Adapter) -> bool:
    """Whether the adapter overrides the merge/unmerge hooks (the base class refuses both)."""
    return type(adapter).merge is not Adapter.merge and type(adapter).unmerge is not Adapter.unmerge


def merged_eval_limit_bytes() -> int:
    """Frozen weights up to this size (env HARNESS_MERGED_EVAL_MAX_MB, default 4096) are evaluated merged."""
    return int(float(os.environ.get("HARNESS_MERGED_EVAL_MAX_MB", 4096)) * 2**20)


@contextlib.contextmanager
def merged_for_eval(adapter: Adapter, model: Any) -> Iterator[bool]:
    """Evaluate at the cost of the base model: merge the adapter into the base weights, and afterwards
    unmerge it and put back the exact frozen weights (a copy on the CPU), because W + BA - BA is not W
    in floating point and the next epoch must train from the very same weights as an unmerged run.
    Yields whether the weights were merged."""
    import torch

    if not adapter_merges(adapter):
        yield False
        return
    frozen_params = [(name, p) for name, p in model.named_parameters() if not p.requires_grad]
    # The exact restore needs a host copy of every frozen weight: not for a quantised base (its integer
    # weights cannot take a merged float update and are not copied back bit for bit) nor for a base
    # whose copy would not pay (a 7-8B model: tens of GB of host memory per evaluation). Those are
    # evaluated unmerged, which is always correct.
    frozen_bytes = sum(p.numel() * p.element_size() for _, p in frozen_params)
    if any(not p.is_floating_point() for _, p in frozen_params) or frozen_bytes > merged_eval_limit_bytes():
        yield False
        return
    with torch.no_grad():
        frozen = {name: p.detach().to("cpu", copy=True) for name, p in frozen_params}

    def restore() -> None:
        with torch.no_grad():
            adapter.unmerge(model)
            for name, p in model.named_parameters():
                saved = frozen.get(name)
                if saved is not None:
                    p.copy_(saved)

    try:
        with torch.no_grad():
            adapter.merge(model)
    except HarnessError:  # this configuration cannot merge (e.g. a quantised base): evaluate unmerged
        restore()
        yield False
        return
    try:
        yield True
    finally:
        restore()


def resolve_precision(name: str, device: Any) -> str:
    """``auto``: bf16 autocast on a CUDA device that supports bf16, else fp32. On the CPU ``auto``
    stays fp32 (bf16 autocast is slower than fp32 on most CPUs); an explicit ``bf16`` is honoured."""
    import torch

    if name not in PRECISIONS:
        raise HarnessError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if name == "auto":
        cuda = getattr(device, "type", str(device)) == "cuda"
        return "bf16" if cuda and torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    return name


def autocast_for(precision: str, device: Any) -> Callable[[], contextlib.AbstractContextManager]:
    import torch

    if precision != "bf16":
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def compile_for_run(model: Any, enabled: bool) -> tuple[Any, dict[str, Any]]:
    """torch.compile after the adapter is applied (``--compile``); the adapter and the bookkeeping keep
    the plain module (parameter names, hooks), only the forward passes go through the compiled one.
    ``HARNESS_COMPILE_BACKEND`` picks the backend (default inductor)."""
    if not enabled:
        return model, {"enabled": False}
    import torch

    backend = os.environ.get("HARNESS_COMPILE_BACKEND", "inductor")
    return torch.compile(model, backend=backend), {"enabled": True, "backend": backend}


def _silence_library_bars() -> None:
    """--no-progress reaches the libraries' own bars too (transformers' weight loading, the hub)."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def _sync(device: Any) -> None:
    if getattr(device, "type", None) == "cuda":
        import torch

        torch.cuda.synchronize(device)


class LossLog:
    """Per-step training losses. On the CPU a loss is read at once (free there) and checked for NaN
    every step; on CUDA the losses stay on the device and are read and checked every
    ``LOSS_SYNC_STEPS`` steps, so the loop has no host sync per step (a divergence is still reported
    with the first bad step)."""

    def __init__(self, on_device: bool):
        self.on_device = on_device
        self.values: list[float] = []
        self._pending: list[Any] = []

    def append(self, loss: Any, step: int) -> None:
        if not self.on_device:
            self.values.append(loss)
            return
        self._pending.append(loss)
        if len(self._pending) >= LOSS_SYNC_STEPS:
            self.flush()

    def flush(self, check: bool = True) -> None:
        if not self._pending:
            return
        import torch

        first = len(self.values)
        read = torch.stack(self._pending).float().tolist()
        self._pending = []
        self.values.extend(read)
        if check:
            for i, value in enumerate(read):
                if not math.isfinite(value):
                    raise DivergedError(first + i, value)

    @property
    def last(self) -> float | None:
        return self.values[-1] if self.values else None


def _evaluate(suite: Suite, model: Any, data: TaskData, loaded: LoadedModel, train: TrainConfig,
              ctx: RunContext) -> dict[str, float]:
    """One evaluation: eval mode, ``torch.inference_mode`` (no autograd bookkeeping at all)."""
    import torch

    model.eval()
    with torch.inference_mode():
        return suite.evaluate(model, data, loaded, train, ctx)


def _train_and_evaluate(
    spec: RunSpec,
    options: ExecutionOptions,
    device: Any,
    work_dir: Path,
    partial: dict[str, Any],
    record_path: Path | None,
) -> dict[str, Any]:
    import torch
    from tqdm.auto import tqdm

    from harness.targets import find_sites

    if options.threads:
        torch.set_num_threads(options.threads)
    suite: Suite = SUITES.get(spec.suite)()
    adapter = build_adapter(spec.adapter, dict(spec.adapter_options))
    train: TrainConfig = spec.train
    ctx = RunContext(
        device=device, data=options.data, seed=spec.seed, preset=spec.preset, work_dir=work_dir,
        options=dict(spec.suite_options), run_id=spec.run_id, record_path=record_path,
        progress=options.progress,
    )
    if not options.progress:
        _silence_library_bars()
    seed_everything(spec.seed)
    phases = PhaseTimer()
    step_memory = CudaStepMemory(device)
    busy = step_memory.baseline()  # before the model loads, as peft's method_comparison
    if busy:
        print(busy, file=sys.stderr)
    precision = resolve_precision(train.precision, device)
    amp = autocast_for(precision, device)
    t_load = time.perf_counter()
    loaded, data, cache_hits = load_for_run(suite, spec, ctx, options.cache)
    partial["model_info"] = {"family": loaded.family, "head_modules": list(loaded.head_modules), **loaded.info}
    partial["data_info"] = dict(data.info)
    load_seconds = time.perf_counter() - t_load
    t_setup = time.perf_counter()

    model = loaded.model
    batches_per_epoch = suite.num_train_batches(data, train)
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / train.grad_accum))
    total_steps = math.ceil(train.epochs * steps_per_epoch)
    if train.max_steps is not None:
        total_steps = min(total_steps, train.max_steps)
    if not adapter.trains:
        total_steps = 0  # evaluation only: the pretrained model as it is
    head_ids = module_param_ids(model, loaded.head_modules)
    sites: tuple = ()
    if isinstance(adapter.config, LowRankConfig):
        sites = tuple(find_sites(model, adapter.config.targets, exclude=loaded.head_modules))
    adapter.check_sites(sites)
    seed_everything(spec.seed)  # adapter init does not depend on how much randomness loading used
    model = adapter.apply(
        model,
        ApplyContext(
            family=loaded.family, sites=sites, head_modules=loaded.head_modules, total_steps=total_steps,
            seed=spec.seed, task_type=loaded.task_type,
        ),
    )
    head_params = [p for p in model.parameters() if id(p) in head_ids]
    if adapter.trains_head:
        for p in head_params:
            p.requires_grad_(True)
    model.to(device)
    counts = count_parameters(model, head_ids)
    partial["params"] = counts.to_dict()
    if counts.trainable_total == 0 and adapter.trains:
        raise HarnessError(f"adapter '{spec.adapter}' left nothing trainable")

    adapter_params = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    trainable_head = [p for p in head_params if p.requires_grad]
    groups = []
    if adapter_params:
        groups.append({"params": adapter_params, "lr": train.lr, "name": "adapter"})
    if trainable_head:
        groups.append({"params": trainable_head, "lr": train.head_lr or train.lr, "name": "head"})
    optimizer: torch.optim.Optimizer | None = None
    if adapter.trains:
        optimizer = adapter.build_optimizer(model, groups, train.lr, train.weight_decay)
        if optimizer is None:
            optimizer = torch.optim.AdamW(groups, lr=train.lr, weight_decay=train.weight_decay)
        warmup = int(train.warmup_ratio * total_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(train.scheduler, warmup, total_steps))

    forward_model, compile_info = compile_for_run(model, train.compile)
    memory = MemoryMeter(device)
    memory.start()
    timer = StepTimer(device)
    saved_meter = SavedTensorMeter()
    loss_log = LossLog(on_device=device.type == "cuda")
    losses = loss_log.values
    eval_per_epoch: list[float] = []
    merged_eval = False
    per_epoch: list[dict[str, Any]] = []
    best: dict[str, float] | None = None
    best_epoch: int | None = None
    primary = suite.primary_metric(spec.task)
    eval_seconds = 0.0
    samples = 0
    step = 0
    epoch = 0
    phases.add("setup", time.perf_counter() - t_setup)
    train_t0 = time.perf_counter()
    bar = tqdm(total=total_steps, desc=f"{spec.adapter} {spec.task} s{spec.seed}", disable=not options.progress,
               leave=False, file=sys.stderr, dynamic_ncols=True)
    trained_params = [p for g in groups for p in g["params"]]

    def optimizer_step(micro: int, accumulated: float) -> None:
        # Each micro-batch's loss was divided by grad_accum; the last accumulation of an epoch may hold
        # fewer micro-batches, so its gradients (and logged loss) are rescaled to the mean over those it
        # has. Gradients never carry into the next epoch, and an epoch shorter than grad_accum still steps.
        nonlocal step
        if micro < train.grad_accum:
            scale = train.grad_accum / micro
            for p in trained_params:
                if p.grad is not None:
                    p.grad.mul_(scale)
            accumulated *= scale
        if train.grad_clip:
            torch.nn.utils.clip_grad_norm_(trained_params, train.grad_clip)
        optimizer.step()
        adapter.on_step_end(model, step)
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        timer.end()
        step_memory.sample()
        loss_log.append(accumulated, step)
        step += 1
        bar.update(1)
        if loss_log.last is not None and (not loss_log.on_device or step % LOSS_SYNC_STEPS == 0):
            bar.set_postfix(loss=f"{loss_log.last:.4f}")

    try:
        while step < total_steps:
            model.train()
            micro = 0
            accumulated = 0.0
            step_at_epoch_start = step
            for batch in suite.train_batches(data, train, epoch, ctx):
                n = int(batch.pop("num_samples"))
                if micro == 0:
                    adapter.on_step_begin(model, step)
                    timer.begin()
                measure = step == 1 and micro == 0
                with saved_meter.measure() if measure else contextlib.nullcontext():
                    with amp():
                        loss = suite.training_loss(forward_model, batch)
                        extra = adapter.extra_loss(model)
                        if extra is not None:
                            loss = loss + extra
                    (loss / train.grad_accum).backward()
                if measure:
                    memory.saved_for_backward = saved_meter.bytes
                if loss_log.on_device:  # no host sync per step: LossLog reads and checks them in blocks
                    accumulated = loss.detach().float() / train.grad_accum + accumulated
                else:
                    value = float(loss.detach())
                    if not math.isfinite(value):
                        raise DivergedError(step, value)
                    accumulated += value / train.grad_accum
                samples += n
                micro += 1
                if micro < train.grad_accum:
                    continue
                optimizer_step(micro, accumulated)
                micro = 0
                accumulated = 0.0
                if step >= total_steps:
                    break
            if micro:  # the epoch's last, partial accumulation
                optimizer_step(micro, accumulated)
            if step == step_at_epoch_start:  # no batch at all: looping on would never end
                raise RuntimeError(f"suite '{spec.suite}' gave no training batch in epoch {epoch}")
            epoch += 1
            last = step >= total_steps
            loss_log.flush()
            if train.eval_each_epoch or last:
                _sync(device)
                step_memory.before_eval()
                t_eval = time.perf_counter()
                with merged_for_eval(adapter, model) as merged_eval, amp():
                    metrics = _evaluate(suite, forward_model, data, loaded, train, ctx)
                eval_per_epoch.append(time.perf_counter() - t_eval)
                eval_seconds += eval_per_epoch[-1]
                per_epoch.append({"epoch": epoch, "step": step, **metrics})
                if best is None or _better(metrics.get(primary), best.get(primary)):
                    best, best_epoch = metrics, epoch
        if total_steps == 0:  # an evaluation-only run: score the model once as it came
            t_eval = time.perf_counter()
            with amp():
                metrics = _evaluate(suite, forward_model, data, loaded, train, ctx)
            eval_per_epoch.append(time.perf_counter() - t_eval)
            eval_seconds += eval_per_epoch[-1]
            per_epoch.append({"epoch": 0, "step": 0, **metrics})
            best, best_epoch = metrics, 0
    finally:
        bar.close()
        loss_log.flush(check=False)
        partial["loss_curve"] = _loss_points(losses)
    _sync(device)
    train_seconds = time.perf_counter() - train_t0 - eval_seconds
    phases.add("train", train_seconds)
    phases.add("eval", eval_seconds)
    mem = memory.report(model, optimizer)
    cuda_steps = step_memory.report()
    if cuda_steps:  # accelerator figures in their own keys, never mixed with the CPU estimate
        mem["cuda_train_steps"] = cuda_steps
    final = per_epoch[-1] if per_epoch else {}
    final_metrics = {k: v for k, v in final.items() if k not in ("epoch", "step")}
    selection = suite.selection if train.eval_each_epoch else "final"
    chosen = (best or {}) if selection == "best-dev-epoch" else final_metrics

    variants: dict[str, dict[str, float]] = {}
    t_variants = time.perf_counter()
    for variant, manager in adapter.evaluation_variants(model):
        t_eval = time.perf_counter()
        model.eval()
        with manager, torch.no_grad():
            variants[variant] = suite.evaluate(model, data, loaded, train, ctx)
        eval_seconds += time.perf_counter() - t_eval
    phases.add("eval_variants", time.perf_counter() - t_variants)

    t_analysis = time.perf_counter()
    analysis: dict[str, Any] = {}
    components = adapter.delta_components(model)
    if components:
        from harness.analysis import analyze_components

        analysis = analyze_components(components)
    phases.add("analysis", time.perf_counter() - t_analysis)
    t_save = time.perf_counter()

    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in adapter.adapter_state_dict(model, head_ids).items()}
    adapter_file = work_dir / "adapter.safetensors"
    from safetensors.torch import save_file

    save_file(state, str(adapter_file))
    params = counts.to_dict()
    params["adapter_file_bytes"] = adapter_file.stat().st_size
    params["adapter_tensors_saved"] = sum(t.numel() for t in state.values())
    if options.save_adapters and record_path is not None:
        record_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(adapter_file, record_path.with_suffix(".adapter.safetensors"))
    phases.add("save_adapter", time.perf_counter() - t_save)

    mean_step = timer.mean_step_seconds
    return {
        "metrics": {
            **metric_annotations(spec, primary),
            "primary": primary,
            "score": chosen.get(primary),
            "selection": selection,
            "best": best or {},
            "best_epoch": best_epoch,
            "final": final_metrics,
            "per_epoch": per_epoch,
            "variants": variants,
        },
        "params": params,
        "memory": mem,
        "timing": {
            "train_seconds": train_seconds,
            "eval_seconds": eval_seconds,
            "load_seconds": load_seconds,
            "load_cached": cache_hits,  # model / data served from this process's cache (load_seconds then is small)
            "steps": step,
            "epochs": epoch,
            "mean_step_seconds": mean_step,
            "samples_per_second": samples / train_seconds if train_seconds > 0 else None,
            "samples": samples,
            # where the run's wall time went (execute_run adds environment and the rest), and each
            # evaluation; total_seconds is their sum up to what no phase names ("unaccounted")
            "phases": {"load": load_seconds, **phases.seconds},
            "eval_seconds_per_epoch": eval_per_epoch,
            "eval_merged": merged_eval,
        },
        "precision": {"requested": train.precision, "used": precision,
                      "autocast": precision != "fp32", "compile": compile_info},
        "loss_curve": partial["loss_curve"],
        "adapter_info": adapter.summary(model),
        "analysis": analysis,
    }


# ---------------------------------------------------------------------------------------------------
# grid
# ---------------------------------------------------------------------------------------------------


@dataclass
class GridOutcome:
    planned: int = 0
    skipped: int = 0
    ran: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    lost: int = 0  # dispatched runs that came back without a record (a worker or node died)
    unsaved: int = 0  # runs whose record could not be written at its path (kept elsewhere, see RunResult)

    def count(self, status: str, unsaved: bool = False) -> None:
        self.ran += 1
        self.by_status[status] = self.by_status.get(status, 0) + 1
        self.unsaved += unsaved

    def totals_line(self) -> str:
        statuses = ", ".join(f"{k}={v}" for k, v in sorted(self.by_status.items())) or "none"
        line = f"planned {self.planned}, already done {self.skipped}, ran {self.ran} ({statuses})"
        if self.lost:
            line += f", lost {self.lost} (no record: rerun the same command to resume them)"
        if self.unsaved:
            line += (f", unsaved {self.unsaved} (their records could not be written to the store; kept where "
                     "the [unsaved] lines say)")
        if self.unfinished or self.unsaved:
            # an unsaved record is not in the store either: the next invocation runs it again
            line += f"; {self.unfinished + self.unsaved} of them not done: exit code 1 (the same command reruns them)"
        return line

    @property
    def unfinished(self) -> int:
        """Runs of this invocation that did not end in a done status (failed, cancelled, lost): the
        exit code is 1 when there is any. diverged and oom are results about the method, recorded as
        done, and do not count."""
        from harness.store import DONE_STATUSES

        return self.lost + sum(n for status, n in self.by_status.items() if status not in DONE_STATUSES)


@dataclass(frozen=True)
class RunResult:
    """What a worker hands back to the driver after writing a record (the record stays in the store)."""

    run_id: str
    status: str
    summary: str
    path: str  # where the record is: its place in the store, or where it was kept when that failed
    unsaved: bool = False  # the store's write failed; the record is at ``path`` (or printed) instead


def summary_line(record: dict[str, Any]) -> str:
    key = record["key"]
    head = f"[{record['status']}] {key['suite']}/{key['task']} {key['adapter']} seed={key['seed']}"
    if record["status"] != "success":
        err = record.get("error") or {}
        return f"{head}: {err.get('type', '')}: {str(err.get('message', ''))[:200]}"
    m, p, t, mem = record["metrics"], record["params"], record["timing"], record["memory"]
    score = m.get("score")
    score_s = f"{score:.4f}" if isinstance(score, (int, float)) else str(score)
    mem_s = f"{mem.get('peak_bytes', 0) / 2**20:.0f} MiB{'' if mem.get('device') == 'cuda' else ' (est.)'}"
    step = t.get("mean_step_seconds")
    step_s = f"{step * 1000:.0f} ms/step" if step else "-"
    return (
        f"{head}: {m['primary']}={score_s} ({m['selection']}) params={p['adapter_trainable']:,} "
        f"head={p['head']:,} mem={mem_s} train={t['train_seconds']:.1f}s {step_s}"
    )


def iter_pending(specs: list[RunSpec], store: ResultStore, force: bool) -> Iterator[tuple[RunSpec, bool]]:
    """(spec, done). A record of a newer schema counts as done even with --force: it is never
    overwritten by this (older) harness."""
    for spec in specs:
        key = spec.key
        status = store.status(key)  # one read (is_complete would read the record again)
        yield spec, status == NEWER_SCHEMA or (not force and status in DONE_STATUSES)


def execution_order(specs: list[RunSpec]) -> list[RunSpec]:
    """Runs that share a model load and tokenized data (same suite, model, task, seed) next to each
    other, adapters in the order given, so that the one-entry load cache hits. The plan (and the dry
    run) keep the order as given; only execution is regrouped; records do not depend on the order."""
    first = {}
    for i, spec in enumerate(specs):
        first.setdefault((spec.suite, spec.model, spec.task, spec.seed), i)
    return sorted(specs, key=lambda s: first[(s.suite, s.model, s.task, s.seed)])


def split_pending(specs: list[RunSpec], store: ResultStore, force: bool) -> tuple[list[RunSpec], int]:
    """(runs to execute in execution order, number already done). Also clears temporary files that
    writers killed mid-write left behind."""
    store.clean_stale_temps()
    pending, done = [], 0
    for spec, complete in iter_pending(specs, store, force):
        if complete:
            done += 1
        else:
            pending.append(spec)
    return execution_order(pending), done


def run_and_record(spec: RunSpec, store: ResultStore, options: ExecutionOptions) -> tuple[RunResult, dict[str, Any]]:
    """Execute one run and write its record (atomically) from the process that ran it."""
    path = store.path_for(spec.key)
    try:
        record = execute_run(spec, options, record_path=path)
    except RunCancelled as cancelled:
        _, unsaved = write_record(store, cancelled.record)  # the next invocation reruns it (not done)
        if unsaved:
            print(unsaved, file=sys.stderr, flush=True)
        raise
    written, unsaved = write_record(store, record)
    summary = summary_line(record) + (f"\n{unsaved}" if unsaved else "")
    return RunResult(spec.run_id, record["status"], summary, str(written or ""), unsaved=bool(unsaved)), record


def write_record(store: ResultStore, record: dict[str, Any]) -> tuple[Path | None, str]:
    """Write a finished run's record; a stop signal waits until it is written. When the store refuses
    the write (a full disk, a folder turned read-only mid-grid) the record is kept elsewhere instead of
    lost and the grid goes on: (where it is, a ``[unsaved]`` line saying so; '' when all went well)."""
    with deferred():
        try:
            return store.write(record), ""
        except (OSError, TypeError, ValueError) as exc:  # a full disk; a value JSON cannot hold
            target = store.path_for(record["key"])
            kept = store.keep_unsaved(record)
            why = f"[unsaved] {record['run_id']}: cannot write {target} ({getattr(exc, 'strerror', None) or exc})"
            if kept is not None:
                line = (f"{why}; the record is kept at {kept}: move it to {target} once that works, or the next "
                        "invocation runs it again")
            else:
                line = f"{why}, nor anywhere else; the record was printed on stderr as JSON"
                print(json.dumps(record, default=str), file=sys.stderr, flush=True)
            return kept, line


def run_grid(
    specs: list[RunSpec],
    store: ResultStore,
    options: ExecutionOptions,
    *,
    force: bool = False,
    echo: Callable[[str], None] = print,
    on_result: Callable[[RunResult], None] | None = None,
) -> GridOutcome:
    """The sequential executor: every run in this process, one after another. ``on_result`` (the
    grid's ``[i/N] ... | ETA`` reporter) replaces the plain summary line."""
    outcome = GridOutcome(planned=len(specs))
    pending, outcome.skipped = split_pending(specs, store, force)
    for spec in pending:
        result, record = run_and_record(spec, store, options)
        outcome.count(result.status, result.unsaved)
        outcome.records.append(record)
        if on_result is not None:
            on_result(result)
        else:
            echo(result.summary)
    return outcome


def default_results_dir() -> Path:
    return Path(os.environ.get("HARNESS_RESULTS_DIR", "results"))
