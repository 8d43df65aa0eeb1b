"""The machine's speed probe: measured once per process without touching any random stream, carried by
every CPU record, and used by the estimator to scale reference timings recorded on other machines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harness import speed_probe
from harness.grid import progress
from tests.test_progress import _record, _spec
from tests.test_speed_paths import toy  # noqa: F401  (the toy suite fixture)


def _probed(record: dict, seconds_per_step: float, threads: int = 2,
            workload: str = speed_probe.WORKLOAD) -> dict:
    record["environment"]["speed_probe"] = {"workload": workload, "threads": threads,
                                            "seconds_per_step": seconds_per_step}
    return record


def test_the_probe_times_a_step_once_per_process_and_leaves_the_random_streams_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    probe = speed_probe.measure()
    assert torch.equal(torch.rand(3), expected)  # a run seeded before the probe draws the same numbers
    assert probe is not None and probe["workload"] == speed_probe.WORKLOAD
    assert probe["threads"] == torch.get_num_threads() and 0 < probe["seconds_per_step"] < 60
    hits = speed_probe._measure_at.cache_info().hits
    assert speed_probe.measure() == probe  # cached: the second run of a process pays nothing
    assert speed_probe._measure_at.cache_info().hits == hits + 1
    threads = torch.get_num_threads()
    one = speed_probe.measure(threads=1)
    assert one is not None and one["threads"] == 1 and torch.get_num_threads() == threads  # restored


def test_references_are_scaled_by_their_own_probe_to_this_machine():
    refs = [_probed(_record("rte", "lora", 100, threads=2), 0.10),  # a machine twice as fast as this one
            _probed(_record("rte", "lora", 200, threads=2), 0.20),  # a machine as fast as this one
            _probed(_record("sst2", "lora", 30, threads=2), 0.30)]  # a machine 1.5x slower
    here = {"workload": speed_probe.WORKLOAD, "threads": 2, "seconds_per_step": 0.20}
    est = progress.Estimator.from_records(refs, here)
    assert est.calibrated == 3 and est.machine_probe == pytest.approx(0.20)
    assert est.estimate(_spec("rte", "lora"), threads=2) == pytest.approx(200.0)  # both say 200 s here
    assert est.estimate(_spec("sst2", "lora"), threads=2) == pytest.approx(20.0)
    # the training and evaluation parts scale too: a step-capped run's prediction is 2x as well
    capped = progress.Estimator.from_records([_probed(_record("rte", "lora", 200, train=150, evals=40, threads=2),
                                                      0.10)], here)
    assert capped.estimate(_spec("rte", "lora", max_steps=10), threads=2) == pytest.approx(2 * (10 + 15 + 20))
    # the machine not probed: the records count as they are
    plain = progress.Estimator.from_records(refs)
    assert plain.calibrated == 0 and plain.estimate(_spec("rte", "lora"), threads=2) == pytest.approx(150.0)


def test_probed_references_win_over_unprobed_ones_and_only_like_is_compared_with_like():
    here = {"workload": speed_probe.WORKLOAD, "threads": 2, "seconds_per_step": 0.40}
    est = progress.Estimator.from_records([
        _probed(_record("rte", "lora", 100, threads=2), 0.20),  # probed: 200 s here
        _record("rte", "lora", 500, threads=2),  # no probe (an older record): not mixed in
        _probed(_record("sst2", "lora", 50, threads=2), 0.20, workload="another-workload"),
        _probed(_record("qnli", "lora", 60, threads=1), 0.20, threads=1),  # probed at other threads
        _probed(_record("stsb", "lora", 70, threads=2, device="cuda:0"), 0.20),  # a GPU run's
    ], here)
    assert est.calibrated == 1
    assert est.estimate(_spec("rte", "lora"), threads=2) == pytest.approx(200.0)
    assert est.estimate(_spec("sst2", "lora"), threads=2) == pytest.approx(50.0)  # another workload's figure
    assert est.estimate(_spec("qnli", "lora"), threads=1) == pytest.approx(60.0)  # not this probe's threads
    assert est.estimate(_spec("stsb", "lora"), threads=2) == pytest.approx(70.0)
    line = progress.estimate_grid([_spec("rte", "lora")], est, 2).line()
    assert "1 of 5 reference records scaled by their own probe to this machine's speed probe: 400 ms/step" in line
    none = progress.Estimator.from_records([_record("rte", "lora", 100, threads=2)], here)
    assert "no reference record has one at these threads" in progress.estimate_grid([_spec("rte", "lora")], none, 2).line()
    assert "probe" not in progress.estimate_grid([_spec("rte", "lora")],
                                                 progress.Estimator.from_records([]), 2).line()


def test_cpu_records_carry_the_probe_and_the_dry_run_uses_it(toy, tmp_path: Path,  # noqa: F811
                                                             capsys: pytest.CaptureFixture):
    from harness.cli.main import main
    from harness.pipeline.environment import cpu_model

    args = ["run", "--suite", "toy", "--adapters", "head", "--seeds", "1", "--device", "cpu",
            "--results-dir", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "probe" not in out.split("estimated grid time")[1].splitlines()[0]  # nothing probed to compare with
    records = [json.loads(p.read_text()) for p in tmp_path.rglob("*.json")]
    assert records and all(r["status"] == "success" for r in records)
    for record in records:
        probe = record["environment"]["speed_probe"]
        assert probe["workload"] == speed_probe.WORKLOAD and probe["threads"] == record["environment"]["torch_threads"]
        assert probe["seconds_per_step"] > 0
        # which kind of CPU made it: float results differ between SIMD capabilities
        assert record["environment"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
        assert record["environment"]["cpu_model"] == cpu_model()
    assert main([*args, "--dry-run", "--force"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("estimated grid time"))
    assert "reference records scaled by their own probe to this machine's speed probe" in line


def test_the_cpu_model_is_read_from_cpuinfo_and_missing_files_fall_back(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch):
    import platform

    from harness.pipeline.environment import cpu_model

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9B14\nflags\t: fpu\n")
    assert cpu_model(info) == "AMD EPYC 9B14"
    monkeypatch.setattr(platform, "processor", lambda: "i386")
    assert cpu_model(tmp_path / "absent") == "i386"
    monkeypatch.setattr(platform, "processor", lambda: "")
    assert cpu_model(tmp_path / "absent") is None


def test_a_cancelled_run_never_measures_a_probe_in_the_stop_grace_period(monkeypatch):
    # a stopped run is recorded within SLURM's 30 s (the pool's 20 s): measuring the probe there cost the
    # cancelled records of two workers on a loaded machine (tests/test_signals.py)
    import torch

    from harness.pipeline.environment import environment_info

    def never(threads: int) -> dict:
        raise AssertionError("the probe was measured")

    monkeypatch.setattr(speed_probe, "_measure_at", never)
    monkeypatch.setattr(speed_probe, "_MEASURED", set())
    assert "speed_probe" not in environment_info(torch.device("cpu"), probe=False)
    measured = {"workload": speed_probe.WORKLOAD, "threads": torch.get_num_threads(), "seconds_per_step": 0.1}
    monkeypatch.setattr(speed_probe, "_measure_at", lambda threads: measured)
    monkeypatch.setattr(speed_probe, "_MEASURED", {torch.get_num_threads()})  # measured earlier in the process
    assert environment_info(torch.device("cpu"), probe=False)["speed_probe"] == measured
