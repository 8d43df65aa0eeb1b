"""MT-Bench answers and the mt-bench suite: questions, per-category temperatures, two-turn prompts,
FastChat answer files, and the suite end to end (tiny model, fake judge on loopback): answers written
before judging, cached judgments, an unreachable judge failing early or keeping the answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.registry import SUITES
from harness.spec import TrainConfig
from harness.suite import DataSource, LoadedModel, RunContext, TaskData
from suites._shared.alpaca import format_prompt
from suites._shared.instruct import smollm2_dir
from suites.mt_bench.answers import (
    QUESTION_FILE,
    GenerationSettings,
    Question,
    answer_record,
    conversation_prompt,
    generate_answers,
    load_questions,
    read_answers,
    sampling_kwargs,
    select_questions,
    temperature_for,
    write_answers,
)
from suites.mt_bench.judges import HFJudge, JudgeUnreachableError, OpenAIJudge
from suites.mt_bench.judging import JudgmentCache
from suites.mt_bench.options import MTBenchOptions, make_judge, resolve_judge_options
from tests.test_mtbench_judge import FakeJudgeServer, dead_url

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MTBENCH = DATA / "mtbench"


@pytest.fixture(scope="module")
def questions():
    return {q.question_id: q for q in load_questions(MTBENCH / QUESTION_FILE)}


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir())  # SmolLM2's real tokenizer and chat template


@pytest.fixture(scope="module")
def tiny_lm(tokenizer):
    """A randomly initialised 1-layer Llama with SmolLM2's vocabulary."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                         tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(config).eval()


# ---------------------------------------------------------------------------------------------------
# questions and temperatures
# ---------------------------------------------------------------------------------------------------


def test_real_questions(questions):
    assert len(questions) == 80
    assert all(len(q.turns) == 2 for q in questions.values())
    categories = {q.category for q in questions.values()}
    assert categories == {"writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities"}


def test_limit_takes_questions_round_robin_over_categories(questions):
    ordered = sorted(questions.values(), key=lambda q: q.question_id)
    eight = select_questions(ordered, 8)
    assert [q.question_id for q in eight] == [81, 91, 101, 111, 121, 131, 141, 151]
    assert len({q.category for q in eight}) == 8
    assert [q.question_id for q in select_questions(ordered, 10)] == [81, 82, 91, 92, 101, 111, 121, 131, 141, 151]
    assert len(select_questions(ordered, None)) == 80


@pytest.mark.parametrize(
    ("category", "temperature"),
    [("writing", 0.7), ("roleplay", 0.7), ("extraction", 0.0), ("math", 0.0), ("coding", 0.0), ("reasoning", 0.0),
     ("stem", 0.1), ("humanities", 0.1), ("unlisted", 0.7)],
)
def test_fastchat_temperature_per_category(category, temperature):
    assert temperature_for(Question(1, category, ("q",))) == temperature


def test_required_temperature_overrides_the_category():
    assert temperature_for(Question(1, "writing", ("q",), required_temperature=0.2)) == 0.2


def test_sampling_is_greedy_below_1e_4():
    assert sampling_kwargs(0.0)["do_sample"] is False
    assert sampling_kwargs(0.00009)["do_sample"] is False
    assert sampling_kwargs(0.1) == {"do_sample": True, "temperature": 0.1, "top_p": 1.0, "top_k": 0}


# ---------------------------------------------------------------------------------------------------
# prompts and generation
# ---------------------------------------------------------------------------------------------------


def test_alpaca_turn_one_is_the_training_prompt(tokenizer):
    assert conversation_prompt(tokenizer, "alpaca", [], "Name a colour.") == format_prompt("Name a colour.")
    second = conversation_prompt(tokenizer, "alpaca", [("Name a colour.", "Blue.")], "Another one?")
    assert second.startswith(format_prompt("Name a colour.") + "Blue.\n\n### Instruction:\nAnother one?")
    assert second.endswith("### Response:\n")


