"""MT-Bench after Alpaca instruction tuning: 80 two-turn questions graded 1-10 by an LLM judge.

The adapted model answers each question's two turns (FastChat's per-category temperatures, the model's
chat template); the answers are written in FastChat's ``model_answer`` format before any judging, so they
survive a judge that fails. A judge then grades each turn with FastChat's single-answer prompts (with
GPT-4 reference answers for math, reasoning and coding). Scores: ``overall`` (the primary metric),
``turn1``, ``turn2`` and ``category_<name>``, on FastChat's 1-10 scale, unparseable judgments excluded.

Judges (``--suite-opt judge=...``):
- ``openai``: any OpenAI-compatible endpoint. Base URL, model and key come from ``HARNESS_JUDGE_BASE_URL``,
  ``HARNESS_JUDGE_MODEL`` (default gpt-4) and ``HARNESS_JUDGE_API_KEY`` (else ``OPENAI_API_KEY``), or from
  ``judge_base_url`` / ``judge_model`` suite options (the key only ever from the environment, so it never
  reaches a record). The endpoint is probed before training: an unreachable judge fails the run at once.
- ``hf:<model>``: a local Hugging Face causal LM (catalogue name, folder or hub id), greedy.
- ``auto`` (default): ``openai`` when a judge endpoint or model is configured; otherwise the ``cpu``
  preset grades with the base SmolLM2-135M (a weak self-judge, labelled so in the record) and ``paper``
  with OpenAI's gpt-4.

Who judges is part of the run's identity: at plan time ``resolve_options`` writes the resolved judge
(``judge``, and for an endpoint ``judge_model`` and the public ``judge_base_url``) into the suite options,
which the config hash covers, so answers graded by different judges never share a record key.

Files (FastChat layout): ``model_answer/<model_id>.jsonl`` and ``model_judgment/<judge>_single.jsonl``
beside the record (``<record stem>.mt-bench/``, so whoever reads the results folder reads them too), or
under ``--suite-opt output_dir=DIR``, or ``$HARNESS_CACHE_DIR/mt_bench`` for a run without a store. The
``model_id`` names the run (suite, task, adapter, config hash, seed: FastChat's viewer tells LoRA from
MSPLoRA). The judgment cache stays in ``$HARNESS_CACHE_DIR/mt_bench/judgment_cache.jsonl`` (shared by
runs; only valid ratings). The record's ``data_info.mtbench`` says where they are and who judged.

Failed judging: when more than ``judge_max_failed`` (default 0.2) of the judgments have no rating on the
scale (judge errors, HTML or empty bodies, no ``[[rating]]``, ratings off 1-10) the run is ``failed``, not
a success with a null score, so the next invocation reruns it. The answers and the valid judgments are
kept: the rerun (same run id) reads the answers back instead of generating them and asks the judge only
for the judgments that failed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.metrics import MetricSpec
from harness.redact import has_secret
from harness.registry import register_suite
from harness.spec import TrainConfig
from harness.suite import DataSource, LoadedModel, RunContext, TaskData
from suites._shared.instruct import InstructionTuningSuite, cache_root
from suites.mt_bench.answers import (
    CATEGORY_TEMPERATURE,
    JUDGE_PROMPT_FILE,
    QUESTION_FILE,
    REFERENCE_DIR,
    GenerationSettings,
    Question,
    answer_record,
    answer_turns,
    generate_answers,
    load_questions,
    load_reference_answers,
    read_answers,
    resolve_template,
    select_questions,
    write_answers,
)
from suites.mt_bench.judges import JudgeBackend, JudgeUnreachableError
from suites.mt_bench.judging import (
    JudgmentCache,
    aggregate_scores,
    build_matches,
    drop_model_lines,
    judge_matches,
    load_judge_prompts,
)
from suites.mt_bench.options import (
    CPU_ANSWER_TOKENS,
    CPU_TRAIN_MTBENCH,
    DEFAULT_REFERENCE,
    ENV_OPTION_URL,
    PAPER_ANSWER_TOKENS,
    MTBenchOptions,
    check_files,
    data_root,
    make_judge,
    resolve_judge_options,
)

if TYPE_CHECKING:
    from torch import nn


class JudgingFailedError(HarnessError):
    """Too many judgments without a rating: the run is failed (rerun), its answers and good judgments kept."""


def default_model_id(ctx: RunContext, model: str) -> str:
    """FastChat names answer files after the model; ours name the run: suite, task, adapter, config hash
    and seed (RunSpec.run_id), so FastChat's viewer tells LoRA from MSPLoRA. Without a run id (a suite
    driven by hand) a timestamped name keeps runs apart."""
    stem = ctx.run_id or f"{Path(model).name}-{ctx.preset}-seed{ctx.seed}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("_")


def run_files_dir(ctx: RunContext, options: MTBenchOptions) -> Path:
    """Where answers and judgment lines go: output_dir, else beside the record, else the cache."""
    if options.output_dir:
        return Path(options.output_dir).expanduser()
    if ctx.record_path is not None:
        return ctx.record_path.with_name(ctx.record_path.stem + ".mt-bench")
    return cache_root() / "mt_bench"


def judging_failed_before(record_path: Path | None) -> bool:
    """Whether the record at ``record_path`` is a run that failed in judging (its answers are reusable)."""
    if record_path is None or not record_path.is_file():
        return False
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        return record.get("status") == "failed" and (record.get("error") or {}).get("type") == JudgingFailedError.__name__
    except (OSError, ValueError, AttributeError):
        return False


def reusable_answers(path: Path, questions: list[Question], settings: GenerationSettings) -> dict[int, list[str]] | None:
    """The answers in ``path`` when they cover every question with the same generation settings."""
    try:
        kept = read_answers(path)
    except (HarnessError, OSError, ValueError, KeyError, TypeError):
        return None
    out = {}
    for q in questions:
        record = kept.get(q.question_id)
        params = (record or {}).get("generate_params") or {}
        if record is None or params.get("max_new_token") != settings.max_new_tokens or params.get("template") != settings.template:
            return None
        try:
            out[q.question_id] = answer_turns(record)
        except (KeyError, IndexError, TypeError):
            return None
    return out


@dataclass
class MTBenchPlan:
    """What ``evaluate`` needs, built before training (so a bad judge fails first)."""

    questions: list[Question]
    references: dict[int, tuple[str, ...]]
    prompts: dict[str, Any]
    generation: GenerationSettings
    judge: JudgeBackend
    cache: JudgmentCache
    answer_dir: Path
    judgment_file: Path
    model_id: str
    max_failed: float = 0.2
    reuse_answers: bool = False  # the previous attempt of this run failed in judging: read its answers back
    evaluations: list[str] = field(default_factory=list)  # model ids written so far (variants add more)


@register_suite("mt-bench")
class MTBench(InstructionTuningSuite):
    metrics = (  # names, units, directions: harness/metrics.py
        MetricSpec("overall", "rating_1_10", primary=True, description="mean judge rating over both turns"),
        MetricSpec("turn1", "rating_1_10"),
        MetricSpec("turn2", "rating_1_10"),
        *(MetricSpec(f"category_{c}", "rating_1_10") for c in
          ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")),
    )
    honours_limit = True  # --limit N judges N questions, round-robin over categories
    description = "Alpaca instruction tuning, evaluated on MT-Bench (80 two-turn questions, LLM-judge scores 1-10, FastChat formats)"

    def option_names(self) -> tuple[str, ...]:
        return (*super().option_names(), *MTBenchOptions.__dataclass_fields__)

    def primary_metric(self, task: str) -> str:
        return "overall"

    def resolve_options(self, preset: str, model: str, options: dict[str, Any]) -> dict[str, Any]:
        """Plan-time hook: the suite options as the run spec records (and hashes) them, with the judge
        resolved from the environment (resolve_judge_options). A ``judge_base_url`` with credentials or
        a query is recorded in its public form; the full URL stays in this process's environment
        (``ENV_OPTION_URL``, inherited by the pool's workers) for the calls."""
        url = options.get("judge_base_url")
        if has_secret(url):
            os.environ[ENV_OPTION_URL] = str(url).strip()
        return resolve_judge_options(options, preset, os.environ)

    def preflight(self, options: dict[str, Any], preset: str, model: str) -> None:
        """Before any model loads: bad options, and a judge that cannot be used (an endpoint that cannot
        be reached, an unknown local model) fail the grid at once."""
        import torch

        make_judge(MTBenchOptions.from_options(options), preset, model, torch.device("cpu")).check()

    def train_config(self, preset: str, task: str, model: str) -> TrainConfig:
        return CPU_TRAIN_MTBENCH if preset == "cpu" else super().train_config(preset, task, model)

    def check_data(self, task: str, data: DataSource) -> None:
        root = data_root(data)
        check_files(root, DEFAULT_REFERENCE)
        # small files: read and validated now, so a malformed one fails before any model loads
        load_questions(root / QUESTION_FILE)
        load_judge_prompts(root / JUDGE_PROMPT_FILE)
        load_reference_answers(root / REFERENCE_DIR / f"{DEFAULT_REFERENCE}.jsonl")
        super().check_data(task, data)  # the Alpaca training file, every record

    def load_eval_data(self, task: str, loaded: LoadedModel, train: TrainConfig, ctx: RunContext) -> tuple[Any, dict[str, Any]]:
        options = MTBenchOptions.from_options(ctx.options)
        root = data_root(ctx.data)
        check_files(root, options.reference_model)
        all_questions = load_questions(root / QUESTION_FILE)
        questions = select_questions(all_questions, train.limit)
        cpu = ctx.preset == "cpu"
        generation = GenerationSettings(
            max_new_tokens=options.answer_max_tokens or (CPU_ANSWER_TOKENS if cpu else PAPER_ANSWER_TOKENS),
            batch_size=train.eval_batch_size,
            template=resolve_template(options.answer_template, loaded.tokenizer),
        )
        judge = make_judge(options, ctx.preset, str(loaded.info.get("model", "")), ctx.device)
        judge.check()  # before training: an unreachable judge must not cost a training run
        out = run_files_dir(ctx, options)
        plan = MTBenchPlan(
            questions=questions,
            references=load_reference_answers(root / REFERENCE_DIR / f"{options.reference_model}.jsonl"),
            prompts=load_judge_prompts(root / JUDGE_PROMPT_FILE),
            generation=generation,
            judge=judge,
            cache=JudgmentCache((out if options.output_dir else cache_root() / "mt_bench") / "judgment_cache.jsonl"),
            answer_dir=out / "model_answer",
            judgment_file=out / "model_judgment" / f"{judge.identity.file_stem}_single.jsonl",
            model_id=default_model_id(ctx, str(loaded.info.get("model", "model"))),
            max_failed=options.judge_max_failed,
            reuse_answers=judging_failed_before(ctx.record_path),
        )
        info = {
            "mtbench": {
                "judge": judge.identity.to_dict(),
                "judge_prompts": "FastChat single-v1 / single-math-v1 (+ -multi-turn for turn 2)",
                "reference_answers": f"{options.reference_model} (math, reasoning, coding)",
                "questions": len(questions),
                "questions_available": len(all_questions),
                "question_ids": [q.question_id for q in questions],
                "limit_scope": "questions, round-robin over categories" if train.limit else None,
                "answer_template": generation.template,
                "answer_max_new_tokens": generation.max_new_tokens,
                "temperatures": "FastChat per category: " + ", ".join(f"{k} {v}" for k, v in CATEGORY_TEMPERATURE.items()),
                "model_id": plan.model_id,
                "answer_file": str(plan.answer_dir / f"{plan.model_id}.jsonl"),
                "judgment_file": str(plan.judgment_file),
                "judgment_cache": str(plan.cache.path),
                "source": str(root),
            }
        }
        return plan, info

    def evaluate(self, model: nn.Module, data: TaskData, loaded: LoadedModel, train: TrainConfig,
                 ctx: RunContext) -> dict[str, float]:
        plan: MTBenchPlan = data.eval
        # a second evaluation of the same run (an adapter's evaluation variant) gets its own answer file
        model_id = plan.model_id if not plan.evaluations else f"{plan.model_id}-eval{len(plan.evaluations) + 1}"
        plan.evaluations.append(model_id)
        t0 = time.perf_counter()
        answer_file = plan.answer_dir / f"{model_id}.jsonl"
        answers = reusable_answers(answer_file, plan.questions, plan.generation) if plan.reuse_answers else None
        reused = answers is not None
        if answers is None:
            answers = generate_answers(model, loaded.tokenizer, plan.questions, plan.generation, ctx.seed)
            write_answers(answer_file, [answer_record(q, model_id, answers[q.question_id], plan.generation)
                                        for q in plan.questions])
        answer_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        matches = build_matches(plan.questions, answers, plan.prompts, plan.references)
        drop_model_lines(plan.judgment_file, model_id)  # an earlier attempt's lines: one line per judgment
        try:
            report = judge_matches(matches, plan.judge, plan.cache, model_id, plan.judgment_file)
        except JudgeUnreachableError as exc:
            raise JudgeUnreachableError(f"{exc}; the answers are kept in {answer_file}") from None
        scores = aggregate_scores(report.records, {q.question_id: q.category for q in plan.questions})
        if report.failed > plan.max_failed * len(report.records):
            raise JudgingFailedError(
                f"{report.failed} of {len(report.records)} MT-Bench judgments have no rating on the 1-10 scale "
                f"({int(scores['judgments_judge_error'])} judge errors, {int(scores['judgments_no_rating'])} without a "
                f"rating, {int(scores['judgments_off_scale'])} off the scale; judge_max_failed={plan.max_failed:g}); "
                f"the answers are kept in {answer_file} and the valid judgments in {plan.cache.path}: rerun the same "
                "command to judge the rest")
        scores.update(
            questions=float(len(plan.questions)),
            judge_requests=float(report.asked),
            judge_cache_hits=float(report.cached),
            judge_errors=float(report.errors),
            answers_reused=float(reused),
            answer_seconds=answer_seconds,
            judge_seconds=time.perf_counter() - t0,
        )
        return scores
