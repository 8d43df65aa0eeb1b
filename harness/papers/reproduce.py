"""``python -m harness reproduce``: plan a paper table's rows (harness.papers.tables) through the normal
runner, count their parameters on the meta device, run them, and write reported beside reproduced.

A row's runs are ordinary ``plan_grid`` specs (one GridRequest per suite, model and task), so they share
records, resumption and executors with ``harness run``; the report finds a row's records by the config
hashes of its planned specs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from harness.errors import HarnessError
from harness.papers.report import (  # noqa: F401  (re-exported)
    TAU_RESAMPLES,
    _csv,
    _num,
    rank_agreement,
    reproduction_markdown,
)
from harness.papers.tables import (
    TABLES,
    PaperTable,
    TableRow,
    reported_rows,
    row_key,
)
from harness.records.record import RunRecord
from harness.spec import RunSpec
from harness.status import Status

PRESETS = ("paper", "cpu")
REPORT_COLUMNS = (
    "table", "preset", "row", "adapter", "model", "paper_model", "task", "metric", "reported", "scale",
    "reproduced_mean", "ci_low", "ci_high", "n", "difference", "reported_in_ci", "lora_row", "reported_vs_lora",
    "ours_vs_lora", "ours_vs_lora_ci_low", "ours_vs_lora_ci_high", "ours_vs_lora_n", "same_direction", "note",
)
AGREEMENT_COLUMNS = ("table", "preset", "model", "paper_model", "n_methods", "methods", "tasks", "kendall_tau",
                     "tau_ci_low", "tau_ci_high", "p_value", "interval")


@dataclass(frozen=True)
class PlannedRow:
    table: PaperTable
    row: TableRow
    model: str  # the model the runs use (the suite's embedded one under --preset cpu)
    paper_model: str  # the table's catalogue model
    specs: tuple[RunSpec, ...]


def select_rows(table: PaperTable, rows: list[str] | None) -> PaperTable:
    """``table`` with only the rows named (labels or row keys as ``--dry-run`` prints them; a label shared
    by one row per model selects them all)."""
    if not rows:
        return table
    from dataclasses import replace

    for name in rows:
        table.row(name)  # an unknown name: the list and the closest match
    return replace(table, rows=tuple(r for r in table.rows if r.label in rows or row_key(r) in rows))


def plan_table(table: PaperTable, preset: str = "paper", *, cuda_available: bool = False) -> list[PlannedRow]:
    """Every runnable row's runs. ``cpu``: the same rows and options on each suite's embedded model with
    the cpu budget and seeds (the table's training protocol is the paper model's, so it is left out)."""
    from harness.pipeline.plan import GridRequest, plan_grid
    from harness.registry import SUITES

    if preset not in PRESETS:
        raise HarnessError(f"reproduce --preset must be one of {', '.join(PRESETS)}, got '{preset}'")
    planned: list[PlannedRow] = []
    for row in table.rows:
        if not row.runnable:
            continue
        for paper_model in table.row_models(row):
            specs: list[RunSpec] = []
            model = paper_model
            for suite_name in table.suites:
                if preset == "cpu":
                    model = SUITES.get(suite_name)().default_model("cpu")
                for task in table.tasks:
                    train = {} if preset == "cpu" else {**table.train, **table.train_by_task.get(task, {})}
                    request = GridRequest(
                        suite=suite_name, adapters=[row.adapter], tasks=task,
                        seeds=(row.seeds or table.seeds) if preset == "paper" else None,
                        preset=preset, model=model, targets=row.targets or table.targets,
                        adapter_options=dict(row.options), train_overrides=train,
                        suite_options=dict(table.suite_options),
                        # the papers' tables select on their dev split: reproduced as they did
                        papers_protocol=True,
                    )
                    specs.extend(plan_grid(request, cuda_available=cuda_available))
            planned.append(PlannedRow(table, row, model, paper_model, tuple(specs)))
    return planned


def count_row(planned: PlannedRow) -> int | None:
    """Trainable adapter parameters of the row's first run, on the meta device (the head apart)."""
    from harness.pipeline.plan import check_against_shapes

    spec = planned.specs[0]
    if spec.adapter == "full":  # full fine-tuning: the papers count the whole model, head included
        from harness.parameters import unique_named_parameters
        from harness.registry import SUITES

        skeleton = SUITES.get(spec.suite)().meta_model(spec.model, spec.task)
        return sum(p.numel() for _, p in unique_named_parameters(skeleton[0])) if skeleton else None
    return check_against_shapes([spec]).get((spec.adapter, spec.config_hash))


