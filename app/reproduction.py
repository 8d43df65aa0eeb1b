"""The Reproduction tab: each paper table's reported numbers beside ours, colour-coded.

It reads the ``reproduce-<table>.csv`` files that ``python -m harness report --out DIR`` writes
(harness.reproduce.reproduction_files matches records to table rows by the config hashes of the
rows' planned specs, which needs the runner; the app never imports it, nor torch).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from harness.paper_tables import TABLES
from harness.untrusted import strip_controls, terminal_text


def tables_dir(results_dir: str | Path) -> Path:
    return Path(os.environ.get("HARNESS_TABLES_DIR") or Path(results_dir) / "tables")


# the columns the tab reads; a file without them is not one ``report`` wrote
REQUIRED_COLUMNS = ("table", "preset", "row", "task", "metric", "reported", "reproduced_mean", "reported_in_ci")
MAX_BYTES = 20 * 2**20


def load_reproduction(folder: str | Path, warnings: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Table name -> its reproduce CSV, in the order of harness.paper_tables; tables without a file are
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
    """Green where the reported value lies inside our 95% CI, red where not; cpu-preset rows greyed."""
    if row.get("preset") == "cpu":
        return ["color: #777777"] * len(row)
    inside = str(row.get("reported_in_ci")).lower() == "true"
    return [f"background-color: {'#d9f2d9' if inside else '#f7d4d4'}"] * len(row)


def render_reproduction(results_dir: str | Path) -> None:
    import streamlit as st

    folder = tables_dir(results_dir)
    problems: list[str] = []
    frames = load_reproduction(folder, problems)
    if problems:
        st.warning("\n\n".join(problems))
    if not frames:
        st.info(f"No reproduction tables in `{folder}`: run `python -m harness reproduce TABLE` and then "
                f"`python -m harness report --out {folder}`.")
        return
    titles = {t.name: f"{t.name}: {t.paper}, {t.where}: {t.title}" for t in TABLES}
    for name, frame in frames.items():
        st.subheader(titles[name])
        if (frame["preset"] == "cpu").any():
            st.caption("cpu preset rows (grey) ran on the suite's embedded model, not the paper's: not comparable.")
        st.dataframe(frame.style.apply(row_colour, axis=1), hide_index=True, use_container_width=True)
