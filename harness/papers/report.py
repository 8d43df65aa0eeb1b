"""The reproduction tables' derived outputs (harness/papers/reproduce.py): Kendall's tau of the papers' ordering
against ours, the CSV text, and the "paper | ours" Markdown."""

from __future__ import annotations

import csv
import io
import math
from typing import Any

from harness.untrusted import csv_rows

TAU_RESAMPLES = 2000


def rank_agreement(rows: list[dict[str, Any]], n_resamples: int = TAU_RESAMPLES) -> list[dict[str, Any]]:
    """Per (table, preset, model): Kendall's tau between the paper's ordering of the rows and ours,
    with a 95% percentile bootstrap interval over tasks and seeds. Each row is placed by its mean over the
    tasks every compared row has (the paper's value and ours); tasks are dropped, those most rows miss
    first, until at least three rows have all that remain. A bootstrap resample draws the tasks with
    replacement and, within each (row, task), our seeds (one seed: nothing to draw)."""
    import numpy as np
    from scipy.stats import kendalltau

    out = []
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("reproduced_mean") is not None:
            groups.setdefault((r["table"], r["preset"], r["model"], r["paper_model"]), []).append(r)
    for (name, preset, model, paper_model), items in groups.items():
        cells = {(r["row"], r["task"], r["metric"]): r for r in items}
        methods = list(dict.fromkeys(r["row"] for r in items))
        tasks = list(dict.fromkeys((r["task"], r["metric"]) for r in items))
        while True:
            complete = [m for m in methods if all((m, t, k) in cells for t, k in tasks)]
            if len(complete) >= 3 or len(tasks) <= 1:
                break
            missing = {tk: sum((m, *tk) not in cells for m in methods) for tk in tasks}
            tasks.remove(max(missing, key=missing.get))
        base = {"table": name, "preset": preset, "model": model, "paper_model": paper_model,
                "n_methods": len(complete), "methods": "; ".join(complete),
                "tasks": ",".join(t if sum(x == t for x, _ in tasks) == 1 else f"{t}:{k}" for t, k in tasks)}
        if len(complete) < 3:
            out.append({**base, "kendall_tau": None, "tau_ci_low": None, "tau_ci_high": None, "p_value": None,
                        "interval": "fewer than three rows with every task"})
            continue
        paper = np.array([[cells[(m, t, k)]["reported"] for t, k in tasks] for m in complete])
        seeds = [[list((cells[(m, t, k)].get("_seeds") or {}).values())
                  or [cells[(m, t, k)]["reproduced_mean"]] for t, k in tasks] for m in complete]
        ours = np.array([[float(np.mean(v)) for v in row] for row in seeds])
        tau, p_value = kendalltau(paper.mean(axis=1), ours.mean(axis=1))
        rng = np.random.default_rng(0)
        taus = []
        for _ in range(n_resamples):
            pick = rng.integers(0, len(tasks), size=len(tasks))
            ours_b = np.array([[float(np.mean(rng.choice(seeds[i][j], size=len(seeds[i][j]))))
                                for j in pick] for i in range(len(complete))])
            value = kendalltau(paper[:, pick].mean(axis=1), ours_b.mean(axis=1))[0]
            if not math.isnan(value):
                taus.append(value)
        low, high = (float(v) for v in np.quantile(taus, [0.025, 0.975])) if taus else (math.nan, math.nan)
        one_seed = all(len(v) == 1 for row in seeds for v in row)
        out.append({**base, "kendall_tau": round(float(tau), 4), "tau_ci_low": round(low, 4),
                    "tau_ci_high": round(high, 4), "p_value": round(float(p_value), 4),
                    "interval": "95% bootstrap over tasks" + (" (one seed per cell: seeds not resampled)"
                                                              if one_seed else " and seeds")})
    return out


def _csv(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(csv_rows(rows))  # strings neutralised against spreadsheet formulas
    return buffer.getvalue()


def _num(value: Any, digits: int = 1, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def reproduction_markdown(name: str, rows: list[dict[str, Any]], agreement: list[dict[str, Any]]) -> str:
    """Per (preset, model): "paper | ours" per row and task, then each row's difference to the table's
    LoRA row as "paper | ours [our interval]", then the rank agreement."""
    lines = [f"# {name}: reported beside reproduced", "",
             "Cells: paper | ours (mean over seeds, Student-t 95% interval when there are two seeds or more). "
             "A cpu-preset block ran another model on a smaller budget: its absolute numbers are not the "
             "paper's; the differences to the table's own LoRA row and the rank agreement are what carries "
             "across models.", ""]
    blocks: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        blocks.setdefault((r["preset"], r["model"], r["paper_model"]), []).append(r)
    for (preset, model, paper_model), items in blocks.items():
        tasks = list(dict.fromkeys((r["task"], r["metric"]) for r in items))  # a task may report several metrics
        methods = list(dict.fromkeys(r["row"] for r in items))
        cell = {(r["row"], (r["task"], r["metric"])): r for r in items}
        lines += [f"## preset {preset}: ours {model}, paper {paper_model}", ""]
        header = ["row", *(t if sum(x == t for x, _ in tasks) == 1 else f"{t} {k}" for t, k in tasks)]
        values, deltas = [], []
        for m in methods:
            v_row, d_row = [m], [m]
            for t in tasks:
                r = cell.get((m, t))
                if r is None:
                    v_row.append("–")
                    d_row.append("–")
                    continue
                ours = _num(r["reproduced_mean"])
                if r.get("ci_low") is not None:
                    ours += f" [{_num(r['ci_low'])}, {_num(r['ci_high'])}]"
                v_row.append(f"{_num(r['reported'])} \\| {ours}")
                if r.get("lora_row") and r["row"] == r["lora_row"]:
                    d_row.append("(LoRA row)")
                elif r.get("reported_vs_lora") is None:
                    d_row.append("–")
                else:
                    d = _num(r.get("ours_vs_lora"), sign=True)
                    if r.get("ours_vs_lora_ci_low") is not None:
                        d += f" [{_num(r['ours_vs_lora_ci_low'], sign=True)}, {_num(r['ours_vs_lora_ci_high'], sign=True)}]"
                    d_row.append(f"{r['reported_vs_lora']:+.1f} \\| {d}")
            values.append(v_row)
            deltas.append(d_row)
        for title, body in (("paper | ours", values), ("difference to the LoRA row: paper | ours", deltas)):
            lines += [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
            lines.append("")
        for a in agreement:
            if a["preset"] == preset and a["model"] == model and a["paper_model"] == paper_model:
                if a["kendall_tau"] is None:
                    lines += [f"Rank agreement: not computed ({a['interval']}).", ""]
                else:
                    lines += [f"Rank agreement of the paper's ordering with ours over {a['n_methods']} rows and "
                              f"tasks {a['tasks']}: Kendall's tau = {a['kendall_tau']:.2f} "
                              f"[{a['tau_ci_low']:.2f}, {a['tau_ci_high']:.2f}] ({a['interval']}), p = "
                              f"{a['p_value']:.3f}.", ""]
    return "\n".join(lines)
