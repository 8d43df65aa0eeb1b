"""What a run would use is visible before it runs: resolved options in the dry run, `ls adapters --suite
--preset`, `params --preset`; every subcommand's --help; --config with every option; typo ranges (issue 34)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.cli.parser import build_parser

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# every subcommand the parser has (a new one is tested without touching this file)
SUBCOMMANDS = tuple(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]


def test_the_parser_has_at_least_these_subcommands():
    assert {"run", "ls", "params", "report", "reproduce", "analyze"} <= set(SUBCOMMANDS)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_a_help(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: harness {command}") and "options:" in out
    nested = _subcommands_of(command)
    if nested:  # a command group (records): its help lists its subcommands, and each has a help of its own
        assert all(name in out for name in nested), out
        for name in nested:
            with pytest.raises(SystemExit) as done:
                main([command, name, "--help"])
            assert done.value.code == 0
            inner = capsys.readouterr().out
            assert inner.startswith(f"usage: harness {command} {name}") and "options:" in inner
        return
    assert len([line for line in out.splitlines() if line.strip().startswith("-")]) >= 2, out


def _subcommands_of(command: str) -> tuple[str, ...]:
    parser = build_parser()._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
    groups = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return tuple(groups[0].choices) if groups else ()


def test_analyze_help_names_its_arguments(capsys):
    with pytest.raises(SystemExit):
        main(["analyze", "--help"])
    out = capsys.readouterr().out
    assert "run1" in out and "--max-rank" in out and "subspace similarity" in out


@pytest.mark.parametrize("flag,value", [("--lr", "3e4"), ("--lr", "2"), ("--head-lr", "5"), ("--lr", "0")])
def test_implausible_learning_rates_are_refused_with_the_range(flag, value, capsys):
    assert main(["run", "--suite", "toy", flag, value, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "(0, 1]" in err and flag in err, err
    if value == "3e4":
        assert "did you mean 3e-4?" in err


def test_config_file_can_name_the_suite(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "grid.json"
    config.write_text(json.dumps({"suite": "toy", "adapters": "head", "seeds": [3], "dry_run": True}))
    assert main(["run", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "runs planned" in out and "resolved settings (suite toy" in out
    assert main(["run", "--adapters", "head"]) == 2
    assert "--suite is required" in capsys.readouterr().err


def test_the_dry_run_prints_each_adapters_resolved_options(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--suite", "toy", "--adapters", "head,full", "--lr", "0.02", "--seeds", "1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    lines = out[out.index("resolved settings (suite toy, preset cpu"):].splitlines()
    assert [line.split()[0] for line in lines[1:3]] == ["head", "full"], out
    training = [line for line in lines if "epochs=" in line]
    assert training and all("lr=0.02" in line for line in training), out


def test_ls_adapters_for_a_suite_and_preset_shows_what_its_runs_use(capsys):
    assert main(["ls", "adapters", "--suite", "glue", "--preset", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "suite glue, preset cpu, model minilm-l6" in out
    block = dict(zip(out.splitlines()[1::1], out.splitlines()[2::1]))
    lora = next(v for k, v in block.items() if k.startswith("lora "))
    assert "alpha=16.0" in lora and "rank=8" in lora
    assert any(k.startswith("adapter-h") and "bottleneck=8" in v for k, v in block.items())
    assert any(k.startswith("lily") and "stride_a=2" in v for k, v in block.items())


def test_params_with_a_preset_counts_what_the_run_recorded(capsys):
    recorded = {}
    for path in sorted((PROJECT_ROOT / "results" / "glue" / "rte").glob("*.json")):
        record = json.loads(path.read_text())
        defaults = record.get("preset_defaults") or {}
        if record["key"]["adapter"] in ("lily", "adapter-h") and record["spec"]["adapter_options"] == (
                defaults.get("adapter_options", record["spec"]["adapter_options"])):
            recorded.setdefault(record["key"]["adapter"], set()).add(record["params"]["adapter_trainable"])
    assert main(["params", "--suite", "glue", "--preset", "cpu", "--adapters", "lily,adapter-h", "--json"]) == 0
    rows = {r["adapter"]: r["trainable_params"] for r in json.loads(capsys.readouterr().out)}
    assert rows["lily"] == 74_304 and rows["lily"] in recorded["lily"]
    assert rows["adapter-h"] in recorded["adapter-h"]