def check_reachable(planned: list[PlannedRow]) -> None:
    """Before anything trains: each hub model must be in the local cache when the hub is off, and not
    gated for us when it is on. One line naming the model and how to get it."""
    from harness.models import find_model_entry, hub_offline

    seen: set[str] = set()
    for p in planned:
        entry = find_model_entry(p.model)
        if entry is None or entry.name in seen or entry.local_path() is not None or not entry.hub_id:
            continue
        seen.add(entry.name)
        how = (f"accept its licence at https://huggingface.co/{entry.hub_id} if it is gated, log in "
               f"(huggingface-cli login) and download it (huggingface-cli download {entry.hub_id})")
        if hub_offline():
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(entry.hub_id, "config.json")
            if not isinstance(cached, str):
                cached = try_to_load_from_cache(entry.hub_id, "open_clip_config.json")
            if not isinstance(cached, str):
                raise HarnessError(f"table {p.table.name} needs model '{entry.name}' ({entry.hub_id}), which is not "
                                   f"in the local cache and the hub is off (HF_HUB_OFFLINE=1): {how}")
        else:
            from huggingface_hub import auth_check
            from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

            try:
                auth_check(entry.hub_id)
            except (GatedRepoError, RepositoryNotFoundError) as exc:
                raise HarnessError(f"table {p.table.name} needs model '{entry.name}' ({entry.hub_id}), which this "
                                   f"account cannot read ({type(exc).__name__}): {how}") from None
            except Exception:  # network trouble: the download itself reports it
                pass


def all_specs(planned: list[PlannedRow]) -> list[RunSpec]:
    seen: dict[str, RunSpec] = {}
    for p in planned:
        for spec in p.specs:
            seen.setdefault(spec.run_id, spec)  # rows that are the same run (VeRA and VeRA*) run once
    return list(seen.values())


# ---------------------------------------------------------------------------------------------------
# reported beside reproduced
# ---------------------------------------------------------------------------------------------------


def _record_metrics(record: dict[str, Any]) -> dict[str, float]:
    metrics = record.get("metrics")
    if not isinstance(metrics, dict):
        return {}
    # the values at the suite's selection (best dev epoch or final), as the leaderboard's score
    chosen = metrics.get("best") if isinstance(metrics.get("best"), dict) else metrics.get("final")
    chosen = chosen if isinstance(chosen, dict) else {}
    return {k: float(v) for k, v in chosen.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v)}


