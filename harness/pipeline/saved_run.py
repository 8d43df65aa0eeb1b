"""Runs that travel: ``run --save-adapters`` keeps, beside each record, a folder ``<record>.adapter/``:

- ``harness_run.json``: the run spec (suite, task, adapter, model, options, seed), the head's modules,
  the model's source, whether the folder is a peft adapter;
- ``adapter.safetensors`` (the adapter's tensors, harness names) and ``head.safetensors`` (the trained
  task head);
- the tokenizer (``AutoTokenizer.from_pretrained(folder)``), when the suite has one;
- for peft-backed methods (LoRA, DoRA, PiSSA, Lily, ...) also ``adapter_config.json`` and
  ``adapter_model.safetensors`` in peft's layout, the head as ``modules_to_save``: load with
  ``PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(base, num_labels=N), folder)``
  (``base``: ``base_model_name_or_path`` in ``adapter_config.json``).

Every method (peft-backed or not) reloads with :func:`load_saved_run`: the suite's model, the adapter
attached as in training, its tensors and the head loaded back, in eval mode.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.pipeline.trained import TrainedRun

RUN_FILE = "harness_run.json"


def saved_folder(record_path: Path) -> Path:
    return record_path.with_suffix(".adapter")


def _head_state(model: Any, head_modules: tuple[str, ...]) -> dict[str, Any]:
    modules = dict(model.named_modules())
    out = {}
    for name in head_modules:
        module = modules.get(name)
        if module is None:
            continue
        for pname, p in module.named_parameters():
            out[f"{name}.{pname}"] = p.detach().to("cpu").contiguous().clone()
    return out


def save_run_folder(run: TrainedRun, folder: Path, adapter_state: dict[str, Any]) -> Path:
    """Write the folder of a trained run (``harness.pipeline.trained.TrainedRun``) after its final evaluation."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    head_modules = tuple(run.loaded.head_modules)
    head = _head_state(run.model, head_modules)
    save_file(adapter_state, str(folder / "adapter.safetensors"))
    save_file(head, str(folder / "head.safetensors"))
    tokenizer = getattr(run.loaded, "tokenizer", None)
    if tokenizer is not None and hasattr(tokenizer, "save_pretrained"):
        try:
            tokenizer.save_pretrained(str(folder))
        except Exception:  # a processor that cannot save itself: the model name is in harness_run.json
            pass
    source = _weights_source(run.loaded.info) or run.spec.model
    peft_saved = _save_peft(run.model, folder, head, head_modules, source, run.loaded.task_type)
    meta = {
        "format": 1,
        "spec": run.spec.to_dict(),
        "model": run.spec.model,
        "model_source": str(source),
        "family": run.loaded.family,
        "head_modules": list(head_modules),
        "task_type": run.loaded.task_type,
        "total_steps": int(run.total_steps or 1),
        "num_labels": getattr(getattr(run.model, "config", None), "num_labels", None),
        "peft": peft_saved,
        "load_with": ("PeftModel.from_pretrained(base, folder) or harness.load_saved_run(folder)" if peft_saved
                      else "harness.load_saved_run(folder)"),
    }
    (folder / RUN_FILE).write_text(json.dumps(meta, indent=1, default=str) + "\n", encoding="utf-8")
    return folder


def _weights_source(info: dict[str, Any]) -> str | None:
    """The folder or hub id the weights came from, as the suite recorded it (``local:/x``, ``hub:org/m``)."""
    weights = str(info.get("weights") or "")
    for prefix in ("local folder ", "local:", "hub:"):
        if weights.startswith(prefix):
            return weights[len(prefix):]
    return None


def _save_peft(model: Any, folder: Path, head: dict[str, Any], head_modules: tuple[str, ...], source: Any,
               task_type: str) -> bool:
    """peft's own layout when the adapter is a peft tuner injected into ``model`` (else False)."""
    config = (getattr(model, "peft_config", None) or {}).get("default")
    if config is None:
        return False
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    try:
        state = get_peft_model_state_dict(model, adapter_name="default")
    except Exception:  # a tuner peft cannot export this way: the harness loader still works
        return False
    tensors = {"base_model.model." + k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    tensors.update({"base_model.model." + k: v for k, v in head.items()})
    data = config.to_dict()
    data = {k: (sorted(v) if isinstance(v, set) else v) for k, v in data.items()}
    data["base_model_name_or_path"] = str(source)
    data["modules_to_save"] = list(head_modules) or None
    if task_type:
        data["task_type"] = task_type
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")
    return True


def load_saved_run(path: str | Path, device: str = "cpu") -> Any:
    """The trained model of a run saved with ``--save-adapters``: ``path`` is its ``<record>.adapter/``
    folder or the record (.json). Any adapter, peft-backed or not: the suite loads the base model, the
    adapter is attached as in training and its tensors and the head are loaded back; eval mode."""
    import tempfile

    import torch
    from safetensors.torch import load_file

    from harness.pipeline.attach import attach, build_adapter
    from harness.registry import SUITES
    from harness.spec import RunSpec
    from harness.suite import RunContext

    folder = Path(path)
    if folder.suffix == ".json":
        folder = saved_folder(folder)
    if not (folder / RUN_FILE).is_file():
        raise HarnessError(f"{folder} is not a saved run (no {RUN_FILE}; run with --save-adapters)")
    meta = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
    spec = RunSpec.from_dict(meta["spec"])
    suite = SUITES.get(spec.suite)()
    ctx = RunContext(device=torch.device(device), data=None, seed=spec.seed, preset=spec.preset,  # type: ignore[arg-type]
                     work_dir=Path(tempfile.mkdtemp(prefix="harness-load-")), options=dict(spec.suite_options),
                     run_id=spec.run_id, progress=False)
    loaded = suite.load_model(spec.model, spec.task, ctx)
    adapter = build_adapter(spec.adapter, dict(spec.adapter_options))
    torch.manual_seed(spec.seed)
    model = attach(adapter, loaded.model, family=loaded.family, head_modules=loaded.head_modules,
                   total_steps=int(meta.get("total_steps") or 1), seed=spec.seed, task_type=loaded.task_type)
    adapter.load_adapter_state_dict(model, load_file(str(folder / "adapter.safetensors")))
    head = load_file(str(folder / "head.safetensors"))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in head.items():
            if name not in params:
                raise HarnessError(f"{folder}: head tensor {name} not in the model")
            params[name].copy_(tensor)
    model.to(device).eval()
    model.harness_adapter = adapter  # merge()/unmerge() and the analyses, if wanted
    return model
