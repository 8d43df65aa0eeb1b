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


def tables_dir(results_dir: str | Path) -> Path:
    return Path(os.environ.get("HARNESS_TABLES_DIR") or Path(results_dir) / "tables")


def load_reproduction(folder: str | Path) -> dict[str, pd.DataFrame]:
    """Table name -> its reproduce CSV, in the order of harness.paper_tables; tables without a file are
    left out."""
    out: dict[str, pd.DataFrame] = {}
    for table in TABLES:
        path = Path(folder) / f"reproduce-{table.name}.csv"
        if path.is_file():
            frame = pd.read_csv(path)
            if not frame.empty:
                out[table.name] = frame
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
    frames = load_reproduction(folder)
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
