"""Alpaca, the instruction-tuning data of the instruct suites: the files read offline (each malformed record
one error line), the hub dataset online, the prompt template, and examples encoded with the prompt's
tokens masked out of the loss."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.datafiles import cached, read_checked
from harness.errors import HarnessError
from harness.models import (
    hub_offline,
)
from harness.suite import DataSource

if TYPE_CHECKING:
    pass


# ------------------------------------------------------------------------------------------------------
# Alpaca data and prompt
# ------------------------------------------------------------------------------------------------------

ALPACA_HUB_ID = "yahma/alpaca-cleaned"
# Offline, the first of these found in <data root>/alpaca is used; the seed tasks are the last resort.
ALPACA_FILES = ("alpaca_data_cleaned.json", "alpaca_data.json", "seed_tasks.jsonl")
HOW_TO_GET_ALPACA = (
    "put an Alpaca-format JSON/JSONL (e.g. alpaca_data_cleaned.json from yahma/alpaca-cleaned) or the seed tasks "
    "(seed_tasks.jsonl from tatsu-lab/stanford_alpaca) in <data root>/alpaca, pass --suite-opt alpaca_path=FILE, "
    "or run online without --data-dir"
)

# Stanford Alpaca's template (train.py PROMPT_DICT), verbatim.
PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
IGNORE_INDEX = -100  # label value the cross-entropy ignores


@dataclass(frozen=True)
class AlpacaExample:
    instruction: str
    input: str
    output: str


def format_prompt(instruction: str, input: str = "") -> str:
    """The Alpaca prompt up to and including "### Response:\\n" (the model writes what follows)."""
    if input.strip():
        return PROMPT_WITH_INPUT.format(instruction=instruction, input=input)
    return PROMPT_NO_INPUT.format(instruction=instruction)


def examples_from_record(record: Any, where: str) -> list[AlpacaExample]:
    """One Alpaca record, or one seed task (several ``instances``), as examples; a record of the wrong
    shape (not an object, a missing or non-text field) is a one-line error naming it."""
    if not isinstance(record, dict):
        raise HarnessError(f"{where}: an Alpaca record must be a JSON object, got {type(record).__name__}")
    if "instruction" not in record:
        raise HarnessError(f"{where}: an Alpaca record needs 'instruction' (found keys {sorted(record)})")
    _text_field(record, "instruction", where)
    if "instances" in record:
        if not isinstance(record["instances"], list) or not record["instances"]:
            raise HarnessError(f"{where}: 'instances' must be a non-empty list of {{input, output}} objects")
        out = []
        for j, inst in enumerate(record["instances"]):
            if not isinstance(inst, dict) or "output" not in inst:
                raise HarnessError(f"{where} instance {j}: needs an object with 'output'")
            out.append(AlpacaExample(record["instruction"], _text_field(inst, "input", f"{where} instance {j}", True),
                                     _text_field(inst, "output", f"{where} instance {j}")))
        return out
    if "output" not in record:
        raise HarnessError(f"{where}: an Alpaca record needs 'output' (found keys {sorted(record)})")
    return [AlpacaExample(record["instruction"], _text_field(record, "input", where, True), _text_field(record, "output", where))]


def _text_field(record: dict[str, Any], name: str, where: str, optional: bool = False) -> str:
    value = record.get(name)
    if optional and value is None:
        return ""
    if not isinstance(value, str):
        raise HarnessError(f"{where}: '{name}' must be text, got {json.dumps(value)[:60]}")
    return value


def read_alpaca_file(path: Path) -> list[AlpacaExample]:
    """A JSON list or JSONL of Alpaca records (instruction, input, output) or of seed tasks; every record
    validated (read once per file identity and process)."""
    if not path.is_file():
        raise HarnessError(f"Alpaca data file {path} does not exist; {HOW_TO_GET_ALPACA}")
    return cached((path,), "alpaca", lambda: read_checked(path, lambda: _read_alpaca(path), "an Alpaca JSON list or JSONL"))


def _read_alpaca(path: Path) -> list[AlpacaExample]:
    text = path.read_bytes().decode("utf-8-sig")
    records: list[tuple[str, Any]] = []
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise HarnessError(f"{path} is not a JSON list ({exc.msg} at line {exc.lineno})") from None
        records = [(f"{path} record {i}", r) for i, r in enumerate(data)]
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append((f"{path}, line {number}", json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise HarnessError(f"{path}, line {number}: not JSON ({exc.msg}); expected a JSON list or JSONL") from None
    out: list[AlpacaExample] = []
    for where, record in records:
        out.extend(examples_from_record(record, where))
    if not out:
        raise HarnessError(f"{path} holds no Alpaca examples")
    return out


def offline_alpaca_file(data: DataSource) -> Path:
    assert data.root is not None
    folder = data.folder("alpaca", HOW_TO_GET_ALPACA)
    for name in ALPACA_FILES:
        if (folder / name).is_file():
            return folder / name
    raise HarnessError(f"no Alpaca data in {folder} (looked for {', '.join(ALPACA_FILES)}); {HOW_TO_GET_ALPACA}")


def load_alpaca(data: DataSource, options: dict[str, Any]) -> tuple[list[AlpacaExample], dict[str, Any]]:
    """The training examples and where they came from (recorded in data_info)."""
    if options.get("alpaca_path"):
        path = Path(str(options["alpaca_path"])).expanduser()
        return read_alpaca_file(path), {"train_source": str(path)}
    if data.offline:
        path = offline_alpaca_file(data)
        info: dict[str, Any] = {"train_source": str(path)}
        if path.name == "seed_tasks.jsonl":
            info["note"] = (
                "trained on the 175 Alpaca seed tasks (the 52k Alpaca file is not available offline): "
                "a smoke-scale run, not comparable with the papers' Alpaca training"
            )
        return read_alpaca_file(path), info
    hub_id = str(options.get("alpaca_dataset") or ALPACA_HUB_ID)
    if hub_offline():
        raise HarnessError(f"HF_HUB_OFFLINE is set and no --data-dir was given: cannot load {hub_id}; {HOW_TO_GET_ALPACA}")
    from datasets import load_dataset

    try:
        rows = load_dataset(hub_id, split="train")
    except Exception as exc:  # network errors come in many types
        raise HarnessError(f"could not load {hub_id} from the hub ({type(exc).__name__}); {HOW_TO_GET_ALPACA}") from None
    examples = [AlpacaExample(r["instruction"], r.get("input") or "", r["output"]) for r in rows]
    return examples, {"train_source": f"hub:{hub_id}"}


# ------------------------------------------------------------------------------------------------------
# tokenisation and batches
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncodedExample:
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]  # IGNORE_INDEX on the prompt (and padding), token ids on the response


def encode_example(tokenizer: Any, example: AlpacaExample, cutoff: int) -> EncodedExample | None:
    """prompt + response + EOS, cut to ``cutoff`` tokens, loss on the response only.

    Like alpaca-lora we tokenise the whole text and mask as many tokens as the prompt alone has, so the
    response is tokenised exactly as it follows the prompt at inference time. None when truncation left
    no response token (the example would teach nothing).
    """
    prompt = format_prompt(example.instruction, example.input)
    prompt_ids = list(tokenizer(prompt)["input_ids"])
    # tokenizers that close a text with a special token ([SEP], </s>) put it after the response too
    special = set(tokenizer.all_special_ids)
    while prompt_ids and prompt_ids[-1] in special:
        prompt_ids.pop()
    prompt_len = len(prompt_ids)
    full = list(tokenizer(prompt + example.output)["input_ids"])
    if tokenizer.eos_token_id is not None and (not full or full[-1] != tokenizer.eos_token_id):
        full.append(tokenizer.eos_token_id)
    full = full[:cutoff]
    if len(full) <= prompt_len:
        return None
    labels = [IGNORE_INDEX] * prompt_len + full[prompt_len:]
    return EncodedExample(tuple(full), tuple(labels))


def encode_examples(tokenizer: Any, examples: list[AlpacaExample], cutoff: int) -> tuple[list[EncodedExample], int]:
    """Encoded examples and how many were dropped because the prompt filled the cutoff."""
    encoded = [encode_example(tokenizer, ex, cutoff) for ex in examples]
    kept = [e for e in encoded if e is not None]
    return kept, len(encoded) - len(kept)


def collate(examples: list[EncodedExample], pad_id: int, device: Any) -> dict[str, Any]:
    """Right-padded input_ids / attention_mask / labels (IGNORE_INDEX on padding)."""
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "labels": labels.to(device),
        "num_samples": len(examples),
    }
