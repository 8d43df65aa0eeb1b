"""Around the lm-eval calls: the ie_* task names per benchmark, averages over a benchmark's sub-tasks, lm-eval
kept quiet (its logging and progress bars), its results kept beside the record, and HumanEval's generated
programs scored in the sandbox."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.suite import RunContext
from suites.instructeval.lm_eval_tasks import ie_utils
from suites.instructeval.sandbox import SandboxLimits, run_untrusted

if TYPE_CHECKING:
    pass


BENCHMARKS = ("mmlu", "bbh", "drop", "humaneval")


def lm_eval_task_names(benchmark: str) -> list[str]:
    if benchmark == "mmlu":
        return [f"ie_mmlu_{s}" for s in ie_utils.MMLU_SUBJECTS]
    if benchmark == "bbh":
        return [f"ie_bbh_{t}" for t in ie_utils.BBH_TASKS]
    return [f"ie_{benchmark}"]


def micro_average(results: dict[str, dict[str, Any]], counts: dict[str, int], tasks: list[str], metric: str) -> tuple[float, int]:
    """The metric over all examples of ``tasks`` (each task's mean weighted by its example count)."""
    total = sum(counts[t] for t in tasks)
    if total == 0:
        raise HarnessError(f"lm-eval scored no examples for {tasks[0]}...")
    return sum(float(results[t][f"{metric},none"]) * counts[t] for t in tasks) / total, total


def summarise(benchmark_scores: dict[str, float]) -> dict[str, float]:
    """The sub-scores plus their unweighted mean ``average`` and how many it covers."""
    out = dict(benchmark_scores)
    main = [benchmark_scores[b] for b in BENCHMARKS if b in benchmark_scores]
    out["average"] = sum(main) / len(main)
    out["average_of"] = float(len(main))
    return out


@contextlib.contextmanager
def quiet_lm_eval() -> Iterator[None]:
    """lm-eval logs every task it builds; keep warnings and errors only."""
    logger = logging.getLogger("lm_eval")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


# lm-eval's modules that draw bars (tqdm imported by name). TQDM_DISABLE cannot silence them: tqdm reads
# it when it is imported, lm-eval passes ``disable=`` explicitly, and building a task's requests draws a
# bar that has no switch at all.
LM_EVAL_BAR_MODULES = ("lm_eval.api.task", "lm_eval.api.model", "lm_eval.models.huggingface")


@contextlib.contextmanager
def lm_eval_bars(enabled: bool) -> Iterator[None]:
    """``--no-progress`` reaches lm-eval's bars: while disabled, those modules' ``tqdm`` draws nothing."""
    if enabled:
        yield
        return
    import importlib

    from tqdm import tqdm

    def silent_tqdm(*args: Any, **kwargs: Any) -> Any:
        kwargs["disable"] = True
        return tqdm(*args, **kwargs)

    patched = []
    for name in LM_EVAL_BAR_MODULES:
        module = importlib.import_module(name)
        if getattr(module, "tqdm", None) is not None:
            patched.append((module, module.tqdm))
            module.tqdm = silent_tqdm
    try:
        yield
    finally:
        for module, original in patched:
            module.tqdm = original


def per_task_scores(results: dict[str, dict[str, Any]], benchmark: str) -> dict[str, float]:
    """lm-eval's score of each MMLU subject / BBH task, as record metrics."""
    if benchmark == "mmlu":
        return {f"mmlu_subject_{s}": float(results[f"ie_mmlu_{s}"]["acc,none"]) for s in ie_utils.MMLU_SUBJECTS}
    if benchmark == "bbh":
        return {f"bbh_task_{t}": float(results[f"ie_bbh_{t}"]["exact_match,none"]) for t in ie_utils.BBH_TASKS}
    return {}


def lm_eval_results_path(ctx: RunContext) -> Path | None:
    if ctx.record_path is None:
        return None
    return ctx.record_path.with_name(ctx.record_path.stem + ".lm-eval-results.jsonl")


def save_lm_eval_results(ctx: RunContext, entry: dict[str, Any]) -> None:
    """Add one lm-eval call's results to the file beside the record. Lines of an earlier attempt of this
    run (another work_dir) are dropped, so the file describes the run the record describes."""

    from lm_eval.utils import handle_non_serializable

    from suites._shared.jsonl import write_jsonl

    path = lm_eval_results_path(ctx)
    if path is None:
        return
    attempt = ctx.work_dir.name
    kept = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                old = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(old, dict) and old.get("attempt") == attempt:
                kept.append(old)
    line = json.loads(json.dumps({"run_id": ctx.run_id, "attempt": attempt, **entry}, default=handle_non_serializable))
    write_jsonl(path, [*kept, line])


def lm_eval_summary(out: dict[str, Any]) -> dict[str, Any]:
    """What of simple_evaluate's output is worth keeping (the samples are not: prompts of every question)."""
    keep = ("results", "groups", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better", "n-samples",
            "config", "git_hash", "date", "lm_eval_version")
    return {k: out[k] for k in keep if k in out}


def score_humaneval(samples: list[dict[str, Any]], limits: SandboxLimits,
                    verdicts: list[dict[str, Any]] | None = None) -> tuple[float, dict[str, int]]:
    """pass@1 of greedy completions (one per problem), each run in the sandbox; ``verdicts`` collects
    each problem's outcome when given."""
    outcomes: dict[str, int] = {"passed": 0, "failed": 0, "timeout": 0}
    for sample in samples:
        completion = sample["filtered_resps"][0]
        if isinstance(completion, list):
            completion = completion[0]
        program, check = ie_utils.humaneval_parts(sample["doc"], str(completion))
        result = run_untrusted(program, limits, check=check)  # passed only when check() returned
        outcomes[result.status] += 1
        if verdicts is not None:
            verdicts.append({"task_id": sample["doc"].get("task_id"), "status": result.status, "reason": result.reason,
                             "completion": str(completion)})
    return outcomes["passed"] / max(1, len(samples)), outcomes
