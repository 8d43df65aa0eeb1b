"""The Reproduction tab: each paper table's reported numbers beside ours, the differences to the
table's own LoRA row (paper and ours) and the rank agreement (Kendall's tau).

It computes them from the store's records when the tab renders: harness.papers.reproduce.reproduction_tables
matches records to table rows by the config hashes of the rows' planned specs, which ``python -m harness
report --out DIR`` writes to ``DIR/reproduce-plans.jsonl`` (planning needs the suites and torch; the plans
change only with the code, the records are read fresh). Without that file it shows the
``reproduce-<table>.csv`` files of the last report and says that they may be older than the store.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from harness.papers.tables import TABLES
from harness.untrusted import strip_controls, terminal_text


def tables_dir(results_dir: str | Path) -> Path:
    return Path(os.environ.get("HARNESS_TABLES_DIR") or Path(results_dir) / "tables")


# the columns the tab reads; a file without them is not one ``report`` wrote
REQUIRED_COLUMNS = ("table", "preset", "row", "task", "metric", "reported", "reproduced_mean", "reported_in_ci")
MAX_BYTES = 20 * 2**20


def load_reproduction(folder: str | Path, warnings: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Table name -> its reproduce CSV, in the order of harness.papers.tables; tables without a file are
    left out. A file that cannot be read as one (corrupt, binary, foreign columns, too large) is left out
    too, with one line in ``warnings``: the tab shows the others."""
    out: dict[str, pd.DataFrame] = {}
    for table in TABLES:
        path = Path(folder) / f"reproduce-{table.name}.csv"
        if not path.is_file():
            continue
        try:
            if path.stat().st_size > MAX_BYTES:
                raise ValueError(f"larger than {MAX_BYTES // 2**20} MiB")
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
            missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
            if missing:
                raise ValueError(f"no column {', '.join(missing)}")
            frame = _typed(frame)
        except Exception as exc:  # pandas raises many types on a corrupt file; none may stop the app
            if warnings is not None:
                warnings.append(f"{path.name}: not a reproduction table ({terminal_text(exc, keep_newlines=False)[:200]});"
                                " left out. Rewrite it with `python -m harness report --out DIR`.")
            continue
        if not frame.empty:
            out[table.name] = frame
    return out


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """The numeric columns as numbers (a cell that is not one: empty), every text through
    harness.untrusted.strip_controls."""
    out = frame.copy()
    for column in out.columns:
        if column in ("reported", "scale", "reproduced_mean", "ci_low", "ci_high", "n", "difference"):
            out[column] = pd.to_numeric(out[column], errors="coerce")
        elif column == "reported_in_ci":  # True, False, or unknown (one seed: no interval)
            out[column] = out[column].map(lambda v: {"true": True, "false": False}.get(str(v).strip().lower()))
        else:
            out[column] = out[column].map(strip_controls)
    return out


def row_colour(row: pd.Series) -> list[str]:
    """Green where the reported value lies inside our 95% CI, red where not; cpu-preset rows (another
    model) by whether the paper's and our difference to the LoRA row point the same way."""
    if row.get("preset") == "cpu":
        same = str(row.get("same_direction")).lower()
        if same in ("true", "false"):
            return [f"background-color: {'#e6f2e6' if same == 'true' else '#f7e6e6'}; color: #555555"] * len(row)
        return ["color: #777777"] * len(row)
    inside = str(row.get("reported_in_ci")).lower() == "true"
    return [f"background-color: {'#d9f2d9' if inside else '#f7d4d4'}"] * len(row)


def from_records(records: list, folder: str | Path) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]] | None:
    """Table name -> its rows and its rank agreement, computed from the records with the planned rows of
    ``folder/reproduce-plans.jsonl``; None without that file."""
    import json

    from harness.papers.reproduce import AGREEMENT_COLUMNS, PLANS_FILE, REPORT_COLUMNS, reproduction_tables

    path = Path(folder) / PLANS_FILE
    if not path.is_file():
        return None
    key = (str(path), path.stat().st_mtime_ns,
           tuple(sorted((str(r.get("run_id")), str(r.get("finished_at"))) for r in records)))
    if key in _CACHE:
        return _CACHE[key]
    try:
        plans = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    tables = reproduction_tables(records, plans)
    rows = {name: pd.DataFrame(r, columns=list(REPORT_COLUMNS)) for name, (r, _) in tables.items()}
    agreement = {name: pd.DataFrame(a, columns=list(AGREEMENT_COLUMNS)) for name, (_, a) in tables.items()}
    _CACHE.clear()  # one store at a time
    _CACHE[key] = (rows, agreement)
    return rows, agreement


_CACHE: dict[tuple, tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]] = {}


def render_reproduction(results_dir: str | Path, records: list | None = None) -> None:
    import streamlit as st

    folder = tables_dir(results_dir)
    computed = from_records(records, folder) if records is not None else None
    agreement: dict[str, pd.DataFrame] = {}
    if computed is not None:
        frames, agreement = computed
        if not frames:
            st.info("No record of the store matches a paper table's row: run `python -m harness reproduce TABLE`.")
            return
    else:
        problems: list[str] = []
        frames = load_reproduction(folder, problems)
        if problems:
            st.warning("\n\n".join(problems))
        if frames:
            st.warning(f"No `reproduce-plans.jsonl` in `{folder}` (written by `python -m harness report --out "
                       f"{folder}`): showing that folder's CSV files, which may be older than the store.")
    if not frames:
        st.info(f"No reproduction tables in `{folder}`: run `python -m harness reproduce TABLE` and then "
                f"`python -m harness report --out {folder}`.")
        return
    titles = {t.name: f"{t.name}: {t.paper}, {t.where}: {t.title}" for t in TABLES}
    for name, frame in frames.items():
        st.subheader(titles[name])
        if (frame["preset"] == "cpu").any():
            st.caption("cpu preset rows ran on the suite's embedded model and budget, not the paper's: their absolute "
                       "numbers are not comparable (reported_in_ci empty). What carries across models is each row's "
                       "difference to the table's own LoRA row: reported_vs_lora (paper) beside ours_vs_lora (ours, "
                       "with a Student-t interval over shared seeds); green where the two point the same way.")
        st.dataframe(frame.style.apply(row_colour, axis=1), hide_index=True, use_container_width=True)
        tau = agreement.get(name)
        if tau is not None and len(tau):
            st.caption("Rank agreement of the paper's ordering of the rows with ours (Kendall's tau, mean over the "
                       "tasks every row has, 95% bootstrap interval over tasks and seeds):")
            st.dataframe(tau, hide_index=True, use_container_width=True)
