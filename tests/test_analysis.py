from __future__ import annotations

import json

import pytest
import torch

from harness.adapter import DeltaComponent
from harness.pipeline import analysis
from tests.adapter_testkit import adapter_params, apply_adapter, randomise
from tests.tiny_models import tiny_bert


def component(delta, layer=0, kind="query", part="lora", module=None, rank=None):
    return DeltaComponent(module=module or f"enc.layer.{layer}.{kind}", kind=kind, layer=layer, component=part,
                          delta=delta, final_rank=rank)


def diag(*values, size=6):
    m = torch.zeros(size, size)
    for i, v in enumerate(values):
        m[i, i] = v
    return m


def test_effective_rank_share_and_spectrum():
    assert analysis.effective_rank_share([3.0, 1.0, 0.0], 1) == pytest.approx(0.75)
    assert analysis.effective_rank_share([0.0, 0.0], 2) == 0.0
    values, approximate = analysis.spectrum(diag(1.0, 4.0, 2.0))
    assert values[:4] == pytest.approx([4.0, 2.0, 1.0, 0.0]) and approximate is False
    assert analysis.numerical_rank(values, (6, 6)) == 3


def test_large_updates_use_a_randomised_svd_that_is_exact_for_low_rank(monkeypatch):
    monkeypatch.setattr(analysis, "EXACT_SVD_LIMIT", 8)
    g = torch.Generator().manual_seed(0)
    low_rank = torch.randn(40, 3, generator=g) @ torch.randn(3, 30, generator=g)
    values, approximate = analysis.spectrum(low_rank)
    assert approximate is True
    assert values[:3] == pytest.approx(torch.linalg.svdvals(low_rank)[:3].tolist(), rel=1e-4)


def test_inter_layer_kl_matrix():
    same = [component(diag(2.0, 1.0), layer=i) for i in range(3)]
    result = analysis.analyze_components(same)
    kl = result["inter_layer_kl"]["query lora"]
    assert kl["layers"] == [0, 1, 2] and kl["spectrum_length"] == 2
    assert all(v == pytest.approx(0.0, abs=1e-9) for row in kl["matrix"] for v in row)

    different = [component(diag(1.0, 1.0), layer=0), component(diag(3.0, 1.0), layer=1), component(torch.zeros(6, 6), layer=2)]
    kl = analysis.analyze_components(different)["inter_layer_kl"]["query lora"]
    assert kl["layers"] == [0, 1]  # the zero update has no spectrum to compare
    p, q = [0.5, 0.5], [0.75, 0.25]
    expected = sum(a * torch.log(torch.tensor(a / b)).item() for a, b in zip(p, q))
    assert kl["matrix"][0][1] == pytest.approx(expected, rel=1e-5)
    assert kl["matrix"][0][0] == 0.0 and kl["matrix"][1][0] > 0


def test_components_totals_final_rank_and_json():
    shared = diag(5.0, 1.0)
    components = []
    for layer in range(2):
        components.append(component(shared, layer=layer, part="global"))
        components.append(component(diag(0.0, 0.0, 2.0), layer=layer, part="layer", rank=1))
    result = analysis.analyze_components(components)
    json.dumps(result)  # stored in the record as is
    parts = [(c["component"], c["layer"]) for c in result["components"]]
    assert ("total", 0) in parts and ("total", 1) in parts
    total = next(c for c in result["components"] if c["component"] == "total")
    assert total["singular_values"][:3] == pytest.approx([5.0, 2.0, 1.0]) and total["numerical_rank"] == 3
    assert next(c for c in result["components"] if c["component"] == "layer")["final_rank"] == 1
    assert result["m_eff_mean"]["global"]["1"] == pytest.approx(5 / 6)
    assert all(v == 0.0 for row in result["inter_layer_kl"]["query global"]["matrix"] for v in row)


