"""The faster paths compute what the plain ones do: merged evaluation, worker layouts, precision and
compile flags (recorded, hash-neutral at their defaults), --opt scoping, the loss log without host
syncs, and the run command's help text.

The runs train the toy suite (suites/toy.py, a 4-8-2 MLP on 32 random points); they take about a
second each.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch

from harness.errors import HarnessError
from harness.registry import ADAPTERS
from harness.spec import RunSpec, TrainConfig
from tests.adapter_testkit import randomise
from tests.tiny_models import tiny_bert, token_batch


@pytest.fixture(scope="module")
def toy():
    """The runs below train the toy suite (suites/toy.py); afterwards the load cache forgets its models."""
    from harness.pipeline import load as load_cache

    yield
    load_cache.MODEL_CACHE.clear()
    load_cache.DATA_CACHE.clear()


def _specs(adapters: str = "head,full", seeds: tuple[int, ...] = (1, 2), **train: object) -> list[RunSpec]:
    from harness.pipeline.plan import GridRequest, plan_grid

    return plan_grid(GridRequest(suite="toy", adapters=adapters, seeds=seeds, preset="cpu",
                                 train_overrides=dict(train)), cuda_available=False)


def _comparable(record: dict) -> dict:
    """What a run computed (not when or how fast)."""
    return {k: record[k] for k in ("run_id", "status", "metrics", "params", "loss_curve", "analysis")}


# ---------------------------------------------------------------------------------------------------
# merged evaluation
# ---------------------------------------------------------------------------------------------------

def _merging_adapters() -> list[str]:
    from harness.pipeline.evaluation import adapter_merges

    return [name for name in ADAPTERS.names() if adapter_merges(ADAPTERS.get(name)())
            and "encoder" in ADAPTERS.get(name).families]


def _applied(name: str):
    from harness.pipeline.attach import attach

    adapter = ADAPTERS.get(name)()
    model = tiny_bert(layers=4)
    torch.manual_seed(0)
    model = attach(adapter, model, family="encoder", head_modules=("classifier",), total_steps=10)
    randomise([p for p in model.parameters() if p.requires_grad], seed=5, std=0.1)  # a non-zero update
    return adapter, model.eval()


def test_every_merging_adapter_is_tested():
    names = _merging_adapters()
    assert {"lora", "dora", "pissa", "vera", "msplora", "sera"} <= set(names), names


@pytest.mark.parametrize("name", _merging_adapters())
def test_merged_evaluation_gives_the_unmerged_predictions(name: str):
    from harness.pipeline.evaluation import merged_for_eval

    adapter, model = _applied(name)
    ids = token_batch(batch=16, length=9)
    weights_before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with torch.inference_mode():
        plain = model(input_ids=ids).logits
    with merged_for_eval(adapter, model) as merged, torch.inference_mode():
        fused = model(input_ids=ids).logits
    assert merged, f"{name} has merge hooks but was not merged"
    assert torch.equal(plain.argmax(-1), fused.argmax(-1))
    torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-5)
    # afterwards the very same weights (not W + BA - BA): later epochs train from them
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights_before[key]), f"{name}: {key} changed by merge/unmerge"
    with torch.inference_mode():
        assert torch.equal(model(input_ids=ids).logits, plain)


def test_an_adapter_without_merge_hooks_is_evaluated_as_it_is():
    from harness.pipeline.evaluation import adapter_merges, merged_for_eval

    adapter = ADAPTERS.get("full")()
    assert not adapter_merges(adapter)
    with merged_for_eval(adapter, torch.nn.Linear(2, 2)) as merged:
        assert merged is False


def test_a_quantised_or_large_base_is_evaluated_unmerged(monkeypatch):
    from harness.pipeline.evaluation import merged_for_eval

    adapter, model = _applied("lora")
    with merged_for_eval(adapter, model) as merged:
        assert merged
    # a frozen integer weight (a 4-bit/8-bit base stores its weights so): no merge, nothing touched
    model.register_parameter("packed", torch.nn.Parameter(torch.ones(4, dtype=torch.uint8), requires_grad=False))
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with merged_for_eval(adapter, model) as merged:
        assert merged is False
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    # frozen weights above HARNESS_MERGED_EVAL_MAX_MB: the host copy would not pay
    adapter, model = _applied("lora")
    monkeypatch.setenv("HARNESS_MERGED_EVAL_MAX_MB", "0")
    with merged_for_eval(adapter, model) as merged:
        assert merged is False


def test_run_records_merged_evaluation_and_its_timing(toy):
    from harness.pipeline.runner import ExecutionOptions, execute_run

    record = execute_run(_specs("head", (1,))[0], ExecutionOptions(device="cpu", progress=False, cache=False))
    assert record["status"] == "success", record.get("error")
    timing = record["timing"]
    assert timing["eval_merged"] is False  # head-only: nothing to merge
    assert len(timing["eval_seconds_per_epoch"]) == 2  # one evaluation per epoch
    assert math.isclose(sum(timing["eval_seconds_per_epoch"]), timing["eval_seconds"], rel_tol=1e-9)
    # the phases add up to the run's wall time (what no phase names is shown, not hidden)
    assert set(timing["phases"]) >= {"load", "setup", "train", "eval", "analysis", "save_adapter", "environment",
                                     "unaccounted"}
    assert math.isclose(sum(timing["phases"].values()), timing["total_seconds"], rel_tol=1e-9)
    assert timing["phases"]["unaccounted"] < 0.5 * timing["total_seconds"]
    # the process's CPU time over the run: what the estimator reads a shared machine's load from
    assert 0 < timing["cpu_seconds"] <= (os.cpu_count() or 1) * timing["total_seconds"] + 0.1


# ---------------------------------------------------------------------------------------------------
# worker layouts
# ---------------------------------------------------------------------------------------------------

def test_two_workers_write_the_records_of_a_sequential_run(toy, tmp_path: Path):
    from harness.grid.executors import ExecutorConfig, run_with_executor
    from harness.pipeline.runner import ExecutionOptions
    from harness.records.store import ResultStore

    specs = _specs()
    stores = {}
    for layout, workers in (("sequential", 1), ("workers", 2)):
        store = ResultStore(tmp_path / layout)
        options = ExecutionOptions(device="cpu", progress=False, threads=1)
        outcome = run_with_executor(ExecutorConfig(workers=workers), specs, store, options, echo=lambda _: None)
        assert outcome.by_status == {"success": 8}, outcome.totals_line()
        stores[layout] = {r["run_id"]: _comparable(r) for r in store.load().records}
    assert len(stores["sequential"]) == 8
    assert stores["workers"] == stores["sequential"]


def test_workers_auto_rule(monkeypatch: pytest.MonkeyPatch):
    from harness.grid import executors
    from harness.pipeline.runner import ExecutionOptions

    cpu = ExecutionOptions(device="cpu")
    monkeypatch.setattr(executors, "_cores", lambda: 2)
    monkeypatch.setattr(executors, "_available_ram_bytes", lambda: 64 * 2**30)
    assert executors.auto_worker_count(1, cpu)[0] == 1  # one run: nothing to parallelise
    assert executors.auto_worker_count(10, cpu)[0] == 2  # one single-threaded worker per core
    assert executors.auto_worker_count(10, dataclasses.replace(cpu, threads=2))[0] == 1
    monkeypatch.setattr(executors, "_available_ram_bytes", lambda: executors.WORKER_RAM_BYTES + 1)
    workers, why = executors.auto_worker_count(10, cpu)
    assert workers == 1 and "memory" in why


def test_workers_auto_on_the_command_line(toy, tmp_path: Path, capsys: pytest.CaptureFixture):
    from harness.cli.main import main

    assert main(["run", "--suite", "toy", "--tasks", "sign", "--adapters", "head", "--seeds", "1", "--device", "cpu",
                 "--workers", "auto", "--results-dir", str(tmp_path), "--dry-run"]) == 0
    assert "--workers auto: 1 (one run to do)" in capsys.readouterr().err
    assert main(["run", "--suite", "toy", "--workers", "two", "--dry-run"]) == 2
    assert "--workers must be a positive integer" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------
# precision and compile
# ---------------------------------------------------------------------------------------------------

def test_new_train_fields_leave_existing_hashes_alone():
    spec = RunSpec("glue", "rte", "lora", "minilm-l6", "cpu", 42, {"rank": 8}, TrainConfig())
    identity = spec.identity()["train"]
    assert "precision" not in identity and "compile" not in identity
    shipped = sorted((Path(__file__).resolve().parents[1] / "results" / "glue").rglob("*.json"))
    assert shipped, "the shipped records are expected under results/glue"
    for path in shipped[:20]:
        record = json.loads(path.read_text())
        assert RunSpec.from_dict(record["spec"]).config_hash == record["key"]["config_hash"], path
    bf16 = dataclasses.replace(spec, train=dataclasses.replace(spec.train, precision="bf16"))
    compiled = dataclasses.replace(spec, train=dataclasses.replace(spec.train, compile=True))
    assert len({spec.config_hash, bf16.config_hash, compiled.config_hash}) == 3


def test_precision_is_validated():
    with pytest.raises(HarnessError, match="precision must be fp32 or bf16"):
        TrainConfig(precision="fp16")


def test_precision_and_compile_are_recorded(toy, monkeypatch: pytest.MonkeyPatch):
    from harness.pipeline.runner import ExecutionOptions, execute_run

    monkeypatch.setenv("HARNESS_COMPILE_BACKEND", "eager")  # the compile path without a C++ toolchain
    options = ExecutionOptions(device="cpu", progress=False, cache=False)
    plain = execute_run(_specs("full", (1,))[0], options)
    bf16 = execute_run(_specs("full", (1,), precision="bf16")[0], options)
    compiled = execute_run(_specs("full", (1,), compile=True)[0], options)
    for record in (plain, bf16, compiled):
        assert record["status"] == "success", record.get("error")
    assert plain["precision"] == {"requested": "fp32", "used": "fp32", "autocast": False, "compile": {"enabled": False}}
    assert bf16["precision"]["used"] == "bf16" and bf16["precision"]["autocast"] is True
    assert bf16["spec"]["train"]["precision"] == "bf16"
    info = compiled["precision"]["compile"]
    assert {k: info[k] for k in ("enabled", "backend", "pad_multiple")} == {"enabled": True, "backend": "eager",
                                                                             "pad_multiple": 32}
    assert info["graphs"] >= 1 and info["compile_seconds"] >= 0  # dynamo's counters, this run's part
    assert compiled["spec"]["train"]["compile"] is True
    # the eager backend computes what the plain module does
    assert compiled["loss_curve"] == plain["loss_curve"]
    assert compiled["metrics"]["score"] == plain["metrics"]["score"]


def test_precision_auto_resolves_to_fp32_without_a_gpu():
    from harness.cli.run import _resolve_precision
    from harness.pipeline.evaluation import resolve_precision

    assert _resolve_precision("auto", "auto", cuda=False) == "fp32"
    assert _resolve_precision("bf16", "cpu", cuda=False) == "bf16"
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    with pytest.raises(HarnessError):
        resolve_precision("fp8", torch.device("cpu"))


# ---------------------------------------------------------------------------------------------------
# the loop: losses without a host sync per step
# ---------------------------------------------------------------------------------------------------

def test_loss_log_on_a_device_reads_in_blocks_and_names_the_first_bad_step(monkeypatch: pytest.MonkeyPatch):
    from harness.pipeline import loss_log

    monkeypatch.setattr(loss_log, "LOSS_SYNC_STEPS", 4)
    log = loss_log.LossLog(on_device=True)
    for step in range(3):
        log.append(torch.tensor(1.0 + step), step)
    assert log.values == []  # nothing read back yet
    log.append(torch.tensor(4.0), 3)
    assert log.values == [1.0, 2.0, 3.0, 4.0]
    log.append(torch.tensor(5.0), 4)
    log.append(torch.tensor(float("nan")), 5)
    with pytest.raises(loss_log.DivergedError) as caught:
        log.flush()
    assert caught.value.step == 5


def test_cpu_step_timer_and_cuda_memory_are_separate():
    from harness.pipeline.measure import CudaStepMemory, StepTimer

    timer = StepTimer(torch.device("cpu"))
    for _ in range(3):
        timer.begin()
        timer.end()
    assert len(timer.step_seconds) == 3 and timer.mean_step_seconds is not None
    memory = CudaStepMemory(torch.device("cpu"))
    assert memory.baseline() is None and memory.report() == {}  # CPU runs keep only the labelled estimate


def test_gpu_check_fails_clearly_without_cuda():
    import subprocess

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: bench/gpu_check.sh would run for real")
    script = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.sh"
    import os

    # the script calls `python`: this interpreter's, as in an activated environment
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode != 0
    assert "needs a CUDA device" in done.stderr


# ---------------------------------------------------------------------------------------------------
# --opt scoping
# ---------------------------------------------------------------------------------------------------

def _glue(adapters: list[str], opts: dict[str, str]) -> dict[str, dict]:
    from harness.pipeline.plan import GridRequest, plan_grid

    specs = plan_grid(GridRequest(suite="glue", adapters=adapters, tasks="rte", seeds=(1,), preset="cpu",
                                  adapter_options=opts), cuda_available=False)
    return {s.adapter: s.adapter_options for s in specs}


def test_opt_goes_to_the_adapters_that_have_it():
    options = _glue(["lora", "sera"], {"split": "8"})
    assert "split" not in options["lora"] and options["sera"]["split"] == 8
    assert options["lora"] == _glue(["lora"], {})["lora"]


def test_opt_scoped_to_one_adapter():
    options = _glue(["sera", "melora"], {"sera.split": "4", "split": "2"})
    assert options["sera"]["split"] == 4 and options["melora"]["split"] == 2


@pytest.mark.parametrize(("adapters", "opts", "message"), [
    (["lora", "sera"], {"splitt": "8"}, "unknown option 'splitt' for the selected adapters (lora, sera): none of them "
                                        "has it; did you mean 'split'?"),
    (["lora"], {"split": "8"}, "unknown option 'split' for the selected adapters (lora): none of them has it. "
                               "Their options: alpha, dropout, rank, targets"),
    (["lora", "sera"], {"lora.split": "8"}, "unknown option 'split' for adapter 'lora'. Valid options: alpha, "
                                            "dropout, rank, targets"),
    (["lora"], {"sera.split": "8"}, "adapter 'sera' is not in this grid"),
    (["lora"], {"loar.rank": "8"}, "no adapter 'loar'; did you mean 'lora'?"),
])
def test_opt_errors_name_the_option(adapters: list[str], opts: dict[str, str], message: str):
    with pytest.raises(HarnessError) as caught:
        _glue(adapters, opts)
    assert message in str(caught.value)


# ---------------------------------------------------------------------------------------------------
# help text
# ---------------------------------------------------------------------------------------------------

def _run_parser():
    from harness.cli.parser import build_parser

    parser = build_parser()
    return parser._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]


def test_every_run_flag_has_help_and_the_help_is_grouped():
    run = _run_parser()
    for action in run._actions:
        assert action.help and action.help.strip(), f"{action.option_strings} has no help"
    titles = [g.title for g in run._action_groups]
    for title in ("what to run", "model and adapter", "grid and executors", "output"):
        assert title in titles
    assert any(t and t.startswith("training") for t in titles)
    text = run.format_help()
    assert text.count("python -m harness run") >= 2  # two examples
    assert "one of: coco-retrieval, glue, instructeval, mt-bench, rscd, toy" in " ".join(text.split())
    limit = next(a for a in run._actions if "--limit" in a.option_strings)
    assert "per task" in limit.help and "lm-eval" in limit.help


def test_ls_adapters_and_presets_show_options_and_budgets(capsys: pytest.CaptureFixture):
    from harness.cli.main import main

    assert main(["ls", "adapters"]) == 0
    out = capsys.readouterr().out
    assert "options: rank=8 alpha=None targets=query,value dropout=0.0" in out
    assert "options: rank=8 alpha=None targets=query,value dropout=0.0 split=None" in out  # sera
    assert main(["ls", "presets"]) == 0
    out = capsys.readouterr().out
    assert "glue: model minilm-l6" in out
    assert "epochs=3 batch=32x1 lr=0.001 max_length=128 train=2000 eval=1000" in out
