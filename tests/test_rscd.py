"""RSCD suite: class-name parsing and modes on all 27 classes, stratified sampling, the loader on a fixture
in the release layout, the ViT q/k/v surgery, and a short run through the harness runner."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from harness.pipeline.attach import count_on_skeleton
from harness.pipeline.runner import ExecutionOptions, execute_run
from harness.spec import RunSpec, TrainConfig
from harness.suite import DataSource, RunContext
from suites.rscd import (
    MODES,
    RoadClass,
    Rscd,
    all_classes,
    label_from_path,
    mode_classes,
    parse_class_name,
    stratified_sample,
)
from tests.fixtures_rscd import build_rscd_fixture

# The 27 class names as the RSCD release writes them in file names (hyphens; snow/ice levels keep '_').
RELEASE_NAMES = [
    "dry-asphalt-smooth", "dry-asphalt-slight", "dry-asphalt-severe", "dry-concrete-smooth", "dry-concrete-slight",
    "dry-concrete-severe", "dry-mud", "dry-gravel",
    "wet-asphalt-smooth", "wet-asphalt-slight", "wet-asphalt-severe", "wet-concrete-smooth", "wet-concrete-slight",
    "wet-concrete-severe", "wet-mud", "wet-gravel",
    "water-asphalt-smooth", "water-asphalt-slight", "water-asphalt-severe", "water-concrete-smooth",
    "water-concrete-slight", "water-concrete-severe", "water-mud", "water-gravel",
    "fresh_snow", "melted_snow", "ice",
]


def test_the_property_tree_gives_the_27_release_classes():
    names = [c.name for c in all_classes()]
    assert len(names) == 27
    assert sorted(names) == sorted(RELEASE_NAMES)


@pytest.mark.parametrize("name", RELEASE_NAMES)
def test_every_release_name_parses_in_both_spellings(name):
    cls = parse_class_name(name)
    assert cls is not None and cls.name == name
    assert parse_class_name(cls.folder_name) == cls  # train folders: dry_asphalt_smooth, fresh_snow
    assert parse_class_name(name.upper().replace("-", " ")) == cls


def test_mode_of_every_class_follows_its_properties():
    expected_easy = {"dry-asphalt-smooth", "dry-asphalt-slight", "dry-asphalt-severe"}
    expected_medium = {n for n in RELEASE_NAMES if n.startswith("dry-")}
    for name in RELEASE_NAMES:
        cls = parse_class_name(name)
        assert MODES["easy"](cls) == (name in expected_easy)
        assert MODES["medium"](cls) == (name in expected_medium)
        assert MODES["full"](cls)
    assert [c.name for c in mode_classes("easy")] == ["dry-asphalt-smooth", "dry-asphalt-slight", "dry-asphalt-severe"]
    assert len(mode_classes("medium")) == 8 and len(mode_classes("full")) == 27
    assert {"dry-mud", "dry-gravel"} <= {c.name for c in mode_classes("medium")}


@pytest.mark.parametrize("text", ["dry-asphalt", "ice-asphalt-smooth", "snow", "dry-mud-smooth", "wet-concrete-bumpy", ""])
def test_non_class_names_are_rejected(text):
    assert parse_class_name(text) is None


def test_dirt_is_mud_and_invalid_combinations_raise():
    assert parse_class_name("wet_dirt") == RoadClass("wet", "mud")
    with pytest.raises(Exception, match="no material"):
        RoadClass("ice", "asphalt", "smooth")


def test_labels_come_from_train_folders_or_flat_file_names():
    assert label_from_path(Path("train/dry_asphalt_slight/2022012523413511-dry-asphalt-slight.jpg")).name == "dry-asphalt-slight"
    assert label_from_path(Path("vali_20k/2022012523413511-wet-asphalt-smooth.jpg")).name == "wet-asphalt-smooth"
    assert label_from_path(Path("vali_20k/20220125234135-melted_snow.jpg")).name == "melted_snow"
    assert label_from_path(Path("vali_20k/readme.jpg")) is None


def test_stratified_sample_takes_ten_percent_of_every_class_reproducibly():
    labels = [0] * 100 + [1] * 37 + [2] * 4 + [3] * 1000
    chosen = stratified_sample(labels, 0.1, seed=0)
    counts = Counter(labels[i] for i in chosen)
    assert counts == {0: 10, 1: 4, 2: 1, 3: 100}  # round(3.7) = 4, at least one of a tiny class
    assert chosen == sorted(set(chosen))
    assert stratified_sample(labels, 0.1, seed=0) == chosen
    other = stratified_sample(labels, 0.1, seed=1)
    assert other != chosen and Counter(labels[i] for i in other) == counts
    assert stratified_sample(labels, 1.0, seed=3) == list(range(len(labels)))


@pytest.fixture(scope="module")
def rscd_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rscd-fixture")
    build_rscd_fixture(root, train_per_class=20, val_per_class=3)
    return root


def test_loader_reads_the_release_layout_per_mode(rscd_root):
    suite = Rscd()
    data = DataSource(rscd_root)
    suite.check_data("full", data)
    ctx = RunContext(device=torch.device("cpu"), data=data, seed=42, preset="cpu", work_dir=rscd_root)
    loaded = suite.load_model("vit-tiny-random", "medium", ctx)
    task = suite.load_data("medium", loaded, TrainConfig(), ctx)
    info = task.info
    assert info["num_classes"] == 8 and info["train_available"] == 8 * 20
    assert info["train_examples"] == 8 * 2 and set(info["train_per_class"].values()) == {2}
    assert info["eval_examples"] == 8 * 3  # the full validation split of the mode
    assert "FIXTURE" in info["note"]
    assert set(task.train["labels"]) == set(range(8))
    batch = next(iter(suite.train_batches(task, TrainConfig(batch_size=4), 0, ctx)))
    assert batch["pixel_values"].shape == (4, 3, 112, 112) and batch["labels"].shape == (4,)
    assert loaded.model(batch["pixel_values"]).shape == (4, 8)


def test_missing_rscd_folder_is_a_one_line_error(tmp_path):
    with pytest.raises(Exception, match="rscd"):
        Rscd().check_data("easy", DataSource(tmp_path))


def test_qkv_split_keeps_the_vit_output_and_exposes_q_and_v():
    import timm

    from harness.sites import find_sites
    from suites._shared.vision import split_timm_vit_qkv

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, num_classes=3).eval()
    x = torch.randn(2, 3, 32, 32)
    before = model(x)
    assert split_timm_vit_qkv(model) == 12
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)
    sites = find_sites(model, ("q", "v"), exclude=("head",))
    assert len(sites) == 24 and {s.kind for s in sites} == {"q", "v"}
    assert sites[0].name == "blocks.0.attn.qkv.q" and sites[0].in_features == sites[0].out_features == 192


def test_paper_vit_large_lora_count_on_the_meta_device():
    from harness.pipeline.attach import build_adapter

    suite = Rscd()
    skeleton, head = suite.meta_model("vit-large-in21k", "full")
    adapter = build_adapter("lora", {"rank": 8, "targets": "q,v"})
    # 24 blocks x (q, v) x r * (1024 in + 1024 out)
    assert count_on_skeleton(adapter, skeleton, head, "vision") == 24 * 2 * 8 * 2048


def test_lora_run_through_the_runner(rscd_root):
    spec = RunSpec(
        suite="rscd", task="easy", adapter="lora", model="effnet-vit-hybrid", preset="cpu", seed=0,
        adapter_options={"rank": 4, "alpha": 8, "targets": ["q", "v"], "dropout": 0.0},
        train=TrainConfig(epochs=1, lr=1e-3, batch_size=8, eval_batch_size=16, max_steps=2),
        suite_options={"train_fraction": "0.5"},
    )
    record = execute_run(spec, ExecutionOptions(data=DataSource(rscd_root), progress=False))
    assert record["status"] == "success", record.get("error")
    assert record["params"]["adapter_trainable"] == 4 * 2 * 4 * (192 + 192)  # 4 blocks x q,v x r(in+out)
    assert record["params"]["head"] == 192 * 3 + 3
    assert record["model_info"]["pretrained"] == "partial"
    assert record["data_info"]["train_examples"] == 30
    assert 0.0 <= record["metrics"]["score"] <= 1.0 and record["timing"]["steps"] == 2