def test_subspace_similarity():
    # torch layout out x in: rows are outputs, so directions live in the input space (columns of dWᵀ)
    a = torch.zeros(4, 6)
    a[0, 0], a[1, 1] = 3.0, 2.0  # input directions e0 (largest) then e1
    b = torch.zeros(4, 6)
    b[0, 0], b[1, 2] = 3.0, 2.0  # e0 then e2
    phi = analysis.subspace_similarity(a, b, max_rank=2)
    assert phi[0][0] == pytest.approx(1.0) and phi[1][1] == pytest.approx(0.5) and phi[1][0] == pytest.approx(1.0)
    c = torch.zeros(4, 6)
    c[0, 3] = 1.0
    assert analysis.subspace_similarity(a, c, max_rank=1)[0][0] == pytest.approx(0.0)
    same = analysis.subspace_similarity(a, a, max_rank=2)
    assert all(v == pytest.approx(1.0) for row in same for v in row)


def test_the_runner_analysis_of_an_adapted_tiny_model():
    from adapters.msplora import MSPLoRA, MSPLoraOptions

    adapter = MSPLoRA(MSPLoraOptions(rank=4))
    model, _, head_ids = apply_adapter(adapter, tiny_bert(layers=3))
    randomise(adapter_params(model, head_ids))
    result = analysis.analyze_components(adapter.delta_components(model))
    assert len(result["components"]) == 2 * 3 * 4  # types x layers x (3 levels + total)
    assert {"query layer", "query total", "value global"} <= set(result["inter_layer_kl"])
    layer_level = [c for c in result["components"] if c["component"] == "layer"]
    assert all(c["numerical_rank"] == 1 for c in layer_level)  # rank r/4 = 1


# ---- `harness analyze` between two saved runs ------------------------------------------------------


def write_run(tmp_path, name, adapter_name, options, seed):
    """A record and its adapter tensors as `harness run --save-adapters` leaves them (random tensors
    shaped by the real GLUE skeleton of the offline MiniLM)."""
    from safetensors.torch import save_file

    from harness.pipeline.attach import attach, build_adapter
    from harness.registry import SUITES

    suite = SUITES.get("glue")()
    model, head = suite.meta_model("minilm-l6", "sst2")
    adapter = build_adapter(adapter_name, options)
    attach(adapter, model, family="encoder", head_modules=head, total_steps=1)
    g = torch.Generator().manual_seed(seed)
    state = {n: torch.randn(p.shape, generator=g) for n, p in model.named_parameters() if p.requires_grad}
    save_file(state, str(tmp_path / f"{name}.adapter.safetensors"))
    record = {"run_id": name, "spec": {"suite": "glue", "task": "sst2", "model": "minilm-l6", "adapter": adapter_name,
                                       "adapter_options": adapter.config.to_dict()}}
    (tmp_path / f"{name}.json").write_text(json.dumps(record))
    return tmp_path / f"{name}.json"


def test_analyze_command_prints_phi_between_two_runs(tmp_path, capsys):
    from harness.cli.main import main

    first = write_run(tmp_path, "first", "sera", {"rank": 4}, seed=1)
    other = write_run(tmp_path, "other", "sera", {"rank": 4}, seed=2)
    assert main(["analyze", str(first), str(first.with_suffix(".adapter.safetensors")), "--max-rank", "3", "--json"]) == 0
    same = json.loads(capsys.readouterr().out)
    assert len(same["modules"]) == 12 and all(v == pytest.approx(1.0) for row in same["mean"] for v in row)
    assert main(["analyze", str(first), str(other), "--max-rank", "4", "--module", "layer.2.", "--per-module"]) == 0
    text = capsys.readouterr().out
    assert "mean over 2 module(s)" in text and "i\\j" in text
    assert main(["analyze", str(first), str(other), "--json", "--max-rank", "4"]) == 0
    mean = json.loads(capsys.readouterr().out)["mean"]
    assert 0.0 < mean[0][0] < 0.5 and all(0.0 <= v <= 1.0 for row in mean for v in row)  # random 384-d directions


def test_analyze_command_errors_are_one_line(tmp_path, capsys):
    from harness.cli.main import main

    first = write_run(tmp_path, "first", "msplora", {"rank": 4}, seed=1)
    first.with_suffix(".adapter.safetensors").rename(tmp_path / "moved.safetensors")
    assert main(["analyze", str(first), str(first)]) == 2
    assert "--save-adapters" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path / "nothing.json"), str(first)]) == 2
    assert "not found" in capsys.readouterr().err
