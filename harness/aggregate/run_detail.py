"""Per-record views for the app's run detail: loss curve, singular values, M_eff and analysis matrices."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from harness.aggregate._values import finite_number, section_of
from harness.records.record import RunRecord


def loss_curve_frame(record: RunRecord) -> pd.DataFrame:
    points = [p for p in record.get("loss_curve") or [] if isinstance(p, (list, tuple)) and len(p) == 2]
    frame = pd.DataFrame(points, columns=["step", "loss"])
    return frame.apply(pd.to_numeric, errors="coerce").dropna()


def _component_label(component: Mapping[str, Any]) -> str:
    """``query L3 global``: short enough for a legend; the module path only when kind or layer is missing."""
    kind, layer, part = component.get("kind"), component.get("layer"), component.get("component")
    if kind is None or layer is None:
        return " ".join(str(v) for v in (component.get("module"), part) if v is not None) or "component"
    return " ".join(str(v) for v in (kind, f"L{layer}", part) if v is not None)


def _components(record: RunRecord) -> list[Mapping[str, Any]]:
    components = section_of(record, "analysis").get("components")
    return [c for c in components if isinstance(c, Mapping)] if isinstance(components, list) else []


def singular_values_frame(record: RunRecord) -> pd.DataFrame:
    """Long form: component, kind, layer, index (1-based), singular_value."""
    rows = []
    for c in _components(record):
        for i, s in enumerate(c.get("singular_values") or [], start=1):
            if finite_number(s) is not None:
                rows.append({"component": _component_label(c), "kind": c.get("kind"), "layer": c.get("layer"),
                             "index": i, "singular_value": float(s)})
    return pd.DataFrame(rows, columns=["component", "kind", "layer", "index", "singular_value"])


def m_eff_frame(record: RunRecord) -> pd.DataFrame:
    """Long form: component, kind, layer, k, m_eff (MSPLoRA eq. 8)."""
    rows = []
    for c in _components(record):
        m_eff = c.get("m_eff")
        for k, value in (m_eff.items() if isinstance(m_eff, Mapping) else []):
            if finite_number(value) is not None:
                rows.append({"component": _component_label(c), "kind": c.get("kind"), "layer": c.get("layer"),
                             "k": int(k) if str(k).isdigit() else str(k), "m_eff": float(value)})
    return pd.DataFrame(rows, columns=["component", "kind", "layer", "k", "m_eff"])


def _is_matrix(value: Any) -> bool:
    return (isinstance(value, list) and len(value) > 0 and all(isinstance(r, list) and r for r in value)
            and len({len(r) for r in value}) == 1
            and all(v is None or finite_number(v) is not None for r in value for v in r))


_AXIS_TITLES = {"rows": "row", "row_labels": "row", "layers": "layer", "cols": "column", "columns": "column",
                "col_labels": "column", "modules": "module"}


def _matrix_long(matrix: list[list[Any]], rows: Sequence[Any] | None, cols: Sequence[Any] | None,
                 row_title: str = "row index", col_title: str = "column index") -> pd.DataFrame:
    """Long form (row, col, value); ``attrs`` carry the axis titles the heatmap shows."""
    n_rows, n_cols = len(matrix), len(matrix[0])
    row_labels = list(rows) if rows is not None and len(rows) == n_rows else list(range(n_rows))
    col_labels = list(cols) if cols is not None and len(cols) == n_cols else list(range(n_cols))
    data = [{"row": str(row_labels[i]), "col": str(col_labels[j]), "value": matrix[i][j]}
            for i in range(n_rows) for j in range(n_cols)]
    frame = pd.DataFrame(data, columns=["row", "col", "value"])
    frame.attrs.update(row_title=row_title, col_title=col_title)
    return frame


def analysis_matrices(record: RunRecord) -> list[tuple[str, pd.DataFrame]]:
    """Every 2-D numeric matrix in the analysis section (inter-layer KL, LoRA² ranks ...), long form.

    The analysis layout grows with the methods, so this walks it instead of naming keys: a matrix is
    a list of equal-length numeric lists, either bare or as ``{"matrix"|"values": [[...]], "rows"|
    "layers": [...], "cols"|"modules": [...]}``. Names are the JSON path to it.
    """
    found: list[tuple[str, pd.DataFrame]] = []

    def walk(value: Any, path: str) -> None:
        if _is_matrix(value):
            found.append((path, _matrix_long(value, None, None)))
        elif isinstance(value, Mapping):
            body = next((value[k] for k in ("matrix", "values", "kl", "ranks") if _is_matrix(value.get(k))), None)
            if body is not None:
                row_key = next((k for k in ("rows", "layers", "row_labels") if isinstance(value.get(k), list)), None)
                col_key = next((k for k in ("cols", "columns", "modules", "col_labels")
                                if isinstance(value.get(k), list)), row_key)  # square: the rows' labels
                rows = value[row_key] if row_key else None
                cols = value[col_key] if col_key else None
                found.append((path, _matrix_long(body, rows, cols, _AXIS_TITLES.get(row_key or "", "row index"),
                                                 _AXIS_TITLES.get(col_key or "", "column index"))))
                return
            for key, child in value.items():
                if key != "components":
                    walk(child, f"{path}.{key}" if path else str(key))

    walk(section_of(record, "analysis"), "")
    ranks = _component_rank_matrix(_components(record))
    if ranks is not None:
        found.append(("final rank per layer and module", ranks))
    return found


def _component_rank_matrix(components: list[Mapping[str, Any]]) -> pd.DataFrame | None:
    """Layer x module of the components' final ranks (LoRA² prunes them), when components carry one."""
    rows = []
    for c in components:
        rank = next((c[k] for k in ("final_rank", "rank") if finite_number(c.get(k)) is not None), None)
        if rank is not None and c.get("layer") is not None:
            rows.append({"row": str(c["layer"]), "col": str(c.get("kind") or c.get("module")), "value": float(rank)})
    if not rows:
        return None
    frame = pd.DataFrame(rows).groupby(["row", "col"], as_index=False, sort=False)["value"].max()
    frame.attrs.update(row_title="layer", col_title="module")
    return frame
