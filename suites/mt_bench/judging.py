"""MT-Bench single-answer grading as FastChat does it (llm_judge/common.py, gen_judgment.py, show_result.py).

Each question is judged twice: turn 1 with ``single-v1`` (``single-math-v1`` with the reference answer for
math, reasoning and coding) and turn 2 with the ``-multi-turn`` variants, whose prompt shows both turns.
The rating is the first ``[[x]]`` in the judgment, else the first ``[x]``, read as a number by a regular
expression (never by evaluating judge text) and kept only on FastChat's 1-10 scale; none, or one off the
scale, is -1, which the scores exclude (show_result.py drops ``score == -1``). Each judgment line says why
(``rating_status``: ok, no_rating, off_scale, judge_error); a judge reply the client cannot use (an HTTP
error after the retries, an HTML or empty body, JSON without ``choices``) is a ``judge_error`` whose
judgment text is FastChat's ``$ERROR$`` followed by the reason. The overall score is the mean of all valid judgments of
both turns; per turn and per category likewise.

The judges themselves (an OpenAI-compatible endpoint or a local causal LM) are in ``judges.py``. Judgments
are cached on disk by (question, turn, judge, answer hash,
prompt hash), so judging the same answers again asks the judge nothing; only valid ratings are cached,
so a rerun asks again exactly for the judgments that failed.
Judgment lines are appended to FastChat's ``model_judgment/<judge>_single.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.datafiles import require_fields
from harness.errors import HarnessError
from suites._shared.jsonl import read_jsonl
from suites.mt_bench.answers import Question
from suites.mt_bench.judges import JudgeBackend, JudgeIdentity, is_judge_error, judge_error

NEED_REF_CATEGORIES = ("math", "reasoning", "coding")  # FastChat NEED_REF_CATS
ONE_SCORE = re.compile(r"\[\[(\d+\.?\d*)\]\]")
ONE_SCORE_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")
UNPARSEABLE = -1
RATING_MIN, RATING_MAX = 1.0, 10.0  # FastChat's single-answer scale
RATING_OK, NO_RATING, OFF_SCALE, JUDGE_ERROR = "ok", "no_rating", "off_scale", "judge_error"
RATING_PREFILL = "Rating: [["  # FastChat's own example of the format, as the start of a local judge's reply


# ------------------------------------------------------------------------------------------------------
# prompts and parsing
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgePrompt:
    name: str
    type: str
    system_prompt: str
    prompt_template: str
    output_format: str


def load_judge_prompts(path: Path) -> dict[str, JudgePrompt]:
    prompts = {}
    for number, r in enumerate(read_jsonl(path), start=1):
        require_fields(r, {k: str for k in ("name", "type", "system_prompt", "prompt_template", "output_format")},
                       path, f"record {number}")
        prompts[r["name"]] = JudgePrompt(r["name"], r["type"], r["system_prompt"], r["prompt_template"], r["output_format"])
    missing = [n for n in ("single-v1", "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn") if n not in prompts]
    if missing:
        raise HarnessError(f"{path} lacks the judge prompts {', '.join(missing)}")
    return prompts


def needs_reference(category: str) -> bool:
    return category in NEED_REF_CATEGORIES


def prompt_name(category: str, turn: int) -> str:
    """gen_judgment.py's make_judge_single: default / math, each with a multi-turn variant."""
    base = "single-math-v1" if needs_reference(category) else "single-v1"
    return base if turn == 1 else f"{base}-multi-turn"


def user_prompt(prompt: JudgePrompt, question: Question, answers: list[str], reference: tuple[str, ...] | None,
                turn: int) -> str:
    """run_judge_single's user prompt: turn 1 shows the first question and answer, turn 2 the whole
    conversation; ``ref_answer_1/2`` are filled when a reference is given."""
    kwargs: dict[str, str] = {}
    if reference is not None:
        kwargs["ref_answer_1"] = reference[0]
        kwargs["ref_answer_2"] = reference[1] if len(reference) > 1 else ""
    if turn == 1:
        return prompt.prompt_template.format(question=question.turns[0], answer=answers[0], **kwargs)
    return prompt.prompt_template.format(question_1=question.turns[0], question_2=question.turns[1],
                                         answer_1=answers[0], answer_2=answers[1], **kwargs)


