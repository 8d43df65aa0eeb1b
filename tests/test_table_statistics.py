"""Issue 33, statistics of the tables, on hand-built stores: the verdict rule as printed, the adjustment
over one table, the detectable difference, tasks without signal and efficiency columns about the method."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from harness import aggregate
from harness.aggregate import stats
from harness.cli.main import main
from tests.record_factory import make_record, write_store

SEEDS = (42, 64, 128)


def glue(adapter: str, task: str, scores, seeds=SEEDS, **kw) -> list[dict]:
    primary = {"stsb": "pearson", "cola": "mcc"}.get(task, "accuracy")
    options = kw.pop("adapter_options", None if adapter == "lora" else {})
    return [make_record(task=task, adapter=adapter, seed=s, score=v, primary=primary, adapter_options=options, **kw)
            for s, v in zip(seeds, scores)]


def frame_of(records: list[dict]) -> pd.DataFrame:
    return aggregate.leaderboard(aggregate.load_frame(records))


def rule_store() -> list[dict]:
    """rte, three seeds. dora - lora = 2, 3, 4 points (raw p = 0.035: the old rule, bootstrap interval
    excluding 0 and p < 0.05, says better); pissa - lora = +1, -2, +3 (p = 0.59). With one task each
    average row repeats its task's test: the family is 0.035, 0.035, 0.59, 0.59, and Holm gives
    0.035 * 4 = 0.140 -> tied."""
    return [*glue("lora", "rte", (0.60, 0.62, 0.64)), *glue("dora", "rte", (0.62, 0.65, 0.68)),
            *glue("pissa", "rte", (0.61, 0.60, 0.67))]


def test_legend_and_verdicts_agree_where_the_old_rule_and_the_new_one_differ(tmp_path):
    comparison = aggregate.compare_to_baseline(frame_of(rule_store()), "glue", "lora")
    dora = comparison[(comparison["method"] == "dora") & (comparison["task"] == "rte")].iloc[0]
    assert dora["p_value"] == pytest.approx(0.035099, abs=1e-5) and len(comparison) == 4
    assert dora["p_adjusted"] == pytest.approx(4 * dora["p_value"]) and dora["verdict"] == "tied"
    # the old rule: the exact percentile bootstrap of 2, 3, 4 excludes 0 and p < 0.05 -> better
    assert dora["p_value"] < 0.05 and dora["ci_low"] > 0  # the (unadjusted) t interval agrees with the raw p
    store, out = tmp_path / "store", tmp_path / "tables"
    write_store(store, rule_store())
    for adjust, mark in (("holm", "≈"), ("none", "▲")):
        assert main(["report", "--results-dir", str(store), "--out", str(out), "--p-adjust", adjust]) == 0
        rule = stats.verdict_rule(adjust)
        md = (out / "glue.md").read_text()
        assert md.count(rule) >= 2  # the wide table's legend and the comparison's caption
        dora_line = next(line for line in md.splitlines() if line.startswith("|") and "dora" in line.lower())
        assert dora_line.split("|")[4].strip(" *").endswith(mark)  # | # | Method | Params | RTE | ...
        vs = pd.read_csv(out / "glue-vs-lora.csv")
        assert set(vs["verdict_rule"]) == {rule} and set(vs["p_adjust"]) == {adjust}
        tex = (out / "glue.tex").read_text()
        assert "adjusted" in tex and "Student-t" in tex
        assert rule in (out / "leaderboard.md").read_text()
    assert dora["interval"] == stats.INTERVAL_METHOD


def test_holm_adjustment_over_the_whole_table_is_the_hand_worked_one():
    comparison = aggregate.compare_to_baseline(frame_of(rule_store()), "glue", "lora")
    raw = list(comparison["p_value"])
    assert list(comparison["p_adjusted"]) == pytest.approx(list(stats.adjust_p(raw, "holm")))
    bh = aggregate.compare_to_baseline(frame_of(rule_store()), "glue", "lora", p_adjust="bh")
    assert list(bh["p_adjusted"]) == pytest.approx(list(stats.adjust_p(raw, "bh")))
    with pytest.raises(ValueError):
        aggregate.compare_to_baseline(frame_of(rule_store()), "glue", "lora", p_adjust="bonferroni")


def test_a_tie_says_which_difference_the_seeds_could_have_detected():
    comparison = aggregate.compare_to_baseline(frame_of(rule_store()), "glue", "lora")
    dora = comparison[(comparison["method"] == "dora") & (comparison["task"] == "rte")].iloc[0]
    # differences 2, 3, 4 points: sd 1, 3 pairs -> 3.264 points (80% power, two-sided, alpha 0.05)
    assert dora["detectable"] == pytest.approx(3.264, abs=1e-3)
    shown = aggregate.comparison_display(comparison)
    text = shown.loc[(shown["method"] == "dora") & (shown["task"] == "rte"), "verdict"].item()
    assert text == "tied: no difference larger than 3.26 points detectable with 3 seeds"
    assert "detectable (80% power)" in shown.columns


def signal_store() -> list[dict]:
    """rte: everything within seed noise of head only; stsb: lora and full far above head only."""
    return [
        *glue("head", "rte", (0.52, 0.50, 0.53)), *glue("lora", "rte", (0.51, 0.53, 0.50)),
        *glue("full", "rte", (0.50, 0.52, 0.52)),
        *glue("head", "stsb", (0.10, 0.12, 0.11)), *glue("lora", "stsb", (0.80, 0.81, 0.83)),
        *glue("full", "stsb", (0.85, 0.86, 0.88)),
    ]


def test_a_task_without_signal_is_marked_and_averaged_apart(tmp_path):
    table = frame_of(signal_store())
    signal = aggregate.task_signal(table, "glue").set_index("task")
    assert signal.loc["rte", "status"] == "no signal" and signal.loc["stsb", "status"] == "signal"
    assert signal.loc["rte", "reference"] == "head" and signal.loc["stsb", "n_distinguishable"] == 2
    wide = aggregate.wide_table(table, "glue")
    lora = wide[wide["method"] == "lora r8"].iloc[0]
    assert lora["signal_tasks"] == "stsb" and lora["average_signal"] == pytest.approx(lora["stsb"])
    assert lora["average"] == pytest.approx((lora["rte"] + lora["stsb"]) / 2)
    store, out = tmp_path / "store", tmp_path / "tables"
    write_store(store, signal_store())
    assert main(["report", "--results-dir", str(store), "--out", str(out)]) == 0
    md = (out / "glue.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| # |"))
    assert "RTE accuracy (%)" in header and aggregate.NO_SIGNAL in header  # the task's column is marked
    assert f'marked "{aggregate.NO_SIGNAL}"' in md and "average_signal" in (out / "glue.csv").read_text()
    assert "no signal at this budget" in (out / "glue.tex").read_text()


def test_one_seed_tables_say_signal_is_unknown():
    table = frame_of([*glue("head", "rte", (0.5,), seeds=(42,)), *glue("lora", "rte", (0.6,), seeds=(42,))])
    assert aggregate.task_signal(table, "glue")["status"].tolist() == ["unknown"]


def timed(adapter: str, seed: int, *, load: float, probe: float, saved: int) -> dict:
    """A record whose run shared its cores (``load`` x the wall time for the same CPU work) on a machine
    whose probe step took ``probe`` s; ``saved``: the seed-dependent saved-activations estimate."""
    record = make_record(task="rte", adapter=adapter, seed=seed, score=0.6 + seed / 1000,
                         adapter_options=None if adapter == "lora" else {}, train_seconds=100.0 * load)
    speed = probe / 0.5  # a slower machine needs more CPU time too
    record["timing"].update(train_seconds=100.0 * load * speed, total_seconds=110.0 * load * speed,
                            cpu_seconds=2 * 110.0 * speed)
    record["environment"].update(torch_threads=2, device="cpu", speed_probe={
        "workload": "minilm-l6-shape-fwd-bwd-32x32-min", "threads": 2, "seconds_per_step": probe})
    record["memory"].update(estimate_bytes=300 * 2**20 + saved, estimate_breakdown={
        "parameters": 100 * 2**20, "buffers": 0, "gradients": 50 * 2**20, "optimizer_state": 150 * 2**20,
        "saved_for_backward": saved})
    return record


def test_time_and_memory_columns_do_not_depend_on_the_machine_or_the_seed():
    quiet = [timed("lora", s, load=1.0, probe=0.5, saved=s * 2**20) for s in SEEDS]
    # the same runs on a machine shared with other jobs (4.3x the wall time, same CPU work), on a machine
    # twice as slow (probe 1.0 s), and with other seeds' first batches (other saved activations)
    loaded = [timed("lora", s, load=4.3, probe=0.5, saved=3 * s * 2**20) for s in SEEDS]
    slow = [timed("lora", s, load=1.0, probe=1.0, saved=s * 2**20) for s in SEEDS]
    columns = ["train_seconds_quiet", "cpu_fixed_mib"]
    a = aggregate.wide_table(frame_of(quiet), "glue").iloc[0]
    b = aggregate.wide_table(frame_of(loaded), "glue").iloc[0]
    c = aggregate.wide_table(frame_of(slow), "glue").iloc[0]
    for column in columns:
        assert a[column] == pytest.approx(b[column]) == pytest.approx(c[column])
    assert a["cpu_fixed_mib"] == pytest.approx(300.0) and a["train_time_normalised"] == "cpu time + probe"
    assert b["train_seconds"] == pytest.approx(4.3 * a["train_seconds"])  # the raw wall time stays
    # one seed on a loaded machine does not make the method slower
    mixed = [*quiet[:2], loaded[2]]
    assert aggregate.wide_table(frame_of(mixed), "glue").iloc[0]["train_seconds_quiet"] == pytest.approx(
        a["train_seconds_quiet"])
    shown, _ = aggregate.wide_display(aggregate.wide_table(frame_of(loaded), "glue"))
    assert "train time (s, quiet reference machine)" in shown.columns
    assert math.isclose(float(shown["train time (s, quiet reference machine)"].iloc[0]),
                        round(a["train_seconds_quiet"]))


def test_records_with_predictions_are_compared_over_seeds_and_items(tmp_path):
    import numpy as np

    from harness.records.predictions import write_predictions
    from harness.records.record import record_relpath

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    records = []
    for adapter, accuracy in (("lora", 0.6), ("dora", 0.8)):
        for seed in SEEDS:
            preds = np.where(np.random.default_rng(seed + len(adapter)).random(300) < accuracy, labels, 1 - labels)
            record = glue(adapter, "rte", (float((preds == labels).mean()),), seeds=(seed,))[0]
            records.append(record)
            write_predictions(tmp_path / record_relpath(record["key"]), {"predictions": preds, "labels": labels})
    write_store(tmp_path, records)
    table = frame_of(records)
    with_items = aggregate.compare_to_baseline(table, "glue", "lora", store_root=tmp_path)
    rte = with_items[with_items["task"] == "rte"].iloc[0]
    assert rte["interval"] == stats.ITEM_INTERVAL_METHOD and rte["verdict"] == "better"
    assert 15 < rte["delta"] < 25 and 0 < rte["ci_low"] < rte["delta"] < rte["ci_high"]
    seeds_only = aggregate.compare_to_baseline(table, "glue", "lora")
    assert set(seeds_only["interval"]) == {stats.INTERVAL_METHOD}
    assert rte["delta"] == pytest.approx(seeds_only.loc[seeds_only["task"] == "rte", "delta"].item())
    # one side without its sidecar: over seeds only
    (tmp_path / "glue" / "rte").joinpath(next(p.name for p in (tmp_path / "glue" / "rte").glob("lora-*seed42.preds.npz"))).unlink()
    partial = aggregate.compare_to_baseline(table, "glue", "lora", store_root=tmp_path)
    assert partial.loc[partial["task"] == "rte", "interval"].item() == stats.INTERVAL_METHOD
