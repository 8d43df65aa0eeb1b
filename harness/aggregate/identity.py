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


def _recorded_defaults(record: RunRecord) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The preset's training settings (None when the record does not state them) and adapter options
    for this run, as the runner recorded them (``preset_defaults``)."""
    recorded = section_of(record, "preset_defaults")
    train = dict(recorded["train"]) if isinstance(recorded.get("train"), Mapping) else None
    options = dict(recorded["adapter_options"]) if isinstance(recorded.get("adapter_options"), Mapping) else {}
    return train, options


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

    The preset's defaults come from the record (``preset_defaults``, written by the runner; records of
    schema version 1 get them from ``python -m harness records migrate``). A record that does not state
    them (not migrated, or a plug-in whose preset could not be rebuilt: ``preset_defaults_error``) has
    every training setting in its row key, is labelled ``preset defaults unknown`` and counts as limited
    by any cap it sets: nothing is guessed from the other records of the store. Limited: a cap
    (max_train_samples, max_eval_samples, max_steps, limit) below the preset's; records state it in
    ``caps.below_preset``.
    """
    out = []
    for r in records:
        spec = section_of(r, "spec")
        train = dict(section_of(spec, "train"))
        recorded_train, option_defaults = _recorded_defaults(r)
        train_defaults = recorded_train if recorded_train is not None else {}
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
        if recorded_train is not None:
            parts += [_label_part(k, v) for k, v in train_diff.items()]
        else:  # every setting is in the row key; the label names the caps and what it does not know
            parts += [_label_part(c, train.get(c)) for c in limited_by if c in train]
            parts.append("preset defaults unknown")
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
