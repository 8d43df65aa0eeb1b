"""The PEFT leaderboard: ``streamlit run app/leaderboard.py [-- --results-dir DIR]``.

Reads the result store through harness.records.record / harness.records.store / harness.aggregate only: it never
imports torch or the runner and never writes. The results folder comes from the command line
(``--results-dir``, repeatable) or the environment (``HARNESS_RESULTS_DIR``; ``HARNESS_RESULTS_DIRS``, a
list separated by ``os.pathsep``), else your own store ``runs/`` (when it exists) and the shipped
reference store ``results/``, with "all of them" read together (every row's ``store`` column says
where it comes from): a viewer can choose among those configured stores
but cannot type a path, so the app never lists arbitrary server folders. The reported numbers come from
``HARNESS_REFERENCE_DIR`` or ``results/reference/``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:  # `streamlit run` puts app/ on the path, not the project root
    sys.path.insert(0, str(PROJECT_ROOT))

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from app import run_detail, views  # noqa: E402
from harness import aggregate  # noqa: E402
from harness.records.record import RunRecord  # noqa: E402
from harness.records.store import ResultStore  # noqa: E402
from harness.records.stores import (  # noqa: E402
    SHIPPED_RESULTS_DIR,
    USER_RESULTS_DIR,
    add_source,
    is_shipped,
    record_sources,
    row_sources,
    source_name,
)


def configured_stores(argv: list[str], environ: dict[str, str] | None = None) -> list[str]:
    """The result stores a viewer may choose among: ``--results-dir`` (repeatable), else
    ``HARNESS_RESULTS_DIR`` and ``HARNESS_RESULTS_DIRS``, else ``runs/`` (when it exists) and the shipped
    ``results/``; in that order, once each."""
    environ = dict(os.environ) if environ is None else environ
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--results-dir", action="append", default=[])
    known, _ = parser.parse_known_args(argv)
    stores = list(known.results_dir)
    if not stores:
        stores = [environ["HARNESS_RESULTS_DIR"]] if environ.get("HARNESS_RESULTS_DIR") else []
        stores += [p for p in environ.get("HARNESS_RESULTS_DIRS", "").split(os.pathsep) if p]
    if not stores:
        user = Path(USER_RESULTS_DIR) if Path(USER_RESULTS_DIR).is_absolute() else Path.cwd() / USER_RESULTS_DIR
        stores = ([str(user)] if user.is_dir() else []) + [str(SHIPPED_RESULTS_DIR)]
    return list(dict.fromkeys(stores))


ALL_STORES = "all of them"


def store_label(store: str) -> str:
    return f"{store} (shipped reference)" if is_shipped(store) else store


def default_results_dir(argv: list[str]) -> str:
    return configured_stores(argv)[0]


def reference_dir() -> Path:
    return Path(os.environ.get("HARNESS_REFERENCE_DIR") or PROJECT_ROOT / "results" / "reference")


def store_signature(results_dir: str) -> tuple[tuple[str, int, int], ...]:
    """Path, size and mtime of every JSON file: the cache key, so a new or rewritten record is seen."""
    out = []
    for path in ResultStore(results_dir).iter_paths():
        try:
            stat = path.stat()
        except OSError:  # removed between listing and stat
            continue
        out.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(out)


def load_store(results_dir: str) -> tuple[list[RunRecord], list[tuple[str, str]]]:
    return _load_store_cached(results_dir, store_signature(results_dir))


@st.cache_data(show_spinner=False, max_entries=8)
def _load_store_cached(results_dir: str, signature: tuple) -> tuple[list[RunRecord], list[tuple[str, str]]]:
    del signature  # only part of the cache key
    report = ResultStore(results_dir).load(warn=False)
    root = Path(results_dir)
    skipped = [(_relative(path, root), why) for path, why in report.skipped]
    return report.records, skipped


def _relative(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path


def sidebar_filters(frame: pd.DataFrame) -> dict[str, list | None]:
    st.sidebar.header("Filters")
    chosen: dict[str, list | None] = {}
    columns = [("suite", "Suite"), ("task", "Task"), ("model", "Model"), ("preset", "Preset"),
               ("adapter", "Adapter"), ("seed", "Seed"), ("status", "Status")]
    if frame["store"].nunique() > 1:
        columns.insert(0, ("store", "Store"))
    for column, label in columns:
        options = sorted(str(v) for v in frame[column].dropna().unique())
        # nothing picked means everything: runs of a new adapter or status appear without re-ticking
        picked = st.sidebar.multiselect(label, options, default=[], placeholder="all", key=f"filter-{column}")
        chosen[column] = ([type_of(frame[column], v) for v in picked] or None) if picked else None
    if not st.sidebar.checkbox("Show limited (smoke) runs", value=True, key="filter-limited"):
        chosen["limited"] = [False]
    return chosen


def type_of(column: pd.Series, text: str):
    """A picked option (shown as text) back in the column's own type (seeds are integers)."""
    for value in column.dropna().unique():
        if str(value) == text:
            return value
    return text