def test_generation_uses_category_temperatures_and_the_first_answer(tokenizer, tiny_lm, questions, monkeypatch):
    """A spy replaces generate: it records each call's sampling settings and prompts and answers with a
    fixed text, so we can check turn 2 is asked after the model's own turn-1 answer."""
    import torch

    calls: list[dict] = []

    def spy_generate(input_ids, attention_mask, **kwargs):
        prompts = tokenizer.batch_decode(input_ids, skip_special_tokens=False)
        calls.append({"do_sample": kwargs["do_sample"], "temperature": kwargs["temperature"], "prompts": prompts})
        reply = tokenizer(f" reply {len(calls)}", add_special_tokens=False, return_tensors="pt")["input_ids"]
        return torch.cat([input_ids, reply.repeat(input_ids.shape[0], 1)], dim=1)

    monkeypatch.setattr(tiny_lm, "generate", spy_generate)
    chosen = [questions[81], questions[111], questions[141]]  # writing 0.7, math 0.0, stem 0.1
    answers = generate_answers(tiny_lm, tokenizer, chosen, GenerationSettings(max_new_tokens=4, template="chat"), seed=1)
    assert len(calls) == 6  # 2 turns x 3 temperatures
    by_question = {}
    for call in calls:
        for prompt in call["prompts"]:
            qid = next(q.question_id for q in chosen if q.turns[0] in prompt)
            by_question.setdefault(qid, []).append((call["do_sample"], call["temperature"], prompt))
    assert [(s, t) for s, t, _ in by_question[81]] == [(True, 0.7), (True, 0.7)]
    assert [(s, t) for s, t, _ in by_question[111]] == [(False, None), (False, None)]
    assert [(s, t) for s, t, _ in by_question[141]] == [(True, 0.1), (True, 0.1)]
    for q in chosen:
        first, second = answers[q.question_id]
        assert first.startswith("reply") and second.startswith("reply") and first != second
        turn2_prompt = by_question[q.question_id][1][2]
        assert "<|im_start|>user\n" + q.turns[0] in turn2_prompt
        assert "<|im_start|>assistant\n" + first + "<|im_end|>" in turn2_prompt
        assert turn2_prompt.rstrip().endswith("<|im_start|>user\n" + q.turns[1] + "<|im_end|>\n<|im_start|>assistant")


def test_answer_file_is_fastchat_format(tmp_path, questions):
    settings = GenerationSettings(max_new_tokens=8)
    records = [answer_record(questions[q], "tiny-model", [f"a{q}", f"b{q}"], settings) for q in (111, 81)]
    path = write_answers(tmp_path / "model_answer" / "tiny-model.jsonl", records)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["question_id"] for r in lines] == [81, 111]  # sorted like FastChat's reorg_answer_file
    for r in lines:
        assert {"question_id", "answer_id", "model_id", "choices", "tstamp"} <= set(r)
        assert r["model_id"] == "tiny-model" and len(r["answer_id"]) == 22
        assert r["choices"] == [{"index": 0, "turns": [f"a{r['question_id']}", f"b{r['question_id']}"]}]
    assert lines[1]["generate_params"]["temperature"] == 0.0 and lines[0]["generate_params"]["temperature"] == 0.7
    assert read_answers(path)[81]["choices"][0]["turns"][1] == "b81"


# ---------------------------------------------------------------------------------------------------
# judge selection and options
# ---------------------------------------------------------------------------------------------------


