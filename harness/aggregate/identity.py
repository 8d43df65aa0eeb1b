"""Run identity: duplicated records, the preset's defaults, row keys, labels and limited runs."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from harness.aggregate._values import canonical, finite_number, section_of
from harness.aggregate.regime import regime_of
from harness.records.record import CAP_FIELDS, KEY_FIELDS, RunRecord


def _run_key(record: RunRecord) -> tuple[str, ...]:
    key = section_of(record, "key")
    return tuple(str(key.get(k)) for k in KEY_FIELDS)


def dedupe_records(records: list[RunRecord]) -> tuple[list[RunRecord], list[str]]:
    """One record per (suite, task, adapter, config hash, seed), and the run ids found more than once.

    A copied file (``x (copy).json``) or a backup folder inside the store holds the same run again: it
    must not count as another seed. Of several copies the latest ``finished_at`` is kept (a rerun with
    ``--force`` rewrites its record, so the latest is the current one).
    """
    kept: dict[tuple[str, ...], RunRecord] = {}
    copies: dict[tuple[str, ...], list[RunRecord]] = {}
    for record in records:
        key = _run_key(record)
        copies.setdefault(key, []).append(record)
        # by the time it finished, parsed (text order lies: "2026-9-1" > "2026-10-1"); unparseable = oldest
        if key not in kept or finished_time(record) > finished_time(kept[key]):
            kept[key] = record
    duplicates = []
    for key, found in copies.items():
        if len(found) < 2:
            continue
        line = f"{str(kept[key].get('run_id'))} ({len(found)} records)"
        scores = {canonical(_score_of(r)) for r in found}
        if len(scores) > 1:
            shown = ", ".join(sorted(f"{_score_of(r)} ({r.get('status')}, finished {r.get('finished_at')!s:.40})"
                                     for r in found))
            line += (f", their scores differ: {shown}; kept the one finished last, "
                     f"{_score_of(kept[key])} (finished {kept[key].get('finished_at')!s:.40})")
        duplicates.append(line)
    return list(kept.values()), duplicates


_OLDEST = datetime.min.replace(tzinfo=timezone.utc)


def finished_time(record: RunRecord) -> datetime:
    """A record's ``finished_at`` as a time (ISO 8601; no zone: UTC); missing or unparseable: the oldest."""
    text = record.get("finished_at")
    if not isinstance(text, str):
        return _OLDEST
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return _OLDEST
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def _score_of(record: RunRecord) -> Any:
    metrics = section_of(record, "metrics")
    return metrics.get("score")


def _mode(values: list[Any], tie_break: Any = None) -> Any:
    """The most common value (compared as JSON); ties go to ``tie_break`` when it is among them, else
    to the least restrictive cap (None), else the first in JSON order."""
    counts: dict[str, int] = {}
    first: dict[str, Any] = {}
    for v in values:
        c = canonical(v)
        counts[c] = counts.get(c, 0) + 1
        first.setdefault(c, v)
    best = max(counts.values())
    tied = sorted(c for c, n in counts.items() if n == best)
    for preferred in (tie_break, None):
        if canonical(preferred) in tied:
            return first[canonical(preferred)]
    return first[tied[0]]


def _inferred_defaults(records: list[RunRecord], group_keys: tuple[str, ...], section: str
                       ) -> dict[tuple[str, ...], dict[str, Any]]:
    """Per group, the value of every field of ``spec[section]`` held by most records of the group."""
    sections: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for r in records:
        spec = section_of(r, "spec")
        sections.setdefault(tuple(str(spec.get(k)) for k in group_keys), []).append(section_of(spec, section))
    out: dict[tuple[str, ...], dict[str, list[Any]]] = {}
    for group, items in sections.items():
        names = sorted({n for item in items for n in item})
        # a field a record lacks counts as unset (None), so that one record's cap is not taken as the default
        out[group] = {n: [item.get(n) for item in items] for n in names}
    return out


def _below(value: Any, default: Any) -> bool:
    """Whether a cap is tighter than the preset's (None: no cap)."""
    if value is None or finite_number(value) is None:
        return False
    return default is None or (finite_number(default) is not None and float(value) < float(default))


def _short_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, Mapping):
        return canonical(value)
    return str(value)


_SHORT_NAMES = {"rank": "r", "max_train_samples": "train cap", "max_eval_samples": "eval cap",
                "max_steps": "max steps", "limit": "limit", "batch_size": "batch", "head_lr": "head lr"}


def _label_part(name: str, value: Any) -> str:
    short = _SHORT_NAMES.get(name, name.replace("_", " "))
    return f"r{_short_value(value)}" if name == "rank" else f"{short} {_short_value(value)}"