def reproduction_rows(table: PaperTable, records: list[RunRecord], preset: str,
                      planned: list[PlannedRow] | None = None) -> list[dict[str, Any]]:
    """Per (row, model, task, metric) with a reported value: the reported value beside our mean and its
    Student-t interval over seeds; and the result that carries across models: each row's difference to
    the table's own LoRA row (same model), as the paper reports it and as we measure it (paired over the
    seeds both have, with our t interval). Whether the reported value lies in our interval is only asked
    of paper-preset rows: a cpu-preset row runs another model and budget (``reported_in_ci`` empty)."""
    from harness.aggregate.stats import mean_ci, paired_comparison
    from harness.metrics import unit_of_metric

    by_hash: dict[str, list[RunRecord]] = {}
    for record in records:
        spec = record.get("spec") if isinstance(record.get("spec"), dict) else {}
        if record.get("status") == Status.SUCCESS and spec.get("preset") == preset:
            key = record.get("key") if isinstance(record.get("key"), dict) else {}
            by_hash.setdefault(str(key.get("config_hash") or _spec_hash(spec)), []).append(record)
    planned = planned if planned is not None else plan_table(table, preset)
    out: list[dict[str, Any]] = []
    # (row, model, paper model, task, metric) -> seed -> value
    seeds_of: dict[tuple[str, str, str, str, str], dict[int, float]] = {}
    for p in planned:
        mine = {s.config_hash for s in p.specs}
        for ref in reported_rows(table, p.row, p.paper_model):
            task, metric = ref["task"], ref["metric"]
            suite_runs = [r for h in mine for r in by_hash.get(h, []) if r["spec"]["suite"] == ref["suite"]]
            if task == "average":
                continue  # the paper's own average: shown beside the suite average, never computed here
            values: dict[int, float] = {}
            for r in suite_runs:
                if r["spec"]["task"] != task:
                    continue
                m = _record_metrics(r).get(metric)
                if m is not None:  # on the paper's printed scale: the metric's declared unit says how
                    values[int(r["spec"].get("seed") or 0)] = m * unit_of_metric(r, metric).display_scale
            base = {"table": table.name, "preset": preset, "row": row_key(p.row), "adapter": p.row.adapter,
                    "model": p.model, "paper_model": p.paper_model, "task": task, "metric": metric,
                    "reported": float(ref["value"]), "scale": ref["scale"]}
            if not values:
                if any(r["spec"]["task"] == task for r in suite_runs):  # we ran it but do not measure this metric
                    out.append({**base, "reproduced_mean": None, "ci_low": None, "ci_high": None, "n": 0,
                                "difference": None, "reported_in_ci": None,
                                "note": f"our {ref['suite']} records have no '{metric}'"})
                continue
            seeds_of[(row_key(p.row), p.model, p.paper_model, task, metric)] = values
            base["_seeds"] = values  # not written: rank_agreement's bootstrap draws from it
            reported = float(ref["value"])
            interval = mean_ci(list(values.values()))
            mean, low, high = interval.mean, interval.low, interval.high
            out.append({
                **base, "reproduced_mean": round(mean, 4),
                "ci_low": round(low, 4) if interval.has_ci else None,
                "ci_high": round(high, 4) if interval.has_ci else None, "n": len(values),
                "difference": round(mean - reported, 4),
                # one seed has no interval: whether the paper's value lies inside it is unknown, not False; a
                # cpu row runs another model, so the question is not asked
                "reported_in_ci": (bool(low <= reported <= high) if interval.has_ci and preset != "cpu" else None),
                "note": ("cpu preset: model differs from the paper's; compare the differences to LoRA"
                         if preset == "cpu" else ""),
            })
    # the differences to the table's own LoRA row (the first row of adapter lora, per model)
    # keyed by the paper's model too: one row label may stand for a row per paper model (SeRA Table 1),
    # all run on the same cpu model
    lora_rows: dict[tuple[str, str], str] = {}
    for p in planned:
        if p.row.adapter == "lora":
            lora_rows.setdefault((p.model, p.paper_model), row_key(p.row))
    reported_of = {(r["row"], r["model"], r["paper_model"], r["task"], r["metric"]): r["reported"] for r in out}
    for r in out:
        lora = lora_rows.get((r["model"], r["paper_model"]))
        r.update(lora_row=lora or "", reported_vs_lora=None, ours_vs_lora=None, ours_vs_lora_ci_low=None,
                 ours_vs_lora_ci_high=None, ours_vs_lora_n=0, same_direction=None)
        key = (lora, r["model"], r["paper_model"], r["task"], r["metric"])
        if lora is None or r["row"] == lora or key not in reported_of:
            continue
        r["reported_vs_lora"] = round(r["reported"] - reported_of[key], 4)
        x = seeds_of.get((r["row"], r["model"], r["paper_model"], r["task"], r["metric"]))
        y = seeds_of.get(key)
        if not x or not y:
            continue
        shared = sorted(set(x) & set(y))
        if len(shared) >= 2:
            c = paired_comparison([x[s] for s in shared], [y[s] for s in shared])
            r.update(ours_vs_lora=round(c.delta, 4), ours_vs_lora_ci_low=round(c.ci_low, 4),
                     ours_vs_lora_ci_high=round(c.ci_high, 4), ours_vs_lora_n=len(shared))
        else:  # no seed in common (or one): the difference of the means, without an interval
            diff = sum(x.values()) / len(x) - sum(y.values()) / len(y)
            r.update(ours_vs_lora=round(diff, 4), ours_vs_lora_n=len(shared))
        if r["reported_vs_lora"] != 0 and r["ours_vs_lora"] != 0:
            r["same_direction"] = (r["reported_vs_lora"] > 0) == (r["ours_vs_lora"] > 0)
    return out


