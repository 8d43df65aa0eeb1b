"""MT-Bench questions and model answers in FastChat's file formats.

Questions (``mt_bench/question.jsonl``: question_id, category, turns) and reference answers
(``mt_bench/reference_answer/<model>.jsonl``) are read as FastChat ships them; answers are written as
FastChat's ``gen_model_answer.py`` writes them (question_id, answer_id, model_id, choices[{index, turns}],
tstamp, one line per question, sorted by question id), so FastChat's ``gen_judgment.py`` and
``show_result.py`` read our files and we read theirs.

Answers are generated turn by turn with FastChat's per-category sampling temperatures (0 = greedy); turn 2
is asked after the model's own turn-1 answer, in the model's chat template (or the Alpaca template the
suite trains with, ``answer_template=alpaca``).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.datafiles import fail, require_fields
from harness.errors import HarnessError
from suites._shared.jsonl import read_jsonl, write_jsonl

if TYPE_CHECKING:
    from torch import nn

# FastChat llm_judge/common.py ``temperature_config``: creative categories sample, the others are (near)
# greedy; a category not listed gets 0.7 as in gen_model_answer.py.
CATEGORY_TEMPERATURE: dict[str, float] = {
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
}
DEFAULT_TEMPERATURE = 0.7
GREEDY_BELOW = 1e-4  # gen_model_answer.py: temperature < 1e-4 means do_sample=False
ANSWER_TEMPLATES = ("chat", "alpaca")

QUESTION_FILE = Path("mt_bench") / "question.jsonl"
REFERENCE_DIR = Path("mt_bench") / "reference_answer"
JUDGE_PROMPT_FILE = Path("judge_prompts.jsonl")

# The Alpaca template of suites/_shared/instruct.py, continued for a second turn: the earlier exchange is kept
# as instruction/response pairs so a model tuned on Alpaca sees the format it was trained on.
ALPACA_SYSTEM = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
)
ALPACA_TURN = "### Instruction:\n{instruction}\n\n### Response:\n"
ALPACA_STOP = "### Instruction:"

# shortuuid's alphabet: FastChat's answer ids are shortuuid.uuid() strings of 22 characters
_ID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


@dataclass(frozen=True)
class Question:
    question_id: int
    category: str
    turns: tuple[str, ...]
    required_temperature: float | None = None  # FastChat honours this field when a question file sets it

    @staticmethod
    def from_json(record: dict[str, Any], where: str) -> Question:
        if not isinstance(record, dict) or not isinstance(record.get("turns"), list) or not record["turns"] \
                or not all(isinstance(t, str) for t in record["turns"]):
            raise HarnessError(f"{where}: not an MT-Bench question (needs an object with a non-empty 'turns' list of text)")
        try:
            turns = tuple(str(t) for t in record["turns"])
            required = record.get("required_temperature")
            return Question(int(record["question_id"]), str(record["category"]), turns,
                            None if required is None else float(required))
        except (KeyError, TypeError, ValueError) as exc:
            raise HarnessError(f"{where}: not an MT-Bench question ({type(exc).__name__}: {exc})") from None


def load_questions(path: Path) -> list[Question]:
    questions = [Question.from_json(r, f"{path} line {i + 1}") for i, r in enumerate(read_jsonl(path))]
    if not questions:
        raise HarnessError(f"{path} holds no questions")
    ids = [q.question_id for q in questions]
    if len(set(ids)) != len(ids):
        raise HarnessError(f"{path} repeats question ids")
    return questions


def load_reference_answers(path: Path) -> dict[int, tuple[str, ...]]:
    """question_id -> the reference answer's turns (FastChat answer format, first choice)."""
    out: dict[int, tuple[str, ...]] = {}
    for number, r in enumerate(read_jsonl(path), start=1):
        where = f"record {number}"
        require_fields(r, {"question_id": int, "choices": list}, path, where)
        if not r["choices"]:
            raise fail(path, where, "'choices' is empty")
        choice = require_fields(r["choices"][0], {"turns": list}, path, f"{where} choices[0]")
        if not all(isinstance(t, str) for t in choice["turns"]):
            raise fail(path, where, "'turns' must be a list of strings")
        out[r["question_id"]] = tuple(choice["turns"])
    return out


def select_questions(questions: list[Question], limit: int | None) -> list[Question]:
    """The first ``limit`` questions taken round-robin over categories (file order inside each), so a
    smoke run covers every category instead of the first category only; all questions without a limit."""
    if limit is None or limit >= len(questions):
        return list(questions)
    by_category: dict[str, list[Question]] = {}
    for q in questions:
        by_category.setdefault(q.category, []).append(q)
    picked: list[Question] = []
    depth = 0
    while len(picked) < limit:
        for items in by_category.values():
            if depth < len(items) and len(picked) < limit:
                picked.append(items[depth])
        depth += 1
    return sorted(picked, key=lambda q: q.question_id)


def temperature_for(question: Question) -> float:
    if question.required_temperature is not None:
        return question.required_temperature
    return CATEGORY_TEMPERATURE.get(question.category, DEFAULT_TEMPERATURE)


def sampling_kwargs(temperature: float) -> dict[str, Any]:
    """``generate`` arguments for one temperature: greedy below 1e-4, else plain temperature sampling
    (top_p 1, no top-k, so the model's generation config cannot change what the temperature means)."""
    if temperature < GREEDY_BELOW:
        return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    return {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0}


