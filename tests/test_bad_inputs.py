"""Bad input, table-driven: each case through the CLI entry gets ONE line on stderr (``error: ...``),
exit code 2, and no model load (a guard fails the test if any suite loads a model or transformers
loads weights, or if a run starts). A few cases also go through a real subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.cli.main import main
from tests.record_factory import make_record

JUDGE_ENV = ("HARNESS_JUDGE_BASE_URL", "HARNESS_JUDGE_MODEL", "HARNESS_JUDGE_API_KEY", "OPENAI_API_KEY",
             "OPENAI_BASE_URL", "HARNESS_DATA_DIR", "HARNESS_RESULTS_DIR")


@dataclass(frozen=True)
class Case:
    """One bad input: argv with {tmp}/{data} placeholders, the message the error line must contain,
    files to lay out first, and environment variables (HF_HUB_OFFLINE=1 unless a case says otherwise)."""

    id: str
    argv: tuple[str, ...]
    message: str
    setup: Callable[[Path, Path], None] | None = None
    env: dict[str, str] = field(default_factory=lambda: {"HF_HUB_OFFLINE": "1"})

    def __post_init__(self) -> None:
        if not self.argv or not self.message:
            raise ValueError(f"case {self.id}: argv and message are required")


def _rte(tmp: Path, shared: Path, *, train: bool = True, dev_header: str | None = None,
         train_header: str | None = None) -> None:
    src, dst = shared / "glue" / "RTE", tmp / "data" / "glue" / "RTE"
    dst.mkdir(parents=True)
    if train:
        shutil.copyfile(src / "train.tsv", dst / "train.tsv")
    if train_header is not None:
        rows = (src / "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
        (dst / "train.tsv").write_text(train_header + "\n" + "".join(rows[1:20]), encoding="utf-8")
    lines = (src / "dev.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    if dev_header is not None:
        lines[0] = dev_header + "\n"
    (dst / "dev.tsv").write_text("".join(lines[:20]), encoding="utf-8")


def _config(content: str) -> Callable[[Path, Path], None]:
    return lambda tmp, shared: (tmp / "config.json").write_text(content)


def _a_file(tmp: Path, shared: Path) -> None:
    (tmp / "a-file").write_text("not a folder")


GLUE = ("run", "--suite", "glue", "--tasks", "rte", "--data-dir", "{data}", "--results-dir", "{tmp}/results")
CASES = [
    Case("unknown-suite", ("run", "--suite", "glu"), "unknown suite 'glu'; did you mean 'glue'?"),
    Case("unknown-adapter", (*GLUE, "--adapters", "lroa"), "unknown adapter 'lroa'; did you mean 'lora'?"),
    Case("unknown-task", ("run", "--suite", "glue", "--tasks", "sst"), "unknown glue task 'sst'; did you mean 'sst2'?"),
    Case("unknown-preset", (*GLUE, "--preset", "papr"), "unknown preset 'papr'; did you mean 'paper'?"),
    Case("unknown-model-offline", (*GLUE, "--adapters", "lora", "--model", "minilm-l7"),
         "did you mean 'minilm-l6'?"),
    Case("unknown-model-online", (*GLUE, "--adapters", "lora", "--model", "minilm-l7"),
         "unknown model 'minilm-l7'; did you mean 'minilm-l6'?", env={"HF_HUB_OFFLINE": "0"}),
    Case("unknown-model-params", ("params", "--model", "robreta-base"), "did you mean 'roberta-base'?"),
    Case("empty-adapter-list", (*GLUE, "--adapters", ","), "empty adapter list"),
    Case("empty-adapter-string", (*GLUE, "--adapters", ""), "empty adapter list"),
    Case("rank-zero", (*GLUE, "--adapters", "lora", "--rank", "0"), "--rank must be a positive integer, got '0'"),
    Case("rank-negative", (*GLUE, "--adapters", "lora", "--rank=-4"), "--rank must be a positive integer, got '-4'"),
    Case("rank-not-int", (*GLUE, "--adapters", "lora", "--rank", "2.5"), "--rank must be a positive integer, got '2.5'"),
    Case("rank-word", (*GLUE, "--adapters", "lora", "--rank", "x"), "--rank must be a positive integer, got 'x'"),
    Case("sera-split", (*GLUE, "--adapters", "sera", "--rank", "8", "--opt", "split=3"),
         "SeRA split=3 must divide the rank r=8"),
    Case("msplora-rank-too-small", (*GLUE, "--adapters", "msplora", "--rank", "2"), "too small to halve over 3 levels"),
    Case("msplora-ranks-count", (*GLUE, "--adapters", "msplora", "--opt", "ranks=8,4"),
         "ranks gives 2 value(s) for 3 level(s)"),
    Case("seeds-negative", (*GLUE, "--adapters", "lora", "--seeds", "-1"), "non-negative"),
    Case("seeds-duplicate", (*GLUE, "--adapters", "lora", "--seeds", "1,2,1"), "duplicate seeds in [1, 2, 1]"),
    Case("seeds-not-int", (*GLUE, "--adapters", "lora", "--seeds", "1,x"), "comma-separated non-negative integers"),
    Case("data-folder-missing", ("run", "--suite", "glue", "--data-dir", "{tmp}/nowhere"), "does not exist"),
    Case("data-without-glue", (*GLUE[:5], "--data-dir", "{tmp}", "--adapters", "lora"), "download_glue_data"),
    Case("data-lacks-train-split", (*GLUE[:5], "--data-dir", "{tmp}/data", "--adapters", "lora"),
         "train.tsv is missing (train split of rte)", setup=lambda t, s: _rte(t, s, train=False)),
    Case("data-wrong-header", (*GLUE[:5], "--data-dir", "{tmp}/data", "--adapters", "lora"),
         "expected a column 'sentence1' in the header",
         setup=lambda t, s: _rte(t, s, dev_header="index\tpremise\thypothesis\tlabel")),
    Case("data-wrong-train-header", (*GLUE[:5], "--data-dir", "{tmp}/data", "--adapters", "lora"),
         "expected a column 'sentence1' in the header",
         setup=lambda t, s: _rte(t, s, train_header="index\tpremise\thypothesis\tlabel")),
    Case("results-under-a-file", (*GLUE[:7], "--results-dir", "{tmp}/a-file/results", "--adapters", "lora"),
         "is not writable", setup=_a_file),
    Case("results-read-only-fs", (*GLUE[:7], "--results-dir", "/proc/harness-results", "--adapters", "lora"),
         "results folder /proc/harness-results is not writable"),
    Case("hub-offline", (*GLUE, "--adapters", "lora", "--model", "someorg/some-encoder"),
         "the hub is off (HF_HUB_OFFLINE=1)"),
    Case("config-unknown-key", (*GLUE, "--config", "{tmp}/config.json"), "unknown key 'adapterz' in config file",
         setup=_config('{"adapterz": "lora"}')),
    Case("config-not-json", (*GLUE, "--config", "{tmp}/config.json"), "cannot read config file",
         setup=_config("adapters = lora")),
    Case("config-bad-workers", (*GLUE, "--config", "{tmp}/config.json"), "--workers must be a positive integer",
         setup=_config('{"adapters": "lora", "workers": 0}')),
    Case("humaneval-without-opt-in", ("run", "--suite", "instructeval", "--adapters", "lora", "--data-dir", "{data}",
                                      "--results-dir", "{tmp}/results", "--suite-opt", "benchmarks=mmlu,humaneval"),
         "HumanEval runs generated code: add --suite-opt allow_code_execution=true"),
    Case("judge-unreachable", ("run", "--suite", "mt-bench", "--adapters", "lora", "--data-dir", "{data}",
                               "--results-dir", "{tmp}/results", "--suite-opt", "judge=openai",
                               "--suite-opt", "judge_base_url=http://127.0.0.1:9/v1"),
         "the MT-Bench judge endpoint http://127.0.0.1:9/v1 cannot be reached"),
    Case("unknown-suite-option", (*GLUE, "--adapters", "lora", "--suite-opt", "judge=openai"),
         "unknown suite option 'judge' for suite 'glue'"),
    Case("unknown-adapter-option", (*GLUE, "--adapters", "lora", "--opt", "splitt=2"), "unknown option 'splitt'"),
    Case("max-steps-zero", (*GLUE, "--adapters", "lora", "--max-steps", "0"), "max_steps must be a positive integer"),
    Case("executor-unknown", (*GLUE, "--adapters", "lora", "--executor", "sge"),
         "--executor must be one of local, ray, slurm, got 'sge'"),
    Case("executor-slurm-without-slurm", (*GLUE, "--adapters", "lora", "--executor", "slurm"),
         "--executor slurm: no Slurm on this machine"),
    Case("workers-zero", (*GLUE, "--adapters", "lora", "--workers", "0"), "--workers must be a positive integer"),
    Case("address-without-ray", (*GLUE, "--adapters", "lora", "--address", "auto"), "--address applies to --executor ray"),
    Case("workers-with-ray", (*GLUE, "--adapters", "lora", "--executor", "ray", "--workers", "2"),
         "--workers applies to --executor local"),
    # non-finite numbers (nan <= 0 is False, so they used to pass every range check)
    Case("lr-nan", (*GLUE, "--adapters", "lora", "--lr", "nan"), "option 'lr' must be a finite number, got 'nan'"),
    Case("lr-inf", (*GLUE, "--adapters", "lora", "--lr", "inf"), "option 'lr' must be a finite number, got 'inf'"),
    Case("epochs-nan", (*GLUE, "--adapters", "lora", "--epochs", "nan"), "option 'epochs' must be a finite number"),
    Case("epochs-inf", (*GLUE, "--adapters", "lora", "--epochs", "inf"), "option 'epochs' must be a finite number"),
    Case("head-lr-minus-inf", (*GLUE, "--adapters", "lora", "--head-lr=-inf"), "option 'head_lr' must be a finite"),
    Case("alpha-nan", (*GLUE, "--adapters", "lora", "--alpha", "nan"), "--alpha must be a positive number, got 'nan'"),
    Case("alpha-inf", (*GLUE, "--adapters", "lora", "--alpha", "inf"), "--alpha must be a positive number, got 'inf'"),
    Case("opt-alpha-nan", (*GLUE, "--adapters", "lora", "--opt", "alpha=NaN"), "option 'alpha' must be a finite number"),
    Case("opt-dropout-inf", (*GLUE, "--adapters", "lora", "--opt", "dropout=infinity"),
         "option 'dropout' must be a finite number"),
    Case("judge-timeout-nan", ("run", "--suite", "mt-bench", "--adapters", "lora", "--data-dir", "{data}",
                               "--results-dir", "{tmp}/results", "--suite-opt", "judge_timeout=nan"),
         "option 'judge_timeout' must be a finite number"),
    Case("sandbox-timeout-inf", ("run", "--suite", "instructeval", "--adapters", "lora", "--data-dir", "{data}",
                                 "--results-dir", "{tmp}/results", "--suite-opt", "sandbox_timeout=inf"),
         "option 'sandbox_timeout' must be a finite number"),
    Case("config-lr-nan", (*GLUE, "--config", "{tmp}/config.json"), "option 'lr' must be a finite number",
         setup=_config('{"adapters": "lora", "lr": "nan"}')),
    Case("config-epochs-json-infinity", (*GLUE, "--config", "{tmp}/config.json"), "must be a finite number",
         setup=_config('{"adapters": "lora", "epochs": Infinity}')),
    Case("rank-above-layer-width", (*GLUE, "--adapters", "lora", "--rank", "512"),
         "rank 512 of adapter 'lora' is larger than min(in, out) = 384 of target module"),
    Case("rank-above-layer-width-pissa", (*GLUE, "--adapters", "pissa", "--rank", "385"),
         "is larger than min(in, out) = 384"),
    # config files: values by their JSON type, one line naming the file and the key
    Case("config-force-string-false", (*GLUE, "--config", "{tmp}/config.json"),
         "key 'force' must be true or false (a JSON boolean), got \"false\"",
         setup=_config('{"adapters": "lora", "force": "false"}')),
    Case("config-force-zero", (*GLUE, "--config", "{tmp}/config.json"), "key 'force' must be true or false",
         setup=_config('{"adapters": "lora", "force": 0}')),
    Case("config-dry-run-string", (*GLUE, "--config", "{tmp}/config.json"), "key 'dry_run' must be true or false",
         setup=_config('{"adapters": "lora", "dry_run": "false"}')),
    Case("config-no-cache-null-string", (*GLUE, "--config", "{tmp}/config.json"), "key 'no-cache' must be true",
         setup=_config('{"adapters": "lora", "no-cache": "yes"}')),
    Case("config-binary", (*GLUE, "--config", "{tmp}/config.json"), "not UTF-8 text",
         setup=lambda t, s: (t / "config.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe" * 50)),
    Case("config-deeply-nested", (*GLUE, "--config", "{tmp}/config.json"), "JSON nested too deeply",
         setup=_config("[" * 200000 + "]" * 200000)),
    Case("config-deeply-nested-value", (*GLUE, "--config", "{tmp}/config.json"), "JSON nested too deeply",
         setup=_config('{"opt": ' + "{\"a\": " * 100000 + "1" + "}" * 100000 + "}")),
    Case("config-a-folder", (*GLUE, "--config", "{tmp}"), "cannot read config file"),
    Case("config-rank-float", (*GLUE, "--config", "{tmp}/config.json"), "key 'rank' must be an integer, got 2.5",
         setup=_config('{"adapters": "lora", "rank": 2.5}')),
    Case("config-workers-bool", (*GLUE, "--config", "{tmp}/config.json"), "key 'workers' must be an integer",
         setup=_config('{"adapters": "lora", "workers": true}')),
    Case("config-lr-bool", (*GLUE, "--config", "{tmp}/config.json"), "key 'lr' must be a number, got true",
         setup=_config('{"adapters": "lora", "lr": true}')),
    Case("config-batch-size-float", (*GLUE, "--config", "{tmp}/config.json"), "key 'batch_size' must be an integer",
         setup=_config('{"adapters": "lora", "batch_size": 8.5}')),
    Case("config-adapters-number", (*GLUE, "--config", "{tmp}/config.json"), "key 'adapters' must be a comma-list",
         setup=_config('{"adapters": 5}')),
    Case("config-seeds-mixed", (*GLUE, "--config", "{tmp}/config.json"), "key 'seeds' must be a non-empty list",
         setup=_config('{"adapters": "lora", "seeds": [1, "x"]}')),
    Case("config-model-object", (*GLUE, "--config", "{tmp}/config.json"), "key 'model' must be a string",
         setup=_config('{"adapters": "lora", "model": {"name": "x"}}')),
    Case("config-opt-nested", (*GLUE, "--config", "{tmp}/config.json"), "key 'opt' must be an object of KEY: scalar",
         setup=_config('{"adapters": "lora", "opt": {"split": [1, 2]}}')),
    Case("config-suite-opt-number", (*GLUE, "--config", "{tmp}/config.json"), "key 'suite_opt' must be a list",
         setup=_config('{"adapters": "lora", "suite_opt": 3}')),
    # --device and --model folders that are not models
    Case("device-gpu", (*GLUE, "--adapters", "lora", "--device", "gpu"),
         "--device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
    Case("device-cuda-word", (*GLUE, "--adapters", "lora", "--device", "cuda:first"), "--device must be auto, cpu"),
    Case("device-empty", (*GLUE, "--adapters", "lora", "--device", ""), "--device must be auto, cpu"),
    Case("device-mps", (*GLUE, "--adapters", "lora", "--device", "mps"), "--device must be auto, cpu, cuda"),
    Case("config-device-gpu", (*GLUE, "--config", "{tmp}/config.json"), "--device must be auto, cpu",
         setup=_config('{"adapters": "lora", "device": "gpu"}')),
    Case("model-empty-folder", (*GLUE, "--adapters", "lora", "--model", "{tmp}/m"),
         "is not a model: it has no config.json", setup=lambda t, s: _model_folder(t)),
    Case("model-folder-without-weights", (*GLUE, "--adapters", "lora", "--model", "{tmp}/m"), "has no weights",
         setup=lambda t, s: _model_folder(t, config='{"model_type": "bert"}', weights=False)),
    Case("model-folder-torn-config", (*GLUE, "--adapters", "lora", "--model", "{tmp}/m"),
         "transformers cannot read its config.json", setup=lambda t, s: _model_folder(t, config='{"model_type": "be')),
    Case("model-folder-unknown-type", (*GLUE, "--adapters", "lora", "--model", "{tmp}/m"),
         "transformers cannot read its config.json", setup=lambda t, s: _model_folder(t, config='{"hello": 1}')),
    Case("model-folder-binary-config", (*GLUE, "--adapters", "lora", "--model", "{tmp}/m"),
         "transformers cannot read its config.json", setup=lambda t, s: _model_folder(t, config=b"\xff\xfe\x00bin")),
    Case("model-folder-is-the-data", (*GLUE, "--adapters", "lora", "--model", "{data}/glue"), "is not a model"),
    # malformed data files, through the CLI (tests/test_data_validation.py has the class, file by file)
    Case("data-sst2-label-2", ("run", "--suite", "glue", "--tasks", "sst2", "--adapters", "lora", "--data-dir",
                               "{tmp}/data", "--results-dir", "{tmp}/results"),
         "SST-2/dev.tsv, line 3: label '2' is not one of 0, 1", setup=lambda t, s: _broken_data(t, s, "sst2")),
    Case("data-stsb-score-abc", ("run", "--suite", "glue", "--tasks", "stsb", "--adapters", "lora", "--data-dir",
                                 "{tmp}/data", "--results-dir", "{tmp}/results"),
         "STS-B/train.tsv, line 4: score 'abc' is not a number", setup=lambda t, s: _broken_data(t, s, "stsb")),
    Case("data-alpaca-torn", ("run", "--suite", "instructeval", "--adapters", "lora", "--data-dir", "{tmp}/data",
                              "--results-dir", "{tmp}/results"),
         "seed_tasks.jsonl, line 2: not JSON", setup=lambda t, s: _broken_data(t, s, "alpaca")),
]
SUBPROCESS_CASES = ("hub-offline", "data-wrong-header", "data-sst2-label-2")


def _broken_data(tmp: Path, shared: Path, which: str) -> None:
    """A data root linking the real data, with one file copied and broken."""
    root = tmp / "data"
    root.mkdir()
    for entry in shared.iterdir():
        if entry.name not in ("glue", "alpaca"):
            (root / entry.name).symlink_to(entry)
    if which == "alpaca":
        (root / "glue").symlink_to(shared / "glue")
        (root / "alpaca").mkdir()
        lines = (shared / "alpaca" / "seed_tasks.jsonl").read_text(encoding="utf-8").splitlines()
        lines[1] = lines[1][:40]
        (root / "alpaca" / "seed_tasks.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return
    (root / "alpaca").symlink_to(shared / "alpaca")
    folder, name, line, column, value = {"sst2": ("SST-2", "dev.tsv", 3, 1, "2"),
                                         "stsb": ("STS-B", "train.tsv", 4, 9, "abc")}[which]
    shutil.copytree(shared / "glue" / folder, root / "glue" / folder)
    path = root / "glue" / folder / name
    rows = path.read_text(encoding="utf-8").splitlines()
    fields = rows[line - 1].split("\t")
    fields[column] = value
    rows[line - 1] = "\t".join(fields)
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def _model_folder(tmp: Path, config: str | bytes | None = None, weights: bool = True) -> None:
    folder = tmp / "m"
    folder.mkdir()
    if config is None:
        (folder / "notes.txt").write_text("not a model")
        return
    (folder / "config.json").write_bytes(config.encode() if isinstance(config, str) else config)
    if weights:
        (folder / "model.safetensors").write_bytes(b"\0" * 16)


def _argv(case: Case, tmp: Path, shared: Path) -> list[str]:
    if case.setup is not None:
        case.setup(tmp, shared)
    return [a.replace("{tmp}", str(tmp)).replace("{data}", str(shared)) for a in case.argv]


@pytest.fixture
def no_model_loads(monkeypatch: pytest.MonkeyPatch):
    """Any model load or run start fails the test (an AssertionError is not a HarnessError, so the CLI
    does not turn it into exit code 2)."""
    import transformers

    from harness.pipeline import runner
    from harness.registry import SUITES

    def forbidden(*args, **kwargs):
        raise AssertionError("a model was loaded (or a run started) before the bad input was reported")

    monkeypatch.setattr(transformers.PreTrainedModel, "from_pretrained", classmethod(forbidden))
    for name in SUITES.names():
        monkeypatch.setattr(SUITES.get(name), "load_model", forbidden)
    monkeypatch.setattr(runner, "execute_run", forbidden)
    for var in JUDGE_ENV:
        monkeypatch.delenv(var, raising=False)


def test_the_table_is_big_enough():
    assert len(CASES) >= 20 and len({c.id for c in CASES}) == len(CASES)
    assert set(SUBPROCESS_CASES) <= {c.id for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_exit_2_and_no_model_load(case: Case, tmp_path: Path, shared_data: Path,
                                                           no_model_loads, monkeypatch, capsys):
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    code = main(_argv(case, tmp_path, shared_data))
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert len(errors) == 1, err
    assert case.message in errors[0], errors[0]
    assert "Traceback" not in err
    assert not (tmp_path / "results").exists()  # nothing was written


def test_the_guard_catches_a_model_load(tmp_path: Path, shared_data: Path, no_model_loads, monkeypatch):
    """The same command with good input reaches the first run, which the guard stops: so a case above
    that passed the planning checks would fail its test instead of exiting 2."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AssertionError, match="a model was loaded"):
        main([a.replace("{tmp}", str(tmp_path)).replace("{data}", str(shared_data)) for a in GLUE]
             + ["--adapters", "lora", "--no-progress"])