def _spec_hash(spec: dict[str, Any]) -> str:
    try:
        return RunSpec.from_dict(spec).config_hash
    except Exception:
        return ""


# not *.json: the store reads every *.json below its root as a record (results/tables is inside results/)
PLANS_FILE = "reproduce-plans.jsonl"


def plan_hashes() -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Every table's planned rows as plain data, table -> preset -> [{row, model, paper_model, hashes}]:
    what matching records to rows needs, so that a reader without torch (the app) can match them from
    this file (``report`` writes it as ``reproduce-plans.jsonl``; it changes only with the code)."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for table in TABLES:
        for preset in PRESETS:
            try:
                planned = plan_table(table, preset)
            except HarnessError:
                continue
            # "index": the row's position in the table (one label may name a row per model)
            out.setdefault(table.name, {})[preset] = [
                {"row": row_key(p.row), "index": table.rows.index(p.row), "model": p.model,
                 "paper_model": p.paper_model, "hashes": sorted({s.config_hash for s in p.specs})}
                for p in planned]
    return out


def _planned_from_hashes(table: PaperTable, entries: list[dict[str, Any]]) -> list[PlannedRow]:
    from types import SimpleNamespace

    out = []
    for e in entries:
        index = e.get("index")
        row = table.rows[index] if isinstance(index, int) and 0 <= index < len(table.rows) else None
        if row is None or row_key(row) != e["row"]:  # the table changed since the plans were written
            continue
        out.append(PlannedRow(table, row, e["model"], e["paper_model"],
                              tuple(SimpleNamespace(config_hash=h) for h in e["hashes"])))  # type: ignore[arg-type]
    return out


def reproduction_tables(records: list[RunRecord], plans: dict[str, Any] | None = None,
                        ) -> dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """Table name -> (its reproduction rows, its rank agreement rows), paper and cpu preset, for every
    table with records (what ``report`` writes and the app's Reproduction tab shows). ``plans``
    (``plan_hashes``, e.g. read from reproduce-plans.jsonl) replaces planning the rows, which needs torch."""
    out = {}
    for table in TABLES:
        rows: list[dict[str, Any]] = []
        agreement: list[dict[str, Any]] = []
        for preset in PRESETS:
            try:
                if plans is not None:
                    entries = plans.get(table.name, {}).get(preset)
                    if entries is None:
                        continue
                    found = reproduction_rows(table, records, preset, _planned_from_hashes(table, entries))
                else:
                    found = reproduction_rows(table, records, preset)
            except HarnessError:
                continue  # a table that cannot be planned here (e.g. a suite's models missing) has no rows
            agreement.extend(rank_agreement(found))
            rows.extend(found)
        if rows:
            out[table.name] = (rows, agreement)
    return out


def reproduction_files(records: list[RunRecord]) -> dict[str, str]:
    """``reproduce-<table>.csv`` (name -> CSV text) for every table with records (paper and cpu preset
    rows), ``reproduce-<table>-agreement.csv`` (Kendall's tau per preset and model) and
    ``reproduce-<table>.md`` ("paper | ours"), and ``reproduce-plans.jsonl`` (the rows' planned config
    hashes, which the app matches the store's records with); ``report`` writes them atomically."""
    import json

    files: dict[str, str] = {}
    plans = plan_hashes()
    files[PLANS_FILE] = json.dumps(plans, sort_keys=True)  # one line: a JSON Lines file of one object
    for name, (rows, agreement) in reproduction_tables(records, plans).items():
        files[f"reproduce-{name}.csv"] = _csv(rows, REPORT_COLUMNS)
        files[f"reproduce-{name}-agreement.csv"] = _csv(agreement, AGREEMENT_COLUMNS)
        files[f"reproduce-{name}.md"] = reproduction_markdown(name, rows, agreement)
    return files
