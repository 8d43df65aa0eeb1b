"""INSTRUCTEVAL after Alpaca instruction tuning: MMLU, BBH, DROP and HumanEval.

The adapted model object is evaluated in-process with lm-eval (``HFLM(pretrained=model)``) on the task
definitions in ``lm_eval_tasks/`` beside this file (``ie_*``), which read
``<data root>/{mmlu,bbh,drop,humaneval}`` offline and the hub datasets online. Settings are pinned to INSTRUCTEVAL: MMLU 5-shot, BBH 3-shot direct
answer (no chain of thought), DROP 3-shot, HumanEval 0-shot pass@1 with greedy decoding.

HumanEval completions are untrusted code: they run only with ``--suite-opt allow_code_execution=true``,
in the kernel sandbox of ``sandbox.py`` beside this file. Without it HumanEval is recorded as skipped (not
zero) and the average covers the other benchmarks; ``data_info.average_covers`` and the ``average_of`` metric say which.

Scores are fractions in [0, 1]: MMLU and BBH accuracy over all their questions (micro average over
subjects/tasks), DROP F1, HumanEval pass@1, and their unweighted mean ``average`` (the primary metric).
The record also keeps lm-eval's per-task scores (``mmlu_subject_<subject>``, ``bbh_task_<task>``), and
lm-eval's own results (per task: metrics, sample counts, versions, task configs; per HumanEval problem the
sandbox's verdict) are saved beside the record as ``<record stem>.lm-eval-results.jsonl``, one JSON object
per lm-eval call (not ``*.json``: the store reads those as records).
With ``--limit N`` lm-eval scores the first N examples of each lm-eval task (each MMLU subject, each BBH
task); the limit is part of the run's config hash and of ``data_info.eval_limit``, so limited and full
results never share a leaderboard cell. The ``cpu`` preset evaluates with a default limit of
``CPU_EVAL_LIMIT`` per lm-eval task (the full benchmarks take hours on 2 cores); ``--limit N`` changes it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.config import coerce
from harness.datafiles import cached, fail, read_checked, read_json, require_fields
from harness.errors import HarnessError
from harness.metrics import MetricSpec
from harness.registry import register_suite
from harness.spec import TrainConfig
from harness.suite import DataSource, LoadedModel, RunContext, TaskData
from suites._shared.instruct import CPU_TRAIN, InstructionTuningSuite
from suites.instructeval.lm_eval_run import (
    BENCHMARKS,
    lm_eval_bars,
    lm_eval_summary,
    lm_eval_task_names,
    micro_average,
    per_task_scores,
    quiet_lm_eval,
    save_lm_eval_results,
    score_humaneval,
    summarise,
)
from suites.instructeval.lm_eval_tasks import ie_utils
from suites.instructeval.sandbox import SandboxLimits, require_sandbox

if TYPE_CHECKING:
    from torch import nn

TASK_DIR = Path(__file__).parent / "lm_eval_tasks"
HOW_TO_GET = (
    "copy ../shared/data/{mmlu,bbh,drop,humaneval} (MMLU dev/test CSVs, BIG-Bench-Hard bbh/ and cot-prompts/, "
    "simple-evals drop_v0_dev.jsonl.gz, HumanEval.jsonl.gz) into the data root, or run online without --data-dir"
)
TRUE_WORDS = ("1", "true", "yes", "on")
CPU_HUMANEVAL_TOKENS = 256  # most HumanEval solutions are far shorter; generation is the CPU bottleneck
# cpu: the full benchmarks take hours on 2 cores: SmolLM2-135M forwards ~165 tokens per CPU-second
# (measured, one thread, 8 x 700-token prompts) and MMLU alone is 14k 5-shot prompts of ~700 tokens (up to
# 3k). So the cpu preset scores the first CPU_EVAL_LIMIT example of each lm-eval task: 57 MMLU questions
# (one per subject), 27 BBH questions (one per task), 1 DROP passage (and 1 HumanEval problem when
# allowed), ~65k prompt tokens, about 4 minutes on 2 cores, next to ~5 minutes of training. It is recorded
# as a limit (train.limit, data_info.eval_limit): its own config hash, never mixed with full runs; --limit N
# changes it. Smoke-level scores: they rank adapters coarsely at best.
CPU_EVAL_LIMIT = 1
CPU_TRAIN_INSTRUCTEVAL = replace(CPU_TRAIN, limit=CPU_EVAL_LIMIT)


@dataclass(frozen=True)
class EvalOptions:
    """Suite options (``--suite-opt``) of the evaluation, validated once."""

    benchmarks: tuple[str, ...] = BENCHMARKS
    allow_code_execution: bool = False
    humaneval_max_tokens: int = 512  # the cpu preset's default is CPU_HUMANEVAL_TOKENS
    sandbox_timeout: float = 10.0

    def __post_init__(self) -> None:
        unknown = [b for b in self.benchmarks if b not in BENCHMARKS]
        if unknown or not self.benchmarks:
            raise HarnessError(f"benchmarks must be a comma list of {', '.join(BENCHMARKS)}, got {list(self.benchmarks)}")
        if self.humaneval_max_tokens < 1 or not math.isfinite(self.sandbox_timeout) or self.sandbox_timeout <= 0:
            raise HarnessError(f"humaneval_max_tokens and sandbox_timeout must be positive and finite, got "
                               f"{self.humaneval_max_tokens} and {self.sandbox_timeout}")

    @staticmethod
    def from_options(options: dict[str, Any], preset: str = "paper") -> EvalOptions:
        kwargs: dict[str, Any] = {"humaneval_max_tokens": CPU_HUMANEVAL_TOKENS} if preset == "cpu" else {}
        if "benchmarks" in options:
            value = options["benchmarks"]
            kwargs["benchmarks"] = tuple(b.strip() for b in value.split(",") if b.strip()) if isinstance(value, str) else tuple(value)
        if "allow_code_execution" in options:
            kwargs["allow_code_execution"] = str(options["allow_code_execution"]).strip().lower() in TRUE_WORDS
        # typed like every option (harness.config.coerce): a finite float, an int, one-line errors
        for name in ("humaneval_max_tokens", "sandbox_timeout"):
            if name in options:
                kwargs[name] = coerce(name, options[name], int if name == "humaneval_max_tokens" else float)
        return EvalOptions(**kwargs)

    @property
    def scored(self) -> tuple[str, ...]:
        """The benchmarks that get a score (HumanEval only when its code may run)."""
        return tuple(b for b in self.benchmarks if b != "humaneval" or self.allow_code_execution)


@dataclass(frozen=True)
class EvalPlan:
    options: EvalOptions
    data_root: str  # "" = the hub
    limit: int | None


def check_benchmark_files(root: Path) -> None:
    """Every local benchmark file read with the loaders lm-eval will call (lm_eval_tasks/ie_utils.py),
    its structure validated, once per file identity and process: a malformed file is one line before any
    model loads, not a traceback inside lm-eval after training."""
    for subject in ie_utils.MMLU_SUBJECTS:
        for split in ("dev", "test"):
            path = root / "mmlu" / split / f"{subject}_{split}.csv"
            if not path.is_file():
                raise HarnessError(f"{path} is missing (mmlu); {HOW_TO_GET}")
            cached((path,), "mmlu", lambda path=path: _mmlu_rows(path))
    for task in ie_utils.BBH_TASKS:
        for path in (root / "bbh" / "bbh" / f"{task}.json", root / "bbh" / "cot-prompts" / f"{task}.txt"):
            if not path.is_file():
                raise HarnessError(f"{path} is missing (bbh); {HOW_TO_GET}")
            cached((path,), "bbh", lambda path=path: _bbh_file(path))
    drop = root / "drop" / "drop_v0_dev.jsonl.gz"
    rows = cached((drop,), "drop", lambda: read_checked(drop, lambda: ie_utils.read_drop_simple_evals(drop),
                                                        "simple-evals DROP JSON lines (context, ref_text), gzipped"))
    if len(rows) <= ie_utils.DROP_SHOTS:
        raise HarnessError(f"{drop} holds {len(rows)} DROP questions: too few for {ie_utils.DROP_SHOTS}-shot prompts")
    humaneval = ie_utils.humaneval_file(root)
    cached((humaneval,), "humaneval", lambda: _humaneval_rows(humaneval))


def _mmlu_rows(path: Path) -> list[dict[str, Any]]:
    rows = read_checked(path, lambda: ie_utils.read_mmlu_csv(path), "an MMLU CSV (question,choice0..3,answer)")
    if not rows:
        raise HarnessError(f"{path} holds no MMLU questions")
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        if row["answer"] not in range(4) or not all(isinstance(c, str) for c in row["choices"]):
            raise fail(path, f"line {number}", f"answer must be 0-3 with four choices, got {row['answer']}")
    return rows


def _bbh_file(path: Path) -> Any:
    if path.suffix == ".txt":  # the CoT prompt: a description and at least BBH_SHOTS exemplars
        _, shots = read_checked(path, lambda: ie_utils.parse_cot_prompt(path.read_bytes().decode("utf-8")),
                                "a BBH chain-of-thought prompt file")
        if len(shots) < ie_utils.BBH_SHOTS:
            raise HarnessError(f"{path} has {len(shots)} exemplars, {ie_utils.BBH_SHOTS}-shot prompts need {ie_utils.BBH_SHOTS}")
        return shots
    data = read_json(path, "a BBH task file ({'examples': [{input, target}, ...]})")
    require_fields(data, {"examples": list}, path, "top level")
    if not data["examples"]:
        raise HarnessError(f"{path} holds no BBH examples")
    for i, example in enumerate(data["examples"]):
        require_fields(example, {"input": str, "target": str}, path, f"examples[{i}]")
    return data


def _humaneval_rows(path: Path) -> list[dict[str, Any]]:
    import gzip

    def read() -> list[Any]:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            return [(n, json.loads(line)) for n, line in enumerate(fh, start=1) if line.strip()]

    rows = read_checked(path, read, "HumanEval JSON lines, gzipped")
    if not rows:
        raise HarnessError(f"{path} holds no HumanEval problems")
    keys = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
    return [require_fields(r, {k: str for k in keys}, path, f"line {n}") for n, r in rows]


@register_suite("instructeval")
class InstructEval(InstructionTuningSuite):
    share_task_data = True  # the tokenized Alpaca examples and the eval plan are only read during a run
    metrics = (  # names, units, directions: harness/metrics.py
        MetricSpec("average", "fraction", primary=True, description="mean of the benchmark scores"),
        MetricSpec("mmlu", "fraction"),
        MetricSpec("bbh", "fraction"),
        MetricSpec("drop", "fraction", description="DROP F1"),
        MetricSpec("drop_em", "fraction"),
        MetricSpec("humaneval", "fraction", description="pass@1"),
    )
    honours_limit = True  # --limit N scores N examples per lm-eval task
    description = "Alpaca instruction tuning, evaluated on INSTRUCTEVAL (MMLU 5-shot, BBH 3-shot, DROP 3-shot, HumanEval pass@1) with lm-eval"

    def option_names(self) -> tuple[str, ...]:
        return (*super().option_names(), "benchmarks", "allow_code_execution", "humaneval_max_tokens", "sandbox_timeout")

    def primary_metric(self, task: str) -> str:
        return "average"

    def train_config(self, preset: str, task: str, model: str) -> TrainConfig:
        return CPU_TRAIN_INSTRUCTEVAL if preset == "cpu" else super().train_config(preset, task, model)

    def preflight(self, options: dict[str, Any], preset: str, model: str) -> None:
        """Before any model loads: bad options, and HumanEval asked for by name without the opt-in (the
        default benchmark list only records it as skipped)."""
        parsed = EvalOptions.from_options(options, preset)
        if "benchmarks" in options and "humaneval" in parsed.benchmarks and not parsed.allow_code_execution:
            raise HarnessError("HumanEval runs generated code: add --suite-opt allow_code_execution=true "
                               "(it runs sandboxed), or leave humaneval out of benchmarks")
        if "humaneval" in parsed.scored:
            require_sandbox()  # no kernel isolation on this machine: refuse now, before anything trains

    def check_data(self, task: str, data: DataSource) -> None:
        super().check_data(task, data)
        if not data.offline:
            return
        assert data.root is not None
        needed = {
            "mmlu": [data.root / "mmlu" / "dev", data.root / "mmlu" / "test"],
            "bbh": [data.root / "bbh" / "bbh", data.root / "bbh" / "cot-prompts"],
            "drop": [data.root / "drop" / "drop_v0_dev.jsonl.gz"],
            "humaneval": [data.root / "humaneval" / "HumanEval.jsonl.gz"],
        }
        # suite options are not known here; check what the default benchmark list needs
        for benchmark in BENCHMARKS:
            for path in needed[benchmark]:
                if not path.exists():
                    raise HarnessError(f"{path} is missing ({benchmark}); {HOW_TO_GET}")
        check_benchmark_files(data.root)

    def load_eval_data(self, task: str, loaded: LoadedModel, train: TrainConfig, ctx: RunContext) -> tuple[Any, dict[str, Any]]:
        options = EvalOptions.from_options(ctx.options, ctx.preset)
        root = str(ctx.data.root) if ctx.data.offline else ""
        info: dict[str, Any] = {
            "benchmarks": list(options.benchmarks),
            "average_covers": list(options.scored),
            "eval_settings": "MMLU 5-shot loglikelihood; BBH 3-shot direct answer; DROP 3-shot F1; HumanEval 0-shot pass@1 greedy",
            "eval_source": root or "hub",
            "limit_scope": "examples per lm-eval task (each MMLU subject, each BBH task)" if train.limit else None,
        }
        if not options.scored:
            raise HarnessError("HumanEval alone needs --suite-opt allow_code_execution=true (nothing else to score)")
        if "humaneval" in options.benchmarks and not options.allow_code_execution:
            info["humaneval"] = "skipped: generated code runs only with --suite-opt allow_code_execution=true"
        return EvalPlan(options=options, data_root=root, limit=train.limit), info

    def evaluate(self, model: nn.Module, data: TaskData, loaded: LoadedModel, train: TrainConfig,
                 ctx: RunContext) -> dict[str, float]:
        from lm_eval import simple_evaluate
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager

        plan: EvalPlan = data.eval
        lm = HFLM(pretrained=model, tokenizer=loaded.tokenizer, batch_size=train.eval_batch_size)
        scores: dict[str, float] = {}
        with quiet_lm_eval(), lm_eval_bars(ctx.progress):
            manager = TaskManager(include_path=str(TASK_DIR), include_defaults=False, metadata={"data_root": plan.data_root})
            plain = [b for b in plan.options.benchmarks if b != "humaneval"]
            if plain:
                names = [n for b in plain for n in lm_eval_task_names(b)]
                t0 = time.perf_counter()
                out = simple_evaluate(model=lm, tasks=names, task_manager=manager, limit=plan.limit, log_samples=False,
                                      bootstrap_iters=0, random_seed=ctx.seed, numpy_random_seed=ctx.seed,
                                      torch_random_seed=ctx.seed, fewshot_random_seed=ctx.seed)
                results = out["results"]
                counts = {n: int(out["n-samples"][n]["effective"]) for n in names}
                for benchmark in plain:
                    tasks = lm_eval_task_names(benchmark)
                    metric = {"mmlu": "acc", "bbh": "exact_match", "drop": "f1"}[benchmark]
                    scores[benchmark], scores[f"{benchmark}_n"] = micro_average(results, counts, tasks, metric)
                    if benchmark == "drop":
                        scores["drop_em"] = micro_average(results, counts, tasks, "em")[0]
                    scores.update(per_task_scores(results, benchmark))
                scores["lm_eval_seconds"] = time.perf_counter() - t0
                save_lm_eval_results(ctx, {"tasks": names, "limit": plan.limit, **lm_eval_summary(out)})
            if "humaneval" in plan.options.scored:
                t0 = time.perf_counter()
                out = simple_evaluate(model=lm, tasks=["ie_humaneval"], task_manager=manager, limit=plan.limit,
                                      log_samples=True, bootstrap_iters=0,
                                      gen_kwargs={"max_gen_toks": plan.options.humaneval_max_tokens},
                                      random_seed=ctx.seed, numpy_random_seed=ctx.seed, torch_random_seed=ctx.seed)
                limits = SandboxLimits(timeout_s=plan.options.sandbox_timeout)
                samples = out["samples"]["ie_humaneval"]
                verdicts: list[dict[str, Any]] = []
                scores["humaneval"], outcomes = score_humaneval(samples, limits, verdicts)
                save_lm_eval_results(ctx, {"tasks": ["ie_humaneval"], "limit": plan.limit, **lm_eval_summary(out),
                                           "humaneval_sandbox": verdicts})
                scores["humaneval_n"] = float(len(samples))
                scores["humaneval_timeouts"] = float(outcomes["timeout"])
                scores["humaneval_seconds"] = time.perf_counter() - t0
        if not any(b in scores for b in BENCHMARKS):
            raise HarnessError("no INSTRUCTEVAL benchmark was scored (HumanEval alone needs allow_code_execution=true)")
        return summarise(scores)
