"""coco-retrieval: recall@K against a hand-worked similarity matrix, the losses, the COCO-layout reader on
../shared/data/coco, the MultiheadAttention q/k/v surgery, and a short run through the harness runner."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from harness.pipeline.runner import ExecutionOptions, execute_run
from harness.spec import RunSpec, TrainConfig
from harness.suite import DataSource
from suites.coco_retrieval import (
    coco_split_files,
    contrastive_loss,
    epoch_pairs,
    read_captioned_images,
    retrieval_recalls,
    triplet_loss,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def test_recalls_on_a_hand_worked_matrix():
    # 3 images; captions 0,1 -> image 0, caption 2 -> image 1, captions 3,4 -> image 2.
    sim = torch.tensor([
        #  c0    c1    c2    c3    c4
        [0.9, 0.1, 0.8, 0.3, 0.2],  # image 0: own best c0 ranks 1st
        [0.5, 0.6, 0.4, 0.7, 0.3],  # image 1: own c2 (0.4) has 0.5, 0.6, 0.7 above: rank 4
        [0.2, 0.3, 0.1, 0.15, 0.35],  # image 2: own best c4 ranks 1st
    ])
    owner = [0, 0, 1, 2, 2]
    # text -> image, images above each caption's own image:
    #   c0: col (0.9, 0.5, 0.2), own 0.9 -> 0 above
    #   c1: col (0.1, 0.6, 0.3), own 0.1 -> 2 above
    #   c2: col (0.8, 0.4, 0.1), own 0.4 -> 1 above
    #   c3: col (0.3, 0.7, 0.15), own 0.15 -> 2 above
    #   c4: col (0.2, 0.3, 0.35), own 0.35 -> 0 above
    out = retrieval_recalls(sim, owner, ks=(1, 2, 5))
    assert out["i2t_r1"] == pytest.approx(200 / 3)  # images 0 and 2
    assert out["i2t_r2"] == pytest.approx(200 / 3)  # image 1 is at rank 4
    assert out["i2t_r5"] == pytest.approx(100.0)
    assert out["t2i_r1"] == pytest.approx(40.0)  # c0, c4
    assert out["t2i_r2"] == pytest.approx(60.0)  # + c2
    assert out["t2i_r5"] == pytest.approx(100.0)
    assert out["rsum"] == pytest.approx(200 / 3 * 2 + 100 + 40 + 60 + 100)


def test_recalls_default_ks_and_perfect_retrieval():
    sim = torch.eye(12)
    out = retrieval_recalls(sim, list(range(12)))
    assert set(out) == {"i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum"}
    assert out["rsum"] == pytest.approx(600.0)
    reversed_sim = 1 - torch.eye(12)  # every own pair ranks last
    out = retrieval_recalls(reversed_sim, list(range(12)))
    assert out["i2t_r10"] == 0.0 and out["t2i_r10"] == 0.0


def test_triplet_and_contrastive_losses_by_hand():
    sim = torch.tensor([[0.5, 0.4], [0.1, 0.6]])
    # margin 0.2: image 0: wrong caption 0.2+0.4-0.5=0.1; image 1: 0.2+0.1-0.6<0
    #             caption 0: wrong image 0.2+0.1-0.5<0; caption 1: 0.2+0.4-0.6=0
    assert float(triplet_loss(sim, 0.2, hardest=False)) == pytest.approx(0.1 / 2)
    assert float(triplet_loss(sim, 0.2, hardest=True)) == pytest.approx(0.1 / 2)
    sim3 = torch.tensor([[0.5, 0.4, 0.45], [0.0, 0.5, 0.0], [0.0, 0.0, 0.5]])
    # image 0 ranks captions 1, 2 too high: 0.2+0.4-0.5=0.1, 0.2+0.45-0.5=0.15; the same two entries are
    # caption 1's and caption 2's violations in the other direction (their own images score 0.5).
    # all: (0.25 + 0.25) / 3; hardest: per image max (0.15, 0, 0), per caption max (0, 0.1, 0.15), means
    assert float(triplet_loss(sim3, 0.2, hardest=False)) == pytest.approx(0.5 / 3)
    assert float(triplet_loss(sim3, 0.2, hardest=True)) == pytest.approx(0.15 / 3 + 0.25 / 3)
    eye = torch.eye(2)
    expected = -torch.log_softmax(torch.tensor([10.0, 0.0]), 0)[0]
    assert float(contrastive_loss(eye, 10.0)) == pytest.approx(float(expected))


def test_epoch_pairs_visit_every_caption_once_without_repeating_an_image_in_a_batch():
    counts = [5, 5, 6, 3, 5, 7]
    batches = epoch_pairs(counts, batch_size=4, rng=random.Random(0))
    seen = [pair for batch in batches for pair in batch]
    assert sorted(seen) == sorted((i, c) for i, n in enumerate(counts) for c in range(n))
    assert all(len({i for i, _ in b}) == len(b) <= 4 for b in batches)


def test_reader_on_the_shared_coco_folder():
    folder = SHARED_DATA / "coco"
    captions, images = coco_split_files(folder, "val")
    assert captions == folder / "captions_val2017.json" and images == folder / "coco_mini" / "val2017"
    val = read_captioned_images(captions, images)
    assert len(val.paths) == 159 and val.images_in_file == 5000
    assert all(len(c) >= 5 for c in val.captions)
    train = read_captioned_images(*coco_split_files(folder, "train"))
    assert len(train.paths) == 80 and sum(len(c) for c in train.captions) == 400


def test_multihead_attention_split_keeps_clip_outputs_and_exposes_q_v_in_both_towers():
    import open_clip

    from harness.sites import find_sites
    from suites._shared.vision import SplitMultiheadAttention, split_multihead_attention

    torch.manual_seed(0)
    model = open_clip.CLIP(
        embed_dim=32,
        vision_cfg={"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
        text_cfg={"context_length": 16, "vocab_size": 1000, "width": 64, "heads": 2, "layers": 2},
    ).eval()
    images, tokens = torch.randn(3, 3, 32, 32), torch.randint(1, 999, (3, 16))
    before = model.encode_image(images), model.encode_text(tokens)
    assert split_multihead_attention(model) == 4
    torch.testing.assert_close(model.encode_image(images), before[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.encode_text(tokens), before[1], rtol=1e-5, atol=1e-5)
    sites = find_sites(model, ("q", "v"))
    assert {s.stack for s in sites} == {"visual.transformer.resblocks", "transformer.resblocks"}
    assert len(sites) == 8
    # the masks MultiheadAttention accepts behave the same after the split
    mha = torch.nn.MultiheadAttention(8, 2, batch_first=True).eval()
    split = SplitMultiheadAttention(mha).eval()
    x = torch.randn(2, 5, 8)
    causal = torch.nn.Transformer.generate_square_subsequent_mask(5)
    padding = torch.tensor([[False] * 5, [False, False, False, True, True]])
    for kwargs in ({"attn_mask": causal}, {"attn_mask": causal.isinf()}, {"key_padding_mask": padding}):
        torch.testing.assert_close(split(x, x, x, **kwargs)[0], mha(x, x, x, need_weights=False, **kwargs)[0],
                                   rtol=1e-5, atol=1e-5)


def test_paper_clip_meta_model_puts_sites_in_both_towers():
    from harness.pipeline.attach import build_adapter, count_on_skeleton
    from suites.coco_retrieval import CocoRetrieval

    skeleton, head = CocoRetrieval().meta_model("clip-vit-b32", "coco")
    adapter = build_adapter("lora", {"rank": 8, "targets": "q,v"})
    # 12 vision blocks (width 768) + 12 text blocks (width 512), q and v, r*(in+out)
    assert count_on_skeleton(adapter, skeleton, head, "dual_encoder") == 12 * 2 * 8 * 1536 + 12 * 2 * 8 * 1024


def test_lora_run_through_the_runner_on_the_tiny_clip():
    spec = RunSpec(
        suite="coco-retrieval", task="coco", adapter="lora", model="clip-tiny-random", preset="cpu", seed=0,
        adapter_options={"rank": 4, "alpha": 8, "targets": ["q", "v"], "dropout": 0.0},
        train=TrainConfig(epochs=1, lr=1e-3, batch_size=8, eval_batch_size=32, max_steps=2, max_train_samples=16,
                          max_eval_samples=20),
        suite_options={"loss": "contrastive"},
    )
    record = execute_run(spec, ExecutionOptions(data=DataSource(SHARED_DATA), progress=False))
    assert record["status"] == "success", record.get("error")
    assert record["params"]["adapter_trainable"] == 2 * 2 * 2 * 4 * (64 + 64)  # 2 towers x 2 blocks x q,v
    assert record["params"]["head"] == 0
    assert record["data_info"]["eval_images"] == 20 and record["data_info"]["eval_images_in_captions_file"] == 5000
    assert record["model_info"]["pretrained"] is False
    assert 0.0 <= record["metrics"]["score"] <= 600.0 and "t2i_r10" in record["metrics"]["final"]


def test_full_fine_tuning_row_trains_both_towers_of_the_tiny_clip():
    """The issue asks for full fine-tuning rows next to the adapters: ``full`` applies to a dual encoder."""
    spec = RunSpec(
        suite="coco-retrieval", task="coco", adapter="full", model="clip-tiny-random", preset="cpu", seed=0,
        train=TrainConfig(epochs=1, lr=1e-4, batch_size=8, eval_batch_size=32, max_steps=1, max_train_samples=8,
                          max_eval_samples=10),
    )
    record = execute_run(spec, ExecutionOptions(data=DataSource(SHARED_DATA), progress=False))
    assert record["status"] == "success", record.get("error")
    params = record["params"]
    # every parameter is trainable (the logit scale too, which the triplet loss leaves unused); no head
    assert params["adapter_trainable"] == params["total"] > 100_000 and params["head"] == 0
    assert 0.0 <= record["metrics"]["score"] <= 600.0


def test_zero_shot_row_evaluates_the_tiny_clip_without_training():
    """The zero-shot row of SeRA's retrieval table: the ``zero-shot`` adapter scores the model as loaded."""
    spec = RunSpec(
        suite="coco-retrieval", task="coco", adapter="zero-shot", model="clip-tiny-random", preset="cpu", seed=0,
        train=TrainConfig(epochs=1, batch_size=8, eval_batch_size=32, max_train_samples=8, max_eval_samples=10),
    )
    record = execute_run(spec, ExecutionOptions(data=DataSource(SHARED_DATA), progress=False))
    assert record["status"] == "success", record.get("error")
    assert record["params"]["adapter_trainable"] == 0 and record["params"]["trainable_total"] == 0
    assert record["timing"]["steps"] == 0
    assert 0.0 <= record["metrics"]["score"] <= 600.0 and "i2t_r1" in record["metrics"]["final"]