GUARD = """
import os, sys
import transformers
from harness.registry import SUITES
def forbidden(*a, **k):
    print("MODEL LOADED", file=sys.stderr); os._exit(99)
transformers.PreTrainedModel.from_pretrained = classmethod(forbidden)
for name in SUITES.names():
    SUITES.get(name).load_model = forbidden
from harness.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("case_id", SUBPROCESS_CASES)
def test_bad_input_through_a_real_process(case_id: str, tmp_path: Path, shared_data: Path):
    case = next(c for c in CASES if c.id == case_id)
    env = {k: v for k, v in os.environ.items() if k not in JUDGE_ENV}
    env.update(case.env)
    done = subprocess.run([sys.executable, "-c", GUARD, *_argv(case, tmp_path, shared_data)], env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if not line.startswith("preset: ")]  # the info line
    assert len(lines) == 1 and lines[0].startswith("error: ") and case.message in lines[0], done.stderr


def test_report_and_app_skip_corrupt_records_with_a_warning(tmp_path: Path, capsys):
    from harness.records.store import ResultStore

    ResultStore(tmp_path).write(make_record(seed=1))
    (tmp_path / "glue" / "rte" / "torn.json").write_text('{"schema_version": 1, "run_id": "glue/rte/lo')
    (tmp_path / "glue" / "rte" / "foreign.json").write_text(json.dumps({"hello": 1}))
    (tmp_path / "glue" / "rte" / "bad-status.json").write_text(json.dumps(make_record(seed=2, status="weird")))
    assert main(["report", "--results-dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    warnings = sorted(line for line in captured.err.splitlines() if line.startswith("warning: skipped"))
    assert len(warnings) == 3
    assert "bad-status.json: status 'weird'" in warnings[0]
    assert "foreign.json: missing 'schema_version'" in warnings[1]
    assert "torn.json: unreadable JSON" in warnings[2]
    assert "LoRA" in captured.out  # the valid record is still on the leaderboard (its display name)

    from app.leaderboard import load_store

    records, skipped = load_store(str(tmp_path))
    assert len(records) == 1 and sorted(Path(p).name for p, _ in skipped) == ["bad-status.json", "foreign.json", "torn.json"]


# ---- non-finite numbers, as a class: every float option of every adapter, TrainConfig and suite ----------
NON_FINITE = ("nan", "inf", "-inf", "Infinity", float("nan"), float("inf"))


def _float_fields(cls: type) -> list[str]:
    import typing

    from harness.config import _strip_optional, field_types

    out = []
    for name, tp in field_types(cls).items():
        inner, _ = _strip_optional(tp)
        if inner is float or (typing.get_origin(inner) is tuple and float in typing.get_args(inner)):
            out.append(name)
    return out


def test_every_float_option_of_every_adapter_rejects_non_finite_values():
    from harness.errors import HarnessError
    from harness.pipeline.attach import build_adapter
    from harness.registry import ADAPTERS

    tried = 0
    for adapter in ADAPTERS.names():
        for name in _float_fields(ADAPTERS.get(adapter).config_cls):
            for value in NON_FINITE:
                with pytest.raises(HarnessError, match=f"option '{name}' must be a finite number"):
                    build_adapter(adapter, {name: value})
                tried += 1
    assert tried >= 15 * len(NON_FINITE)  # alpha and dropout of the low-rank family at least


def test_every_float_field_of_train_config_rejects_non_finite_values():
    from harness.config import build
    from harness.errors import HarnessError
    from harness.spec import TrainConfig

    names = _float_fields(TrainConfig)
    assert {"epochs", "lr", "head_lr", "warmup_ratio", "weight_decay", "grad_clip"} <= set(names)
    for name in names:
        for value in NON_FINITE:
            with pytest.raises(HarnessError, match="finite number"):
                build(TrainConfig, {name: value}, "training")
            if isinstance(value, float):  # built directly (a suite's preset), not through coerce
                with pytest.raises(HarnessError, match=f"{name} must be a finite number"):
                    TrainConfig(**{name: value})


def test_direct_low_rank_config_rejects_non_finite_alpha():
    from harness.adapter import LowRankConfig
    from harness.errors import HarnessError

    for value in (float("nan"), float("inf")):
        with pytest.raises(HarnessError, match="alpha must be a finite positive number"):
            LowRankConfig(alpha=value)
    with pytest.raises(HarnessError, match="dropout must be in"):
        LowRankConfig(dropout=float("nan"))


def _suite_option_types() -> dict[str, dict[str, type]]:
    """Each suite's options and their types, from the dataclass that parses them."""
    from harness.config import _strip_optional, field_types
    from suites._shared.instruct import InstructionTuningSuite
    from suites.coco_retrieval import CocoOptions
    from suites.instructeval.suite import EvalOptions
    from suites.mt_bench.options import MTBenchOptions
    from suites.rscd import RscdOptions
    from suites.toy import ToyOptions

    strings = {n: str for n in InstructionTuningSuite().option_names()}  # alpaca_path, alpaca_dataset, load_in_4bit

    def typed(cls: type) -> dict[str, type]:
        return {n: _strip_optional(tp)[0] for n, tp in field_types(cls).items()}

    return {"glue": {}, "coco-retrieval": typed(CocoOptions), "rscd": typed(RscdOptions),
            "instructeval": {**strings, **typed(EvalOptions)}, "mt-bench": {**strings, **typed(MTBenchOptions)},
            "toy": typed(ToyOptions)}