def identify(records: list[RunRecord]) -> list[dict[str, Any]]:
    """Per record: its configuration's ``row_key`` and ``label``, and whether it is ``limited``.

    What a row is. A record's config hash covers the whole spec including the task, so one adapter
    configuration has a different hash on every task. A row of a suite table is therefore keyed by
    ``row_key``: the hash of (suite, adapter, model, preset, resolved adapter options, suite options,
    and the training settings that differ from the preset's for that task). Per-task preset values
    (GLUE's epochs and learning rate per task, CoLA's training-set size) are not differences, so the
    preset's runs of one adapter share a row across tasks, while ``--lr 3e-4`` or ``--max-steps 2``
    makes another row on every task. Two configurations are never averaged together: within a row and
    task every record has the same config hash.

    The preset's defaults come from the record (``preset_defaults``, written by the runner) or, for
    records written before it, from the store: per (suite, task, model, preset, adapter) the value of
    each training setting held by most records (ties: the value most records of the task hold over all
    adapters, else no cap). Adapter options are compared the same way per (suite, model, preset,
    adapter) for the label. Limited: a cap (max_train_samples, max_eval_samples, max_steps, limit)
    below the preset's; new records state it in ``caps.below_preset``.
    """
    per_adapter = _inferred_defaults(records, ("suite", "task", "model", "preset", "adapter"), "train")
    per_task = _inferred_defaults(records, ("suite", "task", "model", "preset"), "train")
    options = _inferred_defaults(records, ("suite", "model", "preset", "adapter"), "adapter_options")
    out = []
    for r in records:
        spec = section_of(r, "spec")
        train = dict(section_of(spec, "train"))
        recorded = section_of(r, "preset_defaults")
        if isinstance(recorded.get("train"), Mapping):
            train_defaults = dict(recorded["train"])
        else:
            g_a = tuple(str(spec.get(k)) for k in ("suite", "task", "model", "preset", "adapter"))
            g_t = g_a[:4]
            train_defaults = {}
            for name, values in per_adapter.get(g_a, {}).items():
                task_mode = _mode(per_task.get(g_t, {}).get(name, values))
                train_defaults[name] = _mode(values, tie_break=task_mode)
        if isinstance(recorded.get("adapter_options"), Mapping):
            option_defaults = dict(recorded["adapter_options"])
        else:
            g_o = tuple(str(spec.get(k)) for k in ("suite", "model", "preset", "adapter"))
            option_defaults = {n: _mode(v) for n, v in options.get(g_o, {}).items()}
        tuning = section_of(r, "tuning")
        tuned = tuning.get("role") == "tuned"
        # a tuned row's rates differ per task by design: the row is "tuned", the values are per task
        tuned_keys = set(section_of(tuning, "chosen")) if tuned else set()
        train_diff = {k: v for k, v in sorted(train.items())
                      if k not in tuned_keys and (k not in train_defaults or canonical(v) != canonical(train_defaults[k]))}
        caps = section_of(r, "caps")
        # what the record states and what its own spec shows against the preset's defaults, both: a
        # record whose caps section says nothing (or was copied from a full run) cannot pass a capped
        # spec off as a full run
        stated = [str(c) for c in caps["below_preset"]] if isinstance(caps.get("below_preset"), list) else []
        shown = [c for c in CAP_FIELDS if _below(train.get(c), train_defaults.get(c))]
        limited_by = [*stated, *(c for c in shown if c not in stated)]
        # a cap below the preset's is a difference even where the store alone could not tell
        train_diff = dict(sorted({**train_diff, **{c: train.get(c) for c in limited_by if c in train}}.items()))
        adapter_options = section_of(spec, "adapter_options")
        identity = {k: spec.get(k) for k in ("suite", "adapter", "model", "preset")}
        compared_options = {k: v for k, v in adapter_options.items() if k not in tuned_keys}
        identity.update(adapter_options=compared_options, suite_options=section_of(spec, "suite_options"),
                        train_differences=train_diff)
        regime = regime_of(r)
        if regime != "fixed, test-selected":  # records of the papers' protocol keep their row keys
            identity["regime"] = regime
        row_key = hashlib.sha256(canonical(identity).encode()).hexdigest()[:12]
        parts = [str(spec.get("adapter", section_of(r, "key").get("adapter")))]
        if "rank" in adapter_options:
            parts[0] += " " + _label_part("rank", adapter_options["rank"])
        parts += [_label_part(k, v) for k, v in sorted(adapter_options.items())
                  if k != "rank" and k not in tuned_keys and k in option_defaults and canonical(v) != canonical(option_defaults[k])]
        parts += [_label_part(k, v) for k, v in train_diff.items()]
        if regime == "tuned":
            parts.append("tuned")
        elif regime == "fixed":
            parts.append("val-selected")
        out.append({"row_key": row_key, "label": " · ".join(parts), "limited": bool(limited_by),
                    "limited_by": ",".join(limited_by)})
    # two configurations never look alike: a label shared by different rows gets the row key
    def where(r: RunRecord, label: str) -> tuple[str, ...]:
        spec = section_of(r, "spec")
        return (str(spec.get("suite")), str(spec.get("model")), str(spec.get("preset")), label)

    by_label: dict[tuple[str, ...], set[str]] = {}
    for r, identity in zip(records, out):
        by_label.setdefault(where(r, identity["label"]), set()).add(identity["row_key"])
    for r, identity in zip(records, out):
        if len(by_label[where(r, identity["label"])]) > 1:
            identity["label"] += f" · #{identity['row_key'][:6]}"
    return out
