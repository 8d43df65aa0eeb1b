"""Contract tests generated from the registries: every registered adapter and suite is checked
without anyone writing a test for it (timm-style)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from harness.adapter import Adapter, LowRankConfig
from harness.parameters import module_param_ids
from harness.pipeline.attach import attach
from harness.pipeline.measure import count_parameters
from harness.registry import ADAPTERS, SUITES
from harness.suite import Suite
from tests.tiny_models import tiny_bert_classifier

HEAD = ("classifier", "bert.pooler")


def _encoder_adapter_names() -> list[str]:
    return [n for n in ADAPTERS.names() if "encoder" in ADAPTERS.get(n).families]


def _apply(name: str, model: torch.nn.Module) -> tuple[Adapter, torch.nn.Module, frozenset[int]]:
    cls = ADAPTERS.get(name)
    options = {"rank": 8, "targets": ("query", "value")} if issubclass(cls.config_cls, LowRankConfig) else {}
    fields = {f.name for f in dataclasses.fields(cls.config_cls)}
    adapter = cls(cls.config_cls(**{k: v for k, v in options.items() if k in fields}))
    head_ids = module_param_ids(model, HEAD)
    model = attach(adapter, model, family="encoder", head_modules=HEAD, total_steps=20)
    if adapter.trains_head:
        for p in model.parameters():
            if id(p) in head_ids:
                p.requires_grad_(True)
    return adapter, model, head_ids


@pytest.mark.parametrize("name", ADAPTERS.names())
def test_adapter_declares_a_frozen_config_and_description(name):
    cls = ADAPTERS.get(name)
    assert issubclass(cls, Adapter) and cls.name == name
    assert cls.description, f"{name} needs a one-line description for `harness ls adapters`"
    config = cls.config_cls()
    assert dataclasses.is_dataclass(config)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(config, dataclasses.fields(config)[0].name if dataclasses.fields(config) else "x", None)


@pytest.mark.parametrize("name", _encoder_adapter_names())
def test_adapter_trains_and_only_trainable_tensors_change(name):
    torch.manual_seed(0)
    model = tiny_bert_classifier()
    adapter, model, head_ids = _apply(name, model)
    counts = count_parameters(model, head_ids)
    assert counts.trainable_total > 0
    frozen_before = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = adapter.build_optimizer(model, [{"params": trainable, "lr": 1e-2}], 1e-2, 0.0) or torch.optim.AdamW(trainable, lr=1e-2)
    ids = torch.randint(0, 100, (4, 8))
    labels = torch.tensor([0, 1, 0, 1])
    model.train()
    for step in range(3):
        adapter.on_step_begin(model, step)
        loss = model(input_ids=ids, labels=labels).loss
        extra = adapter.extra_loss(model)
        if extra is not None:
            loss = loss + extra
        loss.backward()
        for n, p in model.named_parameters():
            if not p.requires_grad:
                assert p.grad is None, f"{name}: frozen tensor {n} received a gradient"
        opt.step()
        adapter.on_step_end(model, step)
        opt.zero_grad()
        assert torch.isfinite(loss)
    for n, p in model.named_parameters():
        if n in frozen_before:
            assert torch.equal(frozen_before[n], p.detach()), f"{name}: frozen {n} changed"


def _perturb(model: torch.nn.Module, head_ids: frozenset[int], seed: int = 5, std: float = 0.3) -> None:
    """Move every adapter tensor (not the head) away from its init, so outputs depend on all of them."""
    g = torch.Generator().manual_seed(seed)
    seen: set[int] = set()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad and id(p) not in head_ids and id(p) not in seen:
                seen.add(id(p))
                p.add_(std * torch.randn(p.shape, generator=g).to(p.dtype))


def _logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """The last hidden states (LayerNorm output, of order 1) next to the logits: the tiny random head
    squashes the logits to ~1e-2, too small for the changes to stand far above the tolerances."""
    model.eval()
    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True)
    return torch.cat([out.hidden_states[-1].flatten(), out.logits.flatten()])


@pytest.mark.parametrize("name", _encoder_adapter_names())
def test_adapter_state_round_trip(name, tmp_path):
    """Reload the base only (a fresh model with the same pretrained weights and head): its outputs differ
    from the trained one's; load the saved adapter state: they are equal. An ``adapter_state_dict`` that
    misses a tensor fails here."""
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    adapter, model, head_ids = _apply(name, tiny_bert_classifier())
    _perturb(model, head_ids)
    state = {k: v.detach().contiguous().clone() for k, v in adapter.adapter_state_dict(model, head_ids).items()}
    ids = torch.randint(0, 100, (2, 8), generator=torch.Generator().manual_seed(3))
    trained = _logits(model, ids)
    torch.manual_seed(0)  # the same pretrained weights and head as the first model
    base = tiny_bert_classifier()
    # the adapter from another random state (LoRA-FA: another frozen A): whatever the outputs depend on
    # must come from the file (VeRA's projections come from its prng_key: tests/test_adapter_vera.py)
    torch.manual_seed(1234)
    adapter2, model2, head_ids2 = _apply(name, base)
    fresh = _logits(model2, ids)
    if not any(p.requires_grad and id(p) not in head_ids for p in model.parameters()):
        # a method without tensors of its own (head only): nothing to save, and nothing differs
        assert state == {} and torch.allclose(fresh, trained, atol=1e-6)
        return
    assert state, f"{name}: adapter_state_dict is empty although the adapter has trainable tensors"
    scale = float(trained.abs().max())
    assert float((fresh - trained).abs().max()) > 1e-3 * scale, f"{name}: the fresh model already equals the trained one"
    save_file(state, str(tmp_path / "a.safetensors"))
    adapter2.load_adapter_state_dict(model2, load_file(str(tmp_path / "a.safetensors")))
    assert torch.allclose(_logits(model2, ids), trained, atol=1e-5 * max(scale, 1.0), rtol=0)


def _merges(name: str) -> bool:
    return ADAPTERS.get(name).merge is not Adapter.merge


def _weight_of(module: torch.nn.Module) -> torch.Tensor:
    for child in ("base_layer", "base"):
        if hasattr(module, child):
            return _weight_of(getattr(module, child))
    return module.weight


def _pretrained_weight(original: torch.nn.Module, module_name: str) -> torch.Tensor:
    """The pretrained weight of an adapted module, found in the unadapted copy (peft adds prefixes)."""
    parts = module_name.split(".")
    for i in range(len(parts)):
        try:
            return original.get_submodule(".".join(parts[i:])).weight
        except AttributeError:
            continue
    raise AssertionError(f"no module {module_name} in the pretrained model")


@pytest.mark.parametrize("name", _encoder_adapter_names())
def test_merge_unmerge_and_delta_components_are_exact(name):
    """Where an adapter merges: merged output == unmerged output, unmerge restores the weights, and the
    dense update of the analyses == merged weight - pretrained weight. Elsewhere merge is a clear error."""
    import copy

    from harness.errors import HarnessError

    torch.manual_seed(0)
    original = tiny_bert_classifier()
    pretrained = copy.deepcopy(original)
    adapter, model, head_ids = _apply(name, original)
    ids = torch.randint(0, 100, (2, 8), generator=torch.Generator().manual_seed(3))
    if not _merges(name):
        with pytest.raises(HarnessError, match="merg"):
            adapter.merge(model)
        return
    _perturb(model, head_ids)
    base = _logits(pretrained, ids)
    unmerged = _logits(model, ids)
    scale = max(float(unmerged.abs().max()), 1.0)
    atol = 1e-5 * scale
    assert float((unmerged - base).abs().max()) > 100 * atol, f"{name}: the adapter barely changes the output"
    components = adapter.delta_components(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    adapter.merge(model)
    merged_weights = {c.module: _weight_of(model.get_submodule(c.module)).detach().clone() for c in components}
    assert torch.allclose(_logits(model, ids), unmerged, atol=atol, rtol=0), f"{name}: merged != unmerged"
    adapter.unmerge(model)
    for n, p in model.named_parameters():
        assert torch.allclose(p.detach(), before[n], atol=1e-6, rtol=0), f"{name}: unmerge did not restore {n}"
    assert torch.allclose(_logits(model, ids), unmerged, atol=atol, rtol=0)
    assert components, f"{name} merges but gives the analyses no dense update"
    totals: dict[str, torch.Tensor] = {}
    for c in components:
        totals[c.module] = totals.get(c.module, 0) + c.delta.float()
    for module, delta in totals.items():
        expected = (merged_weights[module].float() - _pretrained_weight(pretrained, module).float()).detach()
        size = float(expected.abs().max())
        assert size > 1e-3, f"{name} {module}: no update to compare"
        assert torch.allclose(delta, expected, atol=1e-4 * size, rtol=0), f"{name} {module}: delta != merged - base"


@pytest.mark.parametrize("name", _encoder_adapter_names())
def test_meta_device_count_equals_the_real_count(name):
    """``harness params`` counts on a meta-device skeleton: it must give what the real model trains."""
    from harness.pipeline.attach import count_on_skeleton

    def fresh() -> Adapter:
        cls = ADAPTERS.get(name)
        options = {"rank": 8, "targets": ("query", "value")} if issubclass(cls.config_cls, LowRankConfig) else {}
        fields = {f.name for f in dataclasses.fields(cls.config_cls)}
        return cls(cls.config_cls(**{k: v for k, v in options.items() if k in fields}))

    torch.manual_seed(0)
    real = count_on_skeleton(fresh(), tiny_bert_classifier(), HEAD, "encoder")
    with torch.device("meta"):
        skeleton = tiny_bert_classifier()
    meta = count_on_skeleton(fresh(), skeleton, HEAD, "encoder")
    assert meta == real
    if name not in ("head", "zero-shot"):
        assert real > 0


def _preset_cases() -> list[tuple[str, str, str, str]]:
    """(adapter, suite, preset, model) for every preset of every suite the adapter can run on, at the
    suite's default model and every model an adapter's preset table names for that suite."""
    cases = []
    for adapter in ADAPTERS.names():
        cls = ADAPTERS.get(adapter)
        for suite_name in SUITES.names():
            suite = SUITES.get(suite_name)()
            if suite.family not in cls.families:
                continue
            for preset in ("paper", "cpu"):
                if preset not in suite.presets:
                    continue
                table = cls.paper_options if preset == "paper" else cls.cpu_options
                models = {suite.default_model(preset)}
                models |= {key.split("/", 1)[1] for key in table if key.startswith(suite_name + "/")}
                cases += [(adapter, suite_name, preset, model) for model in sorted(models)]
    return cases


@pytest.mark.parametrize("adapter,suite,preset,model", _preset_cases())
def test_every_preset_option_set_builds(adapter, suite, preset, model):
    from harness.models import find_model_entry
    from harness.pipeline.attach import build_adapter
    from harness.pipeline.plan import GridRequest, adapter_options_for

    assert find_model_entry(model) is not None, f"{adapter}'s {preset} table names an unknown model {model}"
    cls = ADAPTERS.get(adapter)
    options = adapter_options_for(cls, SUITES.get(suite)(), preset, model, GridRequest(suite=suite))
    built = build_adapter(adapter, options)
    assert isinstance(built.config, cls.config_cls)


@pytest.mark.parametrize("name", ADAPTERS.names())
def test_preset_tables_name_registered_suites(name):
    cls = ADAPTERS.get(name)
    for key in list(cls.paper_options) + list(cls.cpu_options):
        assert key.split("/", 1)[0] in SUITES.names(), f"{name}: preset key {key!r} names no registered suite"


@pytest.mark.parametrize("name", SUITES.names())
def test_suite_declares_tasks_presets_and_metrics(name):
    cls = SUITES.get(name)
    suite = cls()
    assert isinstance(suite, Suite) and cls.name == name and cls.description
    assert cls.tasks, f"suite {name} has no tasks"
    for preset in suite.presets:
        tasks = suite.default_tasks(preset)
        assert set(tasks) <= set(cls.tasks)
        model = suite.default_model(preset)
        assert isinstance(model, str) and model
        for task in tasks:
            train = suite.train_config(preset, task, model)
            assert train.epochs > 0
            assert isinstance(suite.primary_metric(task), str)