def test_every_numeric_suite_option_rejects_non_finite_values_at_preflight():
    """Over the registry: a suite (or an option) the table does not know fails this test, so a new
    numeric option cannot slip past the finite check."""
    from harness.errors import HarnessError
    from harness.registry import SUITES

    table = _suite_option_types()
    assert sorted(table) == sorted(SUITES.names())
    tried = 0
    for suite_name in SUITES.names():
        suite = SUITES.get(suite_name)()
        assert set(suite.option_names()) == set(table[suite_name]), suite_name
        for option, tp in table[suite_name].items():
            if tp not in (int, float):
                continue
            for value in ("nan", "inf", "-inf"):
                with pytest.raises(HarnessError, match=f"option '{option}' must be"):
                    suite.preflight({option: value}, "cpu", suite.default_model("cpu"))
                tried += 1
    assert tried >= 3 * 9  # margin, train_fraction, sample_seed, humaneval_max_tokens, sandbox_timeout, judge_*


def test_config_file_values_reach_the_run_with_their_types(tmp_path: Path, shared_data: Path, capsys):
    """The good side of the typed config: JSON booleans switch, numbers and lists become the flags'
    text, an --opt object becomes KEY=VALUE items, null leaves a key unset, the command line wins."""
    import argparse

    from harness.cli.config_file import _load_config_file
    from harness.cli.parser import build_parser

    config = tmp_path / "c.json"
    config.write_text(json.dumps({"dry_run": True, "force": False, "adapters": ["lora", "dora"], "seeds": [1, 2],
                                  "rank": 4, "lr": 1e-4, "epochs": 2, "opt": {"dropout": 0.1, "use_rslora": True},
                                  "suite-opt": ["a=b"], "max_steps": None, "model": "minilm-l6"}))
    parser = build_parser()
    args = parser.parse_args(["run", "--suite", "glue", "--rank", "8"])
    _load_config_file(str(config), parser, args)
    assert isinstance(args, argparse.Namespace)
    assert args.dry_run is True and args.force is False
    assert (args.adapters, args.seeds, args.rank, args.lr, args.epochs) == ("lora,dora", "1,2", "8", "0.0001", "2")
    assert args.opt == ["dropout=0.1", "use_rslora=true"] and args.suite_opt == ["a=b"] and args.max_steps is None
    # end to end: a dry run from the file, exit 0
    config.write_text(json.dumps({"dry_run": True, "adapters": ["lora"], "tasks": ["rte"], "seeds": [1],
                                  "data_dir": str(shared_data), "results_dir": str(tmp_path / "r")}))
    assert main(["run", "--suite", "glue", "--config", str(config)]) == 0
    assert "1 runs planned" in capsys.readouterr().out


