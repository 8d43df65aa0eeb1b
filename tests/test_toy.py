"""The toy suite (suites/toy.py), the template for new suites: listed as an example, deterministic, its
option and the sample caps reach the data (and the config hash), and what cannot run on its MLP is
refused at plan time."""

from __future__ import annotations

import pytest

from harness.errors import HarnessError
from harness.pipeline.plan import GridRequest, check_against_shapes, plan_grid
from harness.pipeline.runner import ExecutionOptions, execute_run
from suites.toy import MODEL


def _specs(adapters: str = "full", **suite_options: object):
    return plan_grid(GridRequest(suite="toy", adapters=adapters, tasks="xor", seeds=(3,), preset="cpu",
                                 suite_options=dict(suite_options)), cuda_available=False)


def test_ls_suites_marks_the_toy_suite_as_an_example(capsys: pytest.CaptureFixture):
    from harness.cli.main import main

    assert main(["ls", "suites"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert "[example]" in lines["toy"] and "[tasks: sign, xor]" in lines["toy"]
    assert not any("[example]" in line for name, line in lines.items() if name != "toy")


def test_toy_runs_are_deterministic_and_its_option_and_caps_reach_the_data():
    options = ExecutionOptions(device="cpu", progress=False, cache=False)
    spec = _specs()[0]
    first, again = execute_run(spec, options), execute_run(spec, options)
    assert first["status"] == "success", first.get("error")
    assert first["loss_curve"] == again["loss_curve"] and first["metrics"]["score"] == again["metrics"]["score"]
    # a quarter of the 32 points is the validation split: 24 trained, 2 epochs of 6 batches
    assert first["data_info"]["train_examples"] == 24 and first["data_info"]["validation_examples"] == 8
    assert first["timing"]["steps"] == 12
    assert 0.0 <= first["metrics"]["score"] <= 1.0 and first["metrics"]["unit"] == "fraction"

    small = _specs(points="8")[0]
    assert small.suite_options == {"points": "8"} and small.config_hash != spec.config_hash
    record = execute_run(small, options)
    assert record["status"] == "success", record.get("error")
    assert record["data_info"]["train_examples"] == 6 and record["timing"]["steps"] == 4  # 8 points, 2 held out

    capped = plan_grid(GridRequest(suite="toy", adapters="full", tasks="xor", seeds=(3,), preset="cpu",
                                   train_overrides={"max_train_samples": 12, "max_eval_samples": 5}),
                       cuda_available=False)[0]
    record = execute_run(capped, options)
    assert record["data_info"]["train_examples"] == 12 and record["data_info"]["eval_examples"] == 5
    assert record["timing"]["steps"] == 6  # 2 epochs of 3 batches


def test_low_rank_adapters_attach_to_the_mlp_by_module_name():
    # the toy MLP has no transformer blocks: its hidden linear layer ("body", 4 -> 8) is the site
    specs = _specs("lora,sera,vera,dora")
    check_against_shapes(specs)
    lora = specs[0]
    assert lora.adapter_options["targets"] == ["body"] and lora.adapter_options["rank"] == 4
    record = execute_run(lora, ExecutionOptions(device="cpu", progress=False, cache=False))
    assert record["status"] == "success", record.get("error")
    assert record["params"]["adapter_trainable"] == 4 * 4 + 4 * 8  # A (4 x 4) and B (8 x 4) of body only
    with pytest.raises(HarnessError, match="target module.s. query not found among the model's linear modules "
                                           "outside its head; linear modules there: body"):
        check_against_shapes(plan_grid(GridRequest(suite="toy", adapters="lora", tasks="xor", seeds=(3,),
                                                   preset="cpu", targets="query"), cuda_available=False))


def test_what_cannot_run_on_the_toy_is_refused_at_plan_time():
    check_against_shapes(_specs("head,full"))  # the adapters without targets build on its skeleton
    with pytest.raises(HarnessError, match="groups=3 is more than the 1 layers of the model"):
        check_against_shapes(_specs("msplora"))  # one linear layer: no middle level to group
    with pytest.raises(HarnessError, match=f"--model must be {MODEL}"):
        plan_grid(GridRequest(suite="toy", adapters="full", model="minilm-l6", preset="cpu"), cuda_available=False)
    with pytest.raises(HarnessError, match="points must be at least 1"):
        from harness.registry import SUITES

        SUITES.get("toy")().preflight({"points": "0"}, "cpu", MODEL)


def test_the_plan_hands_the_run_its_annotations_and_the_run_never_re_plans(monkeypatch: pytest.MonkeyPatch):
    from dataclasses import replace

    from harness.pipeline import plan

    spec = _specs("lora")[0]
    assert spec.annotations is not None and spec.annotations == plan.preset_annotations(replace(spec, annotations=None))
    assert "annotations" not in spec.to_dict() and spec.config_hash == replace(spec, annotations=None).config_hash

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a planned run re-planned its preset")

    monkeypatch.setattr(plan, "preset_annotations", refuse)
    monkeypatch.setattr(plan, "adapter_options_for", refuse)
    record = execute_run(spec, ExecutionOptions(device="cpu", progress=False, cache=False))
    assert record["status"] == "success", record.get("error")
    assert record["preset_defaults"] == spec.annotations["preset_defaults"] and record["caps"] == spec.annotations["caps"]