def query_filter(frame: pd.DataFrame) -> pd.DataFrame:
    """A pandas query over the flat frame's columns (``score > 0.8 and adapter != 'full'``)."""
    text = st.sidebar.text_input("Query (pandas)", value="", key="filter-query",
                                 placeholder="score > 0.6 and params_adapter < 1e5")
    if not text.strip():
        return frame
    try:
        return frame.query(text)
    except Exception as exc:  # a viewer's typo: say so, show everything
        st.sidebar.error(f"query not applied: {type(exc).__name__}: {exc}")
        return frame


def main() -> None:
    st.set_page_config(page_title="PEFT leaderboard", layout="wide")
    st.title("PEFT leaderboard")
    stores = configured_stores(sys.argv[1:])
    choice = stores[0] if len(stores) == 1 else st.sidebar.selectbox(
        "Result store", [*stores, ALL_STORES], key="results-dir", format_func=store_label)
    chosen = stores if choice == ALL_STORES else [choice]
    results_dir = chosen[0] if len(chosen) == 1 else " + ".join(chosen)
    records, skipped, by_store = [], [], []
    for store in chosen:
        store_records, store_skipped = load_store(store)
        records += store_records
        skipped += store_skipped
        by_store.append((source_name(store), store_records))
    reference, reference_skipped = aggregate.load_reference(reference_dir())
    views.render_skipped(skipped, "files in the result store (not run records)")
    if not records:
        views.render_empty(results_dir)
        views.render_reported(reference, reference_skipped)
        if (Path(results_dir) / "tuning").is_dir():  # tuning studies before any `run --tuned`
            from app.tuning import render_tuning

            st.header("Tuning")
            render_tuning(results_dir, records)
        return
    frame = add_source(aggregate.load_frame(records), record_sources(by_store))
    views.render_duplicates(frame.attrs.get("duplicates", []))
    total = len(frame)
    frame = query_filter(aggregate.filter_frame(frame, **sidebar_filters(frame)))
    adapters = sorted(str(a) for a in frame["adapter"].dropna().unique())
    baseline = st.sidebar.selectbox("Baseline (paired comparison)", adapters or ["lora"],
                                    index=adapters.index("lora") if "lora" in adapters else 0, key="baseline")
    shown = {r["run_id"] for r in records} & set(frame["run_id"])
    dirty = int(frame["git_dirty"].fillna(False).astype(bool).sum())
    st.text(f"{len(frame)} of {total} runs shown from {results_dir}"
            + (f"; {dirty} from a dirty tree (marked in the tables)" if dirty else ""))
    if frame.empty:
        st.info("No runs match the filters.")
        return
    table = aggregate.leaderboard(frame)
    tab_board, tab_pareto, tab_detail, tab_reported, tab_export, tab_reproduction, tab_tuning = st.tabs(
        ["Leaderboard", "Pareto", "Run detail", "Reported (papers)", "Export", "Reproduction", "Tuning"]
    )
    with tab_board:
        views.render_leaderboard(table, baseline, row_sources(frame), store_root=chosen[0])
    with tab_pareto:
        views.render_pareto(table, reference)
    with tab_detail:
        run_detail.render_run_detail([r for r in records if r["run_id"] in shown])
    with tab_reported:
        views.render_reported(reference, reference_skipped)
    with tab_export:
        views.render_export(frame, baseline)
    with tab_reproduction:
        from app.reproduction import render_reproduction

        render_reproduction(chosen[0], records)
    with tab_tuning:
        from app.tuning import render_tuning

        render_tuning(chosen[0], records)


# `streamlit run app/leaderboard.py` runs this file as __main__; importing it (the tests) runs nothing
if __name__ == "__main__":
    main()