def test_judge_selection(monkeypatch):
    import torch

    for var in ("HARNESS_JUDGE_BASE_URL", "HARNESS_JUDGE_MODEL", "HARNESS_JUDGE_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    cpu = torch.device("cpu")
    self_judge = make_judge(MTBenchOptions(), "cpu", "smollm2-135m", cpu)
    assert isinstance(self_judge, HFJudge) and self_judge.identity.model == "smollm2-135m"
    assert "weak self-judge" in self_judge.identity.note
    assert self_judge.prefill == "Rating: [[" and "prefill" in self_judge.identity.settings  # cpu default
    assert self_judge.max_new_tokens == 4
    unprefilled = make_judge(MTBenchOptions(judge_prefill=False), "cpu", "smollm2-135m", cpu)
    assert unprefilled.prefill == "" and unprefilled.identity.key != self_judge.identity.key  # separate cache keys
    assert make_judge(MTBenchOptions(judge="hf:smollm2-135m"), "paper", "llama2-7b", cpu).prefill == ""
    with pytest.raises(HarnessError, match="judge_prefill"):
        make_judge(MTBenchOptions(judge="openai", judge_prefill=True), "cpu", "smollm2-135m", cpu)
    paper = make_judge(MTBenchOptions(), "paper", "llama2-7b", cpu)
    assert isinstance(paper, OpenAIJudge) and paper.identity.model == "gpt-4"
    assert paper.identity.base_url == "https://api.openai.com/v1" and "max_tokens=2048" in paper.identity.settings

    monkeypatch.setenv("HARNESS_JUDGE_BASE_URL", "http://judge.local:8000/v1/")
    monkeypatch.setenv("HARNESS_JUDGE_MODEL", "qwen-72b")
    monkeypatch.setenv("HARNESS_JUDGE_API_KEY", "sk-secret")
    configured = make_judge(MTBenchOptions(), "cpu", "smollm2-135m", cpu)
    assert isinstance(configured, OpenAIJudge) and configured.api_key == "sk-secret"
    assert configured.identity.to_dict()["base_url"] == "http://judge.local:8000/v1"
    assert "sk-secret" not in json.dumps(configured.identity.to_dict())
    explicit = make_judge(MTBenchOptions(judge="hf:some/folder"), "cpu", "smollm2-135m", cpu)
    assert isinstance(explicit, HFJudge) and "weak judge" in explicit.identity.note


def _spec_hash(suite_options: dict) -> str:
    from harness.spec import RunSpec

    return RunSpec(suite="mt-bench", task="alpaca", adapter="lora", model="smollm2-135m", preset="cpu", seed=42,
                   suite_options=suite_options).config_hash


def test_the_resolved_judge_enters_the_suite_options_and_the_config_hash():
    cpu_local = resolve_judge_options({}, "cpu", {})
    assert cpu_local == {"judge": "hf:smollm2-135m"}
    assert resolve_judge_options({}, "paper", {}) == {"judge": "openai", "judge_model": "gpt-4"}
    env_a = {"HARNESS_JUDGE_BASE_URL": "http://user:pw@judge-a.local:8000/v1/?token=t", "HARNESS_JUDGE_MODEL": "qwen-72b",
             "HARNESS_JUDGE_API_KEY": "sk-secret"}
    env_b = {**env_a, "HARNESS_JUDGE_BASE_URL": "http://judge-b.local:8000/v1"}
    a, b = resolve_judge_options({}, "cpu", env_a), resolve_judge_options({}, "cpu", env_b)
    assert a == {"judge": "openai", "judge_model": "qwen-72b", "judge_base_url": "http://judge-a.local:8000/v1"}
    assert "secret" not in json.dumps(a) and "pw" not in json.dumps(a) and "token" not in json.dumps(a)
    assert len({_spec_hash(cpu_local), _spec_hash(a), _spec_hash(b)}) == 3  # different judges, different records
    model_only = resolve_judge_options({}, "cpu", {"HARNESS_JUDGE_MODEL": "other"})
    assert model_only == {"judge": "openai", "judge_model": "other"} and _spec_hash(model_only) != _spec_hash(a)
    # explicit options win over the environment and are kept as given; other options pass through
    explicit = resolve_judge_options({"judge": "hf:smollm2-135m", "alpaca_path": "x.json"}, "cpu", env_a)
    assert explicit == {"judge": "hf:smollm2-135m", "alpaca_path": "x.json"}
    assert resolve_judge_options({"judge_model": "m"}, "cpu", env_a)["judge_model"] == "m"
    # "auto" and the judge it resolves to are one judge, one hash
    assert resolve_judge_options({"judge": "auto"}, "cpu", {}) == resolve_judge_options(cpu_local, "cpu", env_a)
    with pytest.raises(HarnessError, match="judge must be"):
        resolve_judge_options({"judge": "gpt4"}, "cpu", {})


def test_the_planner_records_the_judge_from_the_environment(monkeypatch):
    from harness.pipeline.plan import GridRequest, plan_grid

    def plan(url: str):
        monkeypatch.setenv("HARNESS_JUDGE_BASE_URL", url)
        return plan_grid(GridRequest(suite="mt-bench", adapters="lora", preset="cpu"), cuda_available=False)[0]

    a, b = plan("http://a.local/v1"), plan("http://b.local/v1")
    assert a.suite_options["judge_base_url"] == "http://a.local/v1"
    assert a.config_hash != b.config_hash


def test_a_resolved_endpoint_still_uses_the_environments_url_and_key():
    import torch

    env = {"HARNESS_JUDGE_BASE_URL": "http://user:pw@judge-a.local:8000/v1/", "HARNESS_JUDGE_API_KEY": "sk-secret"}
    options = MTBenchOptions.from_options(resolve_judge_options({}, "cpu", env))
    judge = make_judge(options, "cpu", "smollm2-135m", torch.device("cpu"), env)
    assert isinstance(judge, OpenAIJudge) and judge.api_key == "sk-secret"
    assert judge.base_url == env["HARNESS_JUDGE_BASE_URL"]  # credentials in the URL still apply
    assert judge.identity.base_url == "http://judge-a.local:8000/v1"
    other = make_judge(MTBenchOptions(judge="openai", judge_base_url="http://elsewhere/v1"), "cpu", "m",
                       torch.device("cpu"), env)
    assert other.base_url == "http://elsewhere/v1"  # an explicit, different endpoint is not replaced


def test_the_suite_resolves_its_options_from_the_process_environment(monkeypatch):
    monkeypatch.setenv("HARNESS_JUDGE_BASE_URL", "http://judge.local:8000/v1")
    monkeypatch.delenv("HARNESS_JUDGE_MODEL", raising=False)
    suite = SUITES.get("mt-bench")()
    assert suite.resolve_options("cpu", "smollm2-135m", {}) == {
        "judge": "openai", "judge_model": "gpt-4", "judge_base_url": "http://judge.local:8000/v1"}


@pytest.mark.parametrize(
    ("options", "message"),
    [({"judge": "gpt4"}, "judge must be"), ({"answer_max_tokens": "0"}, "answer_max_tokens"),
     ({"answer_template": "vicuna"}, "answer_template"), ({"judge_parallel": "two"}, "judge_parallel")],
)
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(HarnessError, match=message):
        MTBenchOptions.from_options(options)


def test_options_from_cli_strings_and_base_options_pass_through():
    opts = MTBenchOptions.from_options({"judge": "openai", "judge_parallel": "2", "alpaca_path": "x.json"})
    assert opts.judge_parallel == 2 and opts.judge == "openai"


def test_suite_is_registered_and_checks_its_data(tmp_path):
    suite = SUITES.get("mt-bench")()
    assert suite.primary_metric("alpaca") == "overall"
    assert "judge_base_url" in suite.option_names() and "alpaca_path" in suite.option_names()
    suite.check_data("alpaca", DataSource(DATA))
    (tmp_path / "alpaca").mkdir()
    (tmp_path / "alpaca" / "seed_tasks.jsonl").write_text("")
    with pytest.raises(HarnessError, match="mtbench") as info:
        suite.check_data("alpaca", DataSource(tmp_path))
    assert "\n" not in str(info.value)
    assert suite.train_config("cpu", "alpaca", "smollm2-135m").limit == 8


# ---------------------------------------------------------------------------------------------------
# the suite end to end: tiny model, fake judge
# ---------------------------------------------------------------------------------------------------


def make_context(tmp_path: Path, base_url: str, **extra: str) -> RunContext:
    import torch

    options = {"judge": "openai", "judge_base_url": base_url, "judge_model": "fake-judge", "judge_retries": "0",
               "answer_max_tokens": "6", "output_dir": str(tmp_path / "mt"), **extra}
    return RunContext(device=torch.device("cpu"), data=DataSource(DATA), seed=3, preset="cpu", work_dir=tmp_path,
                      options=options)


def test_suite_end_to_end_with_a_fake_judge(tmp_path, tokenizer, tiny_lm, monkeypatch):
    monkeypatch.setenv("HARNESS_JUDGE_API_KEY", "sk-e2e")
    server = FakeJudgeServer()
    try:
        suite = SUITES.get("mt-bench")()
        loaded = LoadedModel(model=tiny_lm, family="causal_lm", head_modules=(), tokenizer=tokenizer, info={"model": "tiny"})
        train = TrainConfig(limit=3, eval_batch_size=4)
        ctx = make_context(tmp_path, server.base_url)
        plan, info = suite.load_eval_data("alpaca", loaded, train, ctx)
        meta = info["mtbench"]
        assert meta["judge"]["backend"] == "openai" and meta["judge"]["model"] == "fake-judge"
        assert meta["judge"]["base_url"] == server.base_url and "sk-e2e" not in json.dumps(info)
        assert meta["question_ids"] == [81, 91, 101] and meta["answer_template"] == "chat"
        assert server.requests == []  # the probe lists models; it does not judge
        data = TaskData(train=[], eval=plan, info=info)

        scores = suite.evaluate(tiny_lm, data, loaded, train, ctx)
        assert scores["overall"] == 7.0 and scores["turn1"] == 7.0 and scores["turn2"] == 7.0
        assert scores["category_reasoning"] == 7.0 and scores["questions"] == 3
        assert (scores["judgments"], scores["judge_requests"], scores["judge_cache_hits"]) == (6, 6, 0)
        answer_file = Path(meta["answer_file"])
        answers = [json.loads(line) for line in answer_file.read_text().splitlines()]
        assert [a["question_id"] for a in answers] == [81, 91, 101]
        assert all(len(a["choices"][0]["turns"]) == 2 and a["model_id"] == meta["model_id"] for a in answers)
        judged = [json.loads(line) for line in Path(meta["judgment_file"]).read_text().splitlines()]
        assert len(judged) == 6 and {j["model"] for j in judged} == {meta["model_id"]}

        # the same seed gives the same answers: a second evaluation is served by the cache
        again = suite.evaluate(tiny_lm, data, loaded, train, ctx)
        assert (again["judge_requests"], again["judge_cache_hits"]) == (0, 6) and len(server.requests) == 6
        assert (answer_file.parent / f"{meta['model_id']}-eval2.jsonl").is_file()
    finally:
        server.stop()

    # the judge goes away after training: the error is one line and the answers are on disk
    plan.cache = JudgmentCache(tmp_path / "empty-cache.jsonl")  # nothing cached: the judge must be asked
    with pytest.raises(JudgeUnreachableError) as info_error:
        suite.evaluate(tiny_lm, data, loaded, train, ctx)
    message = str(info_error.value)
    kept = answer_file.parent / f"{meta['model_id']}-eval3.jsonl"
    assert "\n" not in message and "cannot be reached" in message and str(kept) in message
    assert len(read_answers(kept)) == 3


def test_unreachable_judge_fails_before_any_answer(tmp_path, tokenizer, tiny_lm):
    suite = SUITES.get("mt-bench")()
    loaded = LoadedModel(model=tiny_lm, family="causal_lm", head_modules=(), tokenizer=tokenizer, info={"model": "tiny"})
    with pytest.raises(JudgeUnreachableError, match="cannot be reached"):
        suite.load_eval_data("alpaca", loaded, TrainConfig(limit=2), make_context(tmp_path, dead_url()))
    assert not (tmp_path / "mt").exists()


def test_local_hf_judge_plumbing(tmp_path, tokenizer, tiny_lm):
    """A local model as judge: prompts go through its chat template with FastChat's system prompt and
    are decoded greedily, so a batched judgment equals the same judgment alone."""
    folder = tmp_path / "judge"
    tiny_lm.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    import torch

    judge = HFJudge("tiny-judge", lambda name: str(folder), torch.device("cpu"), max_new_tokens=4, batch_size=2)
    judge.check()
    _, tok = judge.load()
    rendered = judge.render(tok, "SYSTEM-PROMPT", "USER-PROMPT")
    assert rendered.startswith("<|im_start|>system\nSYSTEM-PROMPT<|im_end|>\n<|im_start|>user\nUSER-PROMPT")
    conversations = [("You are a helpful assistant.", "Rate this: hello"), ("S", "Rate that: bye"), ("S", "x")]
    replies = judge.complete(conversations)
    assert len(replies) == 3 and all(isinstance(r, str) for r in replies)
    assert judge.complete(conversations) == replies  # greedy: the same judgment every time
    assert judge.complete(conversations[1:2]) == replies[1:2]  # left padding does not change a judgment

    prefilled = HFJudge("tiny-judge", lambda name: str(folder), torch.device("cpu"), max_new_tokens=2, prefill="Rating: [[")
    assert prefilled.render(tok, "S", "U").endswith("<|im_start|>assistant\nRating: [[")
    assert all(r.startswith("Rating: [[") for r in prefilled.complete(conversations))


def test_a_run_whose_judging_failed_is_failed_rerun_and_only_rejudged(tmp_path, tokenizer, tiny_lm, monkeypatch):
    """Through the runner and a store: half the judge's replies are HTTP 500 -> the run is `failed` (not a
    success with a null score), its answers sit beside the record under a model_id naming the run; the
    next invocation reruns it, reads the answers back and asks the judge only for the failed judgments."""
    from harness.grid.run_grid import run_grid
    from harness.pipeline.attach import build_adapter
    from harness.pipeline.runner import ExecutionOptions
    from harness.records.store import ResultStore
    from harness.spec import RunSpec

    folder = tmp_path / "tiny-smollm"
    tiny_lm.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    server = FakeJudgeServer()
    failing = {"on": True}
    # every second request fails while `on`: 3 of 6 judgments, above the 0.2 threshold
    server.respond = lambda body, n: (500, "application/json", b'{"error": {"message": "boom"}}') \
        if failing["on"] and n % 2 == 0 else None
    try:
        adapter = build_adapter("lora", {"targets": "q_proj,v_proj", "rank": 2})
        spec = RunSpec(
            suite="mt-bench", task="alpaca", adapter="lora", model=str(folder), preset="cpu", seed=0,
            adapter_options=adapter.config.to_dict(),
            train=TrainConfig(epochs=1, batch_size=4, max_train_samples=4, max_length=64, eval_each_epoch=False,
                              limit=3, eval_batch_size=4),
            suite_options={"judge": "openai", "judge_base_url": server.base_url, "judge_model": "fake-judge",
                           "judge_retries": "0", "answer_max_tokens": "4"},
        )
        store = ResultStore(tmp_path / "results")
        options = ExecutionOptions(data=DataSource(DATA), progress=False)
        first = run_grid([spec], store, options, echo=lambda line: None)
        assert first.ran == 1
        record = json.loads(store.path_for(spec.key).read_text())
        assert record["status"] == "failed" and record["error"]["type"] == "JudgingFailedError"
        assert "3 of 6 MT-Bench judgments" in record["error"]["message"]
        record_path = store.path_for(record["key"])
        side = record_path.with_name(record_path.stem + ".mt-bench")
        model_id = "mt-bench_alpaca_lora_" + spec.config_hash + "_seed0"
        answer_file = side / "model_answer" / f"{model_id}.jsonl"
        assert answer_file.is_file() and len(read_answers(answer_file)) == 3
        judged = [json.loads(line) for line in (side / "model_judgment" / "fake-judge_single.jsonl").read_text().splitlines()]
        assert sorted(j["rating_status"] for j in judged) == ["judge_error"] * 3 + ["ok"] * 3
        assert {j["model"] for j in judged} == {model_id}
        assert len(server.requests) == 6

        failing["on"] = False
        second = run_grid([spec], store, options, echo=lambda line: None)
        assert second.skipped == 0 and second.ran == 1  # failed is not done: rerun
        record = json.loads(store.path_for(spec.key).read_text())
        assert record["status"] == "success", record["error"]
        final = record["metrics"]["final"]
        assert final["answers_reused"] == 1 and final["judge_requests"] == 3 and final["judge_cache_hits"] == 3
        assert final["overall"] == 7.0 and record["metrics"]["score"] == 7.0
        assert len(server.requests) == 9
        assert record["data_info"]["mtbench"]["answer_file"] == str(answer_file)
        # the judgment file beside the record holds each judgment once (FastChat's show_result counts repeats)
        judged = [json.loads(line) for line in (side / "model_judgment" / "fake-judge_single.jsonl").read_text().splitlines()]
        assert len(judged) == 6 and {j["rating_status"] for j in judged} == {"ok"}
        assert sorted((j["question_id"], j["turn"]) for j in judged) == sorted({(j["question_id"], j["turn"]) for j in judged})
        third = run_grid([spec], store, options, echo=lambda line: None)
        assert third.skipped == 1 and third.ran == 0  # done now
    finally:
        server.stop()


def test_judge_max_failed_is_validated():
    for bad in ("1", "-0.1", "nan", "abc"):
        with pytest.raises(HarnessError):
            MTBenchOptions.from_options({"judge_max_failed": bad})
    assert MTBenchOptions.from_options({"judge_max_failed": "0.5"}).judge_max_failed == 0.5
    with pytest.raises(HarnessError, match="judge_timeout"):
        MTBenchOptions.from_options({"judge_timeout": "nan"})