# ------------------------------------------------------------------------------------------------------
# prompts
# ------------------------------------------------------------------------------------------------------


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def resolve_template(choice: str, tokenizer: Any) -> str:
    """``auto``: the model's chat template when its tokenizer has one, else the Alpaca template."""
    if choice == "auto":
        return "chat" if has_chat_template(tokenizer) else "alpaca"
    if choice == "chat" and not has_chat_template(tokenizer):
        raise HarnessError("answer_template=chat but the model's tokenizer has no chat template; use answer_template=alpaca")
    if choice not in ANSWER_TEMPLATES:
        raise HarnessError(f"answer_template must be auto, chat or alpaca, got {choice!r}")
    return choice


def conversation_prompt(tokenizer: Any, template: str, history: list[tuple[str, str]], user: str) -> str:
    """The prompt for the next assistant turn after ``history`` ((user, assistant) pairs)."""
    if template == "chat":
        messages: list[dict[str, str]] = []
        for asked, answered in history:
            messages += [{"role": "user", "content": asked}, {"role": "assistant", "content": answered}]
        messages.append({"role": "user", "content": user})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    parts = [ALPACA_SYSTEM]
    for asked, answered in history:
        parts.append(ALPACA_TURN.format(instruction=asked) + answered + "\n\n")
    parts.append(ALPACA_TURN.format(instruction=user))
    return "".join(parts)


def clean_output(text: str, template: str) -> str:
    """FastChat cuts at the template's stop string and strips; special tokens are already skipped."""
    if template == "alpaca":
        cut = text.find(ALPACA_STOP)
        if cut > 0:
            text = text[:cut]
    return text.strip()


# ------------------------------------------------------------------------------------------------------
# generation
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 1024  # gen_model_answer.py's default
    batch_size: int = 8
    template: str = "chat"

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise HarnessError("answer_max_tokens and the batch size must be positive")
        if self.template not in ANSWER_TEMPLATES:
            raise HarnessError(f"answer template must be one of {', '.join(ANSWER_TEMPLATES)}, got {self.template!r}")


def generate_batch(model: nn.Module, tokenizer: Any, prompts: list[str], temperature: float,
                   settings: GenerationSettings) -> list[str]:
    """New text for each prompt, left-padded in batches of ``settings.batch_size``."""
    import torch

    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    # a chat template already writes the special tokens it wants; the Alpaca prompt is plain text,
    # tokenised as in training (with the tokenizer's own BOS, if any)
    add_special = settings.template != "chat"
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    out: list[str] = []
    try:
        for start in range(0, len(prompts), settings.batch_size):
            chunk = prompts[start : start + settings.batch_size]
            enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=add_special).to(device)
            with torch.no_grad():
                generated = model.generate(**enc, max_new_tokens=settings.max_new_tokens, pad_token_id=pad_id,
                                           **sampling_kwargs(temperature))
            new = generated[:, enc["input_ids"].shape[1] :]
            out += [clean_output(t, settings.template) for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    finally:
        tokenizer.padding_side = side
    return out


def generate_answers(model: nn.Module, tokenizer: Any, questions: list[Question], settings: GenerationSettings,
                     seed: int) -> dict[int, list[str]]:
    """question_id -> the model's answers to each turn. Turn j of every question is generated before
    turn j+1 (which needs it), batched over questions that share a temperature."""
    import torch

    torch.manual_seed(seed)  # gen_model_answer.py seeds each choice; we have one choice
    answers: dict[int, list[str]] = {q.question_id: [] for q in questions}
    n_turns = max(len(q.turns) for q in questions)
    for turn in range(n_turns):
        asking = [q for q in questions if turn < len(q.turns)]
        by_temperature: dict[float, list[Question]] = {}
        for q in asking:
            by_temperature.setdefault(temperature_for(q), []).append(q)
        for temperature, group in sorted(by_temperature.items()):
            prompts = [
                conversation_prompt(tokenizer, settings.template,
                                    list(zip(q.turns[:turn], answers[q.question_id])), q.turns[turn])
                for q in group
            ]
            for q, text in zip(group, generate_batch(model, tokenizer, prompts, temperature, settings)):
                answers[q.question_id].append(text)
    return answers


# ------------------------------------------------------------------------------------------------------
# FastChat answer files
# ------------------------------------------------------------------------------------------------------


def short_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(22))


def answer_record(question: Question, model_id: str, turns: list[str], settings: GenerationSettings) -> dict[str, Any]:
    """One line of FastChat's model_answer/<model_id>.jsonl (plus the generation settings, which
    FastChat forks also record and FastChat's readers ignore)."""
    return {
        "question_id": question.question_id,
        "answer_id": short_id(),
        "model_id": model_id,
        "choices": [{"index": 0, "turns": list(turns)}],
        "tstamp": time.time(),
        "generate_params": {
            "temperature": temperature_for(question),
            "max_new_token": settings.max_new_tokens,
            "template": settings.template,
        },
    }


def write_answers(path: Path, records: list[dict[str, Any]]) -> Path:
    """FastChat's reorg_answer_file order: one line per question, sorted by question id."""
    latest = {int(r["question_id"]): r for r in records}
    return write_jsonl(path, (latest[q] for q in sorted(latest)))


def read_answers(path: Path) -> dict[int, dict[str, Any]]:
    """question_id -> answer record, as FastChat's load_model_answers reads a model's file."""
    return {int(r["question_id"]): r for r in read_jsonl(path)}


def answer_turns(record: dict[str, Any]) -> list[str]:
    return list(record["choices"][0]["turns"])
