"""Target roles belong to the model: every adapter plans on every catalogue model it applies to, and the
resolved options of the existing presets stay what they were (the record hashes depend on them)."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.models import model_entries
from harness.pipeline.attach import build_adapter
from harness.pipeline.plan import GridRequest, adapter_options_for, check_against_shapes, plan_grid
from harness.registry import ADAPTERS, SUITES
from harness.targets import ARCHITECTURE_ROLES, model_architecture, resolve_targets
from suites.toy import MODEL as TOY_MODEL

BASELINE = Path(__file__).parent / "data" / "resolved_options_baseline.json"


def _real_suites() -> list[str]:
    """The suites of real models: the toy suite (suites/toy.py) is an example whose MLP has no transformer
    blocks (no target roles, nothing for adapters with targets; tests/test_toy.py checks that apart)."""
    return [name for name in SUITES.names() if name != "toy"]


def _real_models() -> list:
    return [entry for entry in model_entries() if entry.name != TOY_MODEL]


@pytest.mark.parametrize("model, qv, ffn", [
    ("roberta-base", ("query", "value"), ("query", "key", "value", "attention.output.dense", "intermediate.dense",
                                          "output.dense")),
    ("minilm-l6", ("query", "value"), None),
    ("deberta-v3-base", ("query_proj", "value_proj"), ("query_proj", "key_proj", "value_proj",
                                                       "attention.output.dense", "intermediate.dense", "output.dense")),
    ("llama2-7b", ("q_proj", "v_proj"), None),
    ("llama3-8b", ("q_proj", "v_proj"), None),
    ("smollm2-135m", ("q_proj", "v_proj"), None),
    ("clip-vit-b32", ("q", "v"), None),
    ("vit-large-in21k", ("q", "v"), None),
])
def test_roles_resolve_per_architecture(model, qv, ffn):
    assert resolve_targets("attention-qv", model) == qv
    if ffn is not None:
        assert resolve_targets("attention-ffn", model) == ffn
    assert resolve_targets("all-linear", model) == "all-linear"  # the token stays (LLaMA3 record hashes)
    assert resolve_targets("query,value", model) == "query,value"  # module names pass through


def test_every_catalogue_model_has_a_known_architecture():
    for entry in _real_models():
        assert model_architecture(entry.name) in ARCHITECTURE_ROLES, entry.name


def test_role_on_a_model_outside_the_catalogue():
    assert resolve_targets("attention-qv", "org/unknown", fallback=("query", "value")) == ("query", "value")
    with pytest.raises(HarnessError, match="org/unknown.*--targets"):
        resolve_targets("attention-qk", "org/unknown")
    with pytest.raises(HarnessError, match="efficientnet-lite0.*no 'attention-qv'"):
        resolve_targets("attention-qv", "efficientnet-lite0")


def _resolved_options() -> dict[str, object]:
    out: dict[str, object] = {}
    for sname in _real_suites():
        suite = SUITES.get(sname)()
        models = sorted({e.name for e in _real_models() if e.family == suite.family}
                        | {suite.default_model(p) for p in suite.presets})
        for preset in suite.presets:
            for model in models:
                for aname in ADAPTERS.resolve_list("all"):
                    cls = ADAPTERS.get(aname)
                    if suite.family not in cls.families:
                        continue
                    try:
                        opts = adapter_options_for(cls, suite, preset, model, GridRequest(suite=sname))
                        out[f"{sname}|{preset}|{model}|{aname}"] = build_adapter(aname, opts).config.to_dict()
                    except HarnessError as exc:
                        out[f"{sname}|{preset}|{model}|{aname}"] = f"ERROR {exc}"
    return json.loads(json.dumps(out, sort_keys=True, default=str))


def test_resolved_options_of_existing_presets_are_unchanged():
    """Pinned from the options before target roles (the only changes were DeBERTaV3 paper entries that
    named query,value and could not run). A deliberate change of an adapter's preset regenerates the
    baseline, and must say which record hashes it moves."""
    baseline = json.loads(BASELINE.read_text())
    now = _resolved_options()
    changed = {k: (baseline.get(k), now.get(k)) for k in set(baseline) | set(now) if baseline.get(k) != now.get(k)}
    assert not changed, f"resolved adapter options changed (record hashes move): {sorted(changed)[:10]}"


def _catalogue_pairs() -> list[tuple[str, str]]:
    pairs = []
    for sname in _real_suites():
        family = SUITES.get(sname).family
        for entry in _real_models():
            # clip-tiny-random is a 2-layer test model: MSPLoRA's 3 layer groups cannot fit it (refused by design)
            if entry.family == family and entry.name != "clip-tiny-random":
                pairs.append((sname, entry.name))
    return pairs


@pytest.mark.parametrize("suite_name, model", _catalogue_pairs())
def test_every_adapter_plans_on_every_catalogue_model(suite_name, model, monkeypatch):
    """``--adapters all --preset paper --dry-run``: every adapter that applies builds on the model's
    meta-device skeleton (targets found, shapes fit). The skeleton is built once and copied."""
    suite_cls = SUITES.get(suite_name)
    cache: dict[tuple[str, str], object] = {}
    original = suite_cls.meta_model

    def cached(self, name, task):
        key = (name, task)
        if key not in cache:
            cache[key] = original(self, name, task)
        value = cache[key]
        return None if value is None else (copy.deepcopy(value[0]), value[1])

    monkeypatch.setattr(suite_cls, "meta_model", cached)
    tasks = suite_cls().resolve_tasks(None, "paper")[:1]
    request = GridRequest(suite=suite_name, adapters="all", tasks=",".join(tasks), seeds=(1,), preset="paper",
                          model=model)
    if model_architecture(model) == "convolutional":
        with pytest.raises(HarnessError):  # low-rank adapters have nothing to attach to: refused up front
            check_against_shapes(plan_grid(request, cuda_available=False))
        return
    specs = plan_grid(request, cuda_available=False)
    counts = check_against_shapes(specs)
    assert {s.adapter for s in specs} == {a for a in ADAPTERS.resolve_list("all")
                                          if suite_cls.family in ADAPTERS.get(a).families}
    for spec in specs:
        if ADAPTERS.get(spec.adapter).trains and spec.adapter not in ("head",):
            assert counts[(spec.adapter, spec.config_hash)] > 0, (spec.adapter, model)


def test_shipped_records_are_found_again_by_their_config_hash():
    """Every shipped record's spec is what ``plan_grid`` plans today for its suite, task, adapter, model and
    preset: target roles moved no record hash."""
    root = Path(__file__).resolve().parents[1] / "results"
    planned: dict[str, str] = {}
    checked = 0
    for path in sorted(root.rglob("*.json")):
        record = json.loads(path.read_text())
        spec = record.get("spec")
        if not isinstance(spec, dict):
            continue
        role = (record.get("tuning") or {}).get("role")  # a tuning trial, a run at tuned values, or neither
        key = json.dumps([spec[k] for k in ("suite", "task", "adapter", "model", "preset", "suite_options")] + [role],
                         sort_keys=True)
        if key not in planned:
            # the fixed-rate shipped records predate the validation split: the papers' protocol (issue 32)
            protocol = "validation" not in spec.get("train", {})
            request = GridRequest(suite=spec["suite"], adapters=[spec["adapter"]], tasks=spec["task"], seeds=(1,),
                                  preset=spec["preset"], model=spec["model"], suite_options=spec["suite_options"],
                                  papers_protocol=protocol, tuned_from=root if role == "tuned" else None)
            planned[key] = plan_grid(request, cuda_available=False)[0]
        base = planned[key]
        if role == "trial":  # the study's base run with the trial's learning rate
            assert record["tuning"]["study"].endswith("/" + base.config_hash), path
            # a trial never reads the test split before its study ends (harness/tuning/study.py)
            trial = replace(base, train=replace(base.train, lr=spec["train"]["lr"], test_each_epoch=False))
            assert trial.config_hash == record["key"]["config_hash"], path
        elif base.config_hash != record["key"]["config_hash"]:  # a paper-table row's own options
            assert role is None and record["key"]["config_hash"] in _paper_table_hashes(spec["preset"]), path
        checked += 1
    assert checked >= 91


_TABLE_HASHES: dict[str, set[str]] = {}


def _paper_table_hashes(preset: str) -> set[str]:
    """Config hashes of every run ``reproduce TABLE --preset PRESET`` plans, over all tables."""
    if preset not in _TABLE_HASHES:
        from harness.papers.reproduce import all_specs, plan_table
        from harness.papers.tables import TABLES

        _TABLE_HASHES[preset] = {s.config_hash for t in TABLES for s in all_specs(plan_table(t, preset))}
    return _TABLE_HASHES[preset]