def read_rating(judgment: str) -> tuple[float | int, str]:
    """(rating, status): the first ``[[rating]]``, else the first ``[rating]``, as a number on the 1-10
    scale; (-1, no_rating) when there is none, (-1, off_scale) for 0, 11, 1e9 or 5,000 digits."""
    if not isinstance(judgment, str):
        return UNPARSEABLE, NO_RATING
    match = ONE_SCORE.search(judgment) or ONE_SCORE_BACKUP.search(judgment)
    if match is None:
        return UNPARSEABLE, NO_RATING
    text = match.group(1)
    if len(text) > 12:  # no rating on the scale needs more digits; float() of 5,000 digits is inf anyway
        return UNPARSEABLE, OFF_SCALE
    value = float(text)  # digits and at most one dot (the pattern): "07" is 7, "7." is 7.0
    if not RATING_MIN <= value <= RATING_MAX:
        return UNPARSEABLE, OFF_SCALE
    return (int(value) if "." not in text else value), RATING_OK


def parse_rating(judgment: str) -> float | int:
    """The rating of read_rating; -1 when there is none on the scale."""
    return read_rating(judgment)[0]


# ------------------------------------------------------------------------------------------------------
# cache
# ------------------------------------------------------------------------------------------------------


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class JudgmentCache:
    """Append-only JSONL of judgments keyed by (question, turn, judge, answer hash, prompt hash).

    The prompt hash covers what the judge saw (the judge prompt, question, reference and answers), so a
    changed template or reference answer is a miss, never a stale hit. Threads share one instance.
    """

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, Any]] | None = None

    @staticmethod
    def key(question_id: int, turn: int, judge: JudgeIdentity, answers: list[str], system: str, user: str) -> str:
        answer_sha = sha256(json.dumps(answers[:turn], ensure_ascii=False))
        prompt_sha = sha256(system + "\x00" + user)
        return sha256(json.dumps([question_id, turn, judge.key, answer_sha, prompt_sha]))

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            self._entries = {}
            if self.path.is_file():
                for line in self.path.read_text(encoding="utf-8").splitlines():
                    try:
                        entry = json.loads(line)
                        self._entries[entry["key"]] = entry
                    except (json.JSONDecodeError, KeyError, TypeError):
                        continue  # a line cut by a killed writer is only a miss
        return self._entries

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            return self._load().get(key)

    def put(self, key: str, entry: dict[str, Any]) -> None:
        entry = {"key": key, **entry}
        with self._lock:
            self._load()[key] = entry
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def __len__(self) -> int:
        with self._lock:
            return len(self._load())


# ------------------------------------------------------------------------------------------------------
# judging
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    """One judgment to make: a question's turn 1 or turn 2 with the prompt FastChat uses for it."""

    question: Question
    turn: int
    prompt: JudgePrompt
    system: str
    user: str
    answers: tuple[str, ...]


def build_matches(questions: list[Question], answers: dict[int, list[str]], prompts: dict[str, JudgePrompt],
                  references: dict[int, tuple[str, ...]]) -> list[Match]:
    matches = []
    for q in questions:
        given = answers.get(q.question_id)
        if given is None:
            raise HarnessError(f"no answer to MT-Bench question {q.question_id}")
        reference = None
        if needs_reference(q.category):
            reference = references.get(q.question_id)
            if reference is None:
                raise HarnessError(f"MT-Bench question {q.question_id} ({q.category}) has no reference answer")
        for turn in range(1, min(2, len(q.turns), len(given)) + 1):
            prompt = prompts[prompt_name(q.category, turn)]
            text = user_prompt(prompt, q, given, reference, turn)
            matches.append(Match(q, turn, prompt, prompt.system_prompt, text, tuple(given)))
    return matches


def judgment_record(match: Match, model_id: str, judge: JudgeIdentity, judgment: str, score: float | int,
                    status: str = RATING_OK) -> dict[str, Any]:
    """One line of FastChat's model_judgment/<judge>_single.jsonl (play_a_match_single), plus
    ``rating_status`` (why a score is -1; FastChat's readers ignore it)."""
    return {
        "question_id": match.question.question_id,
        "model": model_id,
        "judge": [judge.model, match.prompt.name],
        "user_prompt": match.user,
        "judgment": judgment,
        "score": score,
        "turn": match.turn,
        "tstamp": time.time(),
        "rating_status": status,
    }


@dataclass
class JudgingReport:
    records: list[dict[str, Any]]
    asked: int  # judgments requested from the judge in this call (cache misses it was asked for)
    cached: int  # judgments served from the cache
    errors: int  # judge errors (scored -1, not cached)

    @property
    def failed(self) -> int:
        """Judgments without a rating on the scale (judge errors, no rating, off the scale)."""
        return sum(1 for r in self.records if r.get("rating_status", RATING_OK) != RATING_OK)