def test_device_cuda_is_checked_against_the_devices_there_are(monkeypatch, capsys):
    import torch

    from harness.cli.run import check_device
    from harness.errors import HarnessError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for text in ("cuda", "cuda:0"):
        with pytest.raises(HarnessError, match="no CUDA device is available"):
            check_device(text)
    check_device("cpu")
    check_device("auto")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    check_device("cuda")
    check_device("cuda:1")
    with pytest.raises(HarnessError, match=r"--device cuda:2: there are 2 CUDA device\(s\) \(cuda:0 .. cuda:1\)"):
        check_device("cuda:2")


# ---- `harness analyze` on corrupt adapter files and records: one line, exit 2 ----------------------------


def _torn(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _retensor(path: Path, change: str) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    name = next(iter(state))
    if change == "shape":
        state[name] = torch.zeros(3, 5)
    else:
        state["nowhere.weight"] = torch.zeros(2)
    save_file(state, str(path))


def _respec(path: Path, **changes) -> None:
    record = json.loads(path.read_text())
    for key, value in changes.items():
        if value is ...:
            record["spec"].pop(key)
        else:
            record["spec"][key] = value
    path.write_text(json.dumps(record))


ADAPTER_FILE, RECORD = "a.adapter.safetensors", "a.json"
ANALYZE_CASES = {
    "adapter-random-bytes": (ADAPTER_FILE, lambda p: p.write_bytes(os.urandom(4096)), "cannot read adapter file"),
    "adapter-empty": (ADAPTER_FILE, lambda p: p.write_bytes(b""), "cannot read adapter file"),
    "adapter-truncated": (ADAPTER_FILE, _torn, "cannot read adapter file"),
    "adapter-text": (ADAPTER_FILE, lambda p: p.write_text('{"not": "tensors"}'), "cannot read adapter file"),
    "adapter-wrong-shape": (ADAPTER_FILE, lambda p: _retensor(p, "shape"), "has shape (3, 5), the run's model needs"),
    "adapter-foreign-tensor": (ADAPTER_FILE, lambda p: _retensor(p, "name"), "tensors this model lacks"),
    "record-torn": (RECORD, _torn, "cannot read run record"),
    "record-binary": (RECORD, lambda p: p.write_bytes(b"\xff\xfe\x00\x01" * 100), "not UTF-8 JSON"),
    "record-deeply-nested": (RECORD, lambda p: p.write_text("[" * 100000 + "]" * 100000), "nested too deeply"),
    "record-a-list": (RECORD, lambda p: p.write_text("[1, 2]"), "is not a run record (no 'spec')"),
    "record-suite-a-list": (RECORD, lambda p: _respec(p, suite=["glue"]), "spec.suite must be a name"),
    "record-no-model": (RECORD, lambda p: _respec(p, model=...), "spec.model must be a name"),
    "record-adapter-null": (RECORD, lambda p: _respec(p, adapter=None), "spec.adapter must be a name"),
    "record-options-a-list": (RECORD, lambda p: _respec(p, adapter_options=[1]), "adapter_options must be an object"),
    "record-options-bad-rank": (RECORD, lambda p: _respec(p, adapter_options={"rank": "x"}), "option 'rank' must be int"),
    "record-unknown-suite": (RECORD, lambda p: _respec(p, suite="glu"), "unknown suite 'glu'"),
    "record-unknown-adapter": (RECORD, lambda p: _respec(p, adapter="lroa"), "unknown adapter 'lroa'"),
}


@pytest.mark.parametrize("case_id", sorted(ANALYZE_CASES))
def test_analyze_on_a_corrupt_adapter_file_or_record_is_one_line(case_id: str, tmp_path: Path, capsys):
    from test_analysis import write_run

    which, corrupt, message = ANALYZE_CASES[case_id]
    first = write_run(tmp_path, "a", "lora", {"rank": 2}, seed=1)
    other = write_run(tmp_path, "b", "lora", {"rank": 2}, seed=2)
    assert main(["analyze", str(first), str(other), "--max-rank", "2", "--json"]) == 0  # the good pair works
    capsys.readouterr()
    corrupt(tmp_path / which)
    code = main(["analyze", str(first), str(other), "--max-rank", "2"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
