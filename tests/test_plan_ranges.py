"""Every number a user gives is range-checked at plan time (issue 36, classes 2 and 5): a learning rate
or other float outside its plausible range, an integer that would overflow (seeds, ranks, epochs,
sizes, batch sizes, workers, threads, adapter and suite options) is one ``error:`` line naming the
range, exit code 2, before any training."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli.main import main
from harness.errors import HarnessError
from harness.spec import PLAUSIBLE_RANGES, TrainConfig, train_override_flags

TOY = ("run", "--suite", "toy", "--adapters", "head", "--device", "cpu", "--no-progress")
HUGE = "99999999999999999999999"


@pytest.fixture
def no_runs(monkeypatch):
    from harness.pipeline import runner

    def forbidden(*args, **kwargs):
        raise AssertionError("a run started before the bad value was reported")

    monkeypatch.setattr(runner, "execute_run", forbidden)


def _one_error(argv: list[str], capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def _too_big(name: str) -> str:
    return str(int(PLAUSIBLE_RANGES[name][1]) * 10) if name in PLAUSIBLE_RANGES else HUGE


# every TrainConfig field a `run` flag overrides: above its range, and an integer that overflows
# (test_each_epoch is a yes/no flag: no range; a number there is refused as not a bool, test_bad_inputs)
@pytest.mark.parametrize("name", sorted(n for n in train_override_flags() if n != "test_each_epoch"))
def test_every_training_flag_refuses_a_value_outside_its_range(name: str, tmp_path: Path, no_runs, capsys):
    flag = "--" + name.replace("_", "-")
    line = _one_error([*TOY, "--results-dir", str(tmp_path / "r"), flag, _too_big(name)], capsys)
    assert name in line and any(s in line for s in ("must be in", "must be an integer in", "must be a number in")), line
    if name in PLAUSIBLE_RANGES and PLAUSIBLE_RANGES[name][1] < 1e9:
        low, high, _ = PLAUSIBLE_RANGES[name]
        assert f"{high:g}]" in line, line  # the range is named
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("value", ["2e5", "1.5", "0", "-1e-4"])
def test_learning_rates_outside_zero_one(value: str, tmp_path: Path, no_runs, capsys):
    for flag, name in (("--lr", "lr"), ("--head-lr", "head_lr")):
        line = _one_error([*TOY, "--results-dir", str(tmp_path), f"{flag}={value}"], capsys)
        assert name in line and ("(0, 1]" in line or "must be positive" in line), line


@pytest.mark.parametrize("name", sorted(PLAUSIBLE_RANGES))
def test_every_ranged_field_of_train_config_at_plan_time(name: str):
    low, high, low_open = PLAUSIBLE_RANGES[name]
    integer = isinstance(low, int) and isinstance(high, int)
    above = int(high) + 1 if integer else high * 2
    with pytest.raises(HarnessError, match=f"{name} must be in"):
        TrainConfig(**{name: above}).check_plausible()
    TrainConfig(**{name: int(high) if integer else high}).check_plausible()  # the bound itself is fine


@pytest.mark.parametrize("argv, message", [
    (("--seeds", HUGE), "seeds must be non-negative integers in [0, 4294967295]"),
    (("--seeds", str(2**32)), "seeds must be non-negative integers in [0, 4294967295]"),
    (("--seeds", "-1"), "non-negative"),
    (("--rank", HUGE), "--rank must be an integer in [1, 65536]"),
    (("--alpha", "1e300"), "--alpha must be in (0, 1e+06]"),
    (("--workers", HUGE), "--workers must be an integer in [1, 1024]"),
    (("--threads", HUGE), "--threads must be an integer in [1, 1024]"),
    (("--suite-opt", f"points={HUGE}"), "option 'points' must be an integer in"),
], ids=["seeds-huge", "seeds-2**32", "seeds-negative", "rank", "alpha", "workers", "threads", "suite-opt-int"])
def test_every_integer_flag_is_range_checked(argv, message, tmp_path: Path, no_runs, capsys):
    line = _one_error([*TOY, "--results-dir", str(tmp_path), *argv], capsys)
    assert message in line, line


def test_the_largest_seed_passes_the_plan(tmp_path: Path, capsys):
    assert main([*TOY, "--results-dir", str(tmp_path), "--seeds", str(2**32 - 1), "--dry-run"]) == 0


@pytest.mark.parametrize("key, value", [("workers", 10**9), ("threads", 10**9), ("rank", 10**30),
                                        ("seeds", [10**30]), ("lr", 2e5), ("batch_size", 10**30)])
def test_config_file_numbers_are_checked_like_flags(key, value, tmp_path: Path, no_runs, capsys):
    import json

    config = tmp_path / "config.json"
    config.write_text(json.dumps({key: value}))
    line = _one_error([*TOY, "--results-dir", str(tmp_path / "r"), "--config", str(config)], capsys)
    assert "must be" in line and ("in [" in line or "in (" in line), line


def test_every_int_and_float_option_of_every_adapter_is_bounded():
    """Adapter options (--opt) go through harness.config.coerce: an int that overflows or a float of
    absurd magnitude is refused there, for every adapter and every numeric option."""
    import typing

    from harness.config import _strip_optional, build, field_types
    from harness.registry import ADAPTERS

    checked = 0
    for name in ADAPTERS.names():
        cls = ADAPTERS.get(name).config_cls
        for field, tp in field_types(cls).items():
            inner, _ = _strip_optional(tp)
            if typing.get_origin(inner) is tuple:
                inner = (typing.get_args(inner) or (str,))[0]
            if inner not in (int, float):
                continue
            with pytest.raises(HarnessError, match=f"option '{field}' must be"):
                build(cls, {field: HUGE if inner is int else "1e300"}, f"adapter '{name}'")
            checked += 1
    assert checked >= 10