def judge_matches(matches: list[Match], backend: JudgeBackend, cache: JudgmentCache, model_id: str,
                  judgment_file: Path | None = None, batch_size: int = 16, give_up_after: int = 16) -> JudgingReport:
    """Judge every match, asking the backend only for those not in the cache. Judgments are cached
    and appended to ``judgment_file`` batch by batch, so an interrupted run keeps what it paid for.
    After ``give_up_after`` judge errors without one good reply the rest is not asked (recorded as
    judge errors): a judge answering HTTP 500 to everything fails the run quickly."""
    judge = backend.identity
    keys = [JudgmentCache.key(m.question.question_id, m.turn, judge, list(m.answers), m.system, m.user) for m in matches]
    results: dict[int, tuple[str, float | int, str]] = {}
    for i, key in enumerate(keys):
        hit = cache.get(key)
        if hit is not None:
            rating, status = read_rating(hit.get("judgment"))  # re-read: an old cache may hold any score
            if status == RATING_OK:
                results[i] = (hit["judgment"], rating, status)
    pending = [i for i in range(len(matches)) if i not in results]
    errors = 0
    out_lines: list[dict[str, Any]] = [judgment_record(matches[i], model_id, judge, *results[i]) for i in sorted(results)]
    append_lines(judgment_file, out_lines)
    answered = sent = 0
    for start in range(0, len(pending), batch_size):
        chunk = pending[start : start + batch_size]
        if errors >= give_up_after and answered == 0:
            reason = judge_error(f"not asked: the judge failed {errors} judgments without one good reply")
            replies = [reason] * len(chunk)
        else:
            sent += len(chunk)
            replies = list(backend.complete([(matches[i].system, matches[i].user) for i in chunk]))
            if len(replies) != len(chunk):
                replies = [judge_error(f"the backend returned {len(replies)} replies for {len(chunk)} prompts")] * len(chunk)
        lines = []
        for i, reply in zip(chunk, replies):
            if is_judge_error(reply):
                reply = reply if isinstance(reply, str) else judge_error(f"reply of type {type(reply).__name__}")
                score, status = UNPARSEABLE, JUDGE_ERROR
                errors += 1
            else:
                score, status = read_rating(reply)
                answered += 1
            results[i] = (reply, score, status)
            if status == RATING_OK:  # only valid ratings: a rerun asks again for the rest
                m = matches[i]
                cache.put(keys[i], {"question_id": m.question.question_id, "turn": m.turn, "judge": judge.key,
                                    "prompt": m.prompt.name, "judgment": reply, "score": score})
            lines.append(judgment_record(matches[i], model_id, judge, reply, score, status))
        append_lines(judgment_file, lines)
    records = [judgment_record(matches[i], model_id, judge, *results[i]) for i in range(len(matches))]
    return JudgingReport(records=records, asked=sent, cached=len(matches) - len(pending), errors=errors)


def drop_model_lines(path: Path, model_id: str) -> None:
    """Remove an earlier attempt's lines of ``model_id`` from a judgment file, so that after judging it
    holds exactly one line per judgment of this model (FastChat's show_result would count repeats)."""
    if not path.is_file():
        return
    kept, dropped = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            mine = json.loads(line).get("model") == model_id
        except (json.JSONDecodeError, AttributeError):
            mine = True  # a line cut by a killed writer: nobody can read it
        dropped |= mine
        if not mine:
            kept.append(line)
    if dropped:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        os.replace(tmp, path)


def append_lines(path: Path | None, records: list[dict[str, Any]]) -> None:
    if path is None or not records:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


# ------------------------------------------------------------------------------------------------------
# scores
# ------------------------------------------------------------------------------------------------------


def mean_or_nan(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def aggregate_scores(judgments: list[dict[str, Any]], categories: dict[int, str]) -> dict[str, float]:
    """show_result.py's single-answer table: -1 judgments dropped; ``overall`` is the mean of all
    valid judgments (both turns), ``turn1``/``turn2`` per turn, ``category_<name>`` per category over
    both turns. NaN where nothing valid is left (the record stores it as null)."""
    valid = [j for j in judgments if j["score"] != UNPARSEABLE and j.get("rating_status", RATING_OK) == RATING_OK]
    scores: dict[str, float] = {
        "overall": mean_or_nan([float(j["score"]) for j in valid]),
        "turn1": mean_or_nan([float(j["score"]) for j in valid if j["turn"] == 1]),
        "turn2": mean_or_nan([float(j["score"]) for j in valid if j["turn"] == 2]),
    }
    for category in sorted(set(categories.values())):
        scores[f"category_{category}"] = mean_or_nan(
            [float(j["score"]) for j in valid if categories.get(int(j["question_id"])) == category]
        )
    scores["judgments"] = float(len(judgments))
    scores["judgments_valid"] = float(len(valid))
    scores["judgments_unparseable"] = float(len(judgments) - len(valid))
    for status in (NO_RATING, OFF_SCALE, JUDGE_ERROR):
        scores[f"judgments_{status}"] = float(sum(1 for j in judgments if j.get("rating_status") == status))
    return scores
