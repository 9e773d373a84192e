"""Metric values against hand-computed references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from accel import metrics
from accel.metrics.domain import DomainMetrics, parse_prompt


class TinyFeat(nn.Module):
    """A fixed random conv feature network (what FID needs from a module: ``num_features``)."""

    num_features = 16

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x):
        return self.net(x.float())


def _images(n, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, 16, 16, generator=g) * 0.5 + shift).clamp(0, 1)


def test_fid_is_zero_for_identical_sets_and_grows_with_the_shift():
    real = _images(200, 0)
    feat = TinyFeat()
    assert abs(metrics.frechet_distance(real, real.clone(), feature=feat)) < 1e-3
    values = [metrics.frechet_distance(real, _images(200, 1, shift), feature=feat) for shift in (0.0, 0.1, 0.3)]
    assert values[0] < values[1] < values[2]
    kid_same, _ = metrics.kernel_distance(real, real.clone(), feature=feat, subset_size=50)
    kid_far, _ = metrics.kernel_distance(real, _images(200, 1, 0.3), feature=feat, subset_size=50)
    assert abs(kid_same) < 1e-3 < kid_far


def test_psnr_and_ssim_on_analytic_cases():
    x = torch.full((2, 3, 16, 16), 0.5)
    y = x + 0.1
    assert metrics.psnr(y, x) == pytest.approx(torch.tensor([20.0, 20.0]), abs=1e-4)  # 10 log10(1 / 0.01)
    assert torch.isinf(metrics.psnr(x, x)).all()
    assert metrics.ssim(x, x) == pytest.approx(torch.ones(2), abs=1e-6)
    noisy = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    assert (metrics.ssim(noisy, x) < 0.9).all()
    video = torch.rand(2, 5, 3, 16, 16)
    assert metrics.psnr(video, video.clamp(0, 0.9)).shape == (2,)


def test_classifier_metrics():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    assert metrics.accuracy(logits, torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)
    assert metrics.top1_agreement(logits, logits * 2) == 1.0


def test_feature_network_errors_are_readable():
    with pytest.raises(ValueError, match="num_features"):
        metrics.feature_network(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="unknown feature network"):
        metrics.feature_network("vgg")


def _tiny_clip(path):
    import json

    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=514,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(path)
    vocab = {}
    for i in range(256):
        vocab[chr(i)] = len(vocab)
        vocab[chr(i) + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(path / "vocab.json"), str(path / "merges.txt"))
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
    )
    processor.save_pretrained(path)
    return str(path)


def test_clip_score_from_a_local_directory_is_finite_and_deterministic(tmp_path):
    path = _tiny_clip(tmp_path / "tiny-clip")  # no "openai" in the path: the plain local directory must work
    scorer = metrics.ClipScorer(path)
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    captions = ["a red circle", "a blue square", "a green triangle"]
    first = scorer(images, captions)
    again = metrics.ClipScorer(path)(images, captions)
    assert first.shape == (3,) and torch.isfinite(first).all()
    assert torch.equal(first, again)
    assert ((first >= 0) & (first <= 100)).all()
    with pytest.raises(FileNotFoundError, match="could not load CLIP"):
        metrics.ClipScorer(str(tmp_path / "missing"))


def test_latency_and_flops():
    lat = metrics.measure_latency(lambda: sum(range(1000)), warmup=1, repeats=5)
    assert len(lat.runs) == 5 and lat.p10 <= lat.median <= lat.p90
    lin = nn.Linear(8, 4, bias=False)
    with metrics.count_flops() as flops:
        lin(torch.randn(3, 8))
    assert flops["total"] == 2 * 3 * 8 * 4
    with metrics.ModuleFlops(lin) as counted:
        lin(torch.randn(3, 8))
        lin(torch.randn(1, 8))
    assert counted.calls == 2 and counted.total == 2 * 4 * 8 * 4


def test_domain_prompt_parsing_and_alignment_on_real_images():
    assert parse_prompt("digits", "a handwritten 7") == {"digit": 7}
    assert parse_prompt("shapes", "a red triangle at the top left") == {"shape": 2, "colour": 0, "position": 0}
    assert parse_prompt("moving_shapes", "a blue circle moving up") == {"shape": 0, "colour": 2, "direction": 2}
    from accel.pipelines.builtin import data

    domain = DomainMetrics("shapes")
    images, labels, captions = data.shapes(60, seed=5, split="heldout")
    aligned = domain.alignment(data.to_unit(images), captions)
    shuffled = domain.alignment(data.to_unit(images), captions[1:] + captions[:1])
    assert aligned.mean() > 0.9 and shuffled.mean() < aligned.mean() - 0.2
    real = domain.real_samples(300)
    assert domain.fid(real, data.to_unit(images)) < domain.fid(real, torch.rand_like(data.to_unit(images)))
    video = DomainMetrics("moving_shapes")
    clips, _, vcaptions = data.moving_shapes(12, seed=1, split="heldout")
    assert video.alignment(data.to_unit(clips), vcaptions).mean() > 0.9
    consistency = video.temporal_consistency(data.to_unit(clips))
    flicker = data.to_unit(clips).clone()
    flicker[:, 1::2] = 1 - flicker[:, 1::2]  # every other frame inverted
    assert consistency.mean() > 0.95 > video.temporal_consistency(flicker).mean()
    still = data.to_unit(clips[:, :1]).expand_as(clips)
    assert torch.allclose(video.temporal_consistency(still), torch.ones(len(clips)))
    assert math.isfinite(float(consistency.mean()))


def test_varied_shapes_features_see_more_than_the_class():
    """The varied-shapes classifier scores prompts on shaded, resized, shifted shapes, and its features
    (FID's) tell real varied shapes from a blurred copy of them and from plain shapes of the same
    classes: an FID that saw only the class could do neither."""
    import torch.nn.functional as F

    from accel.pipelines.builtin import data

    assert parse_prompt("varied_shapes", "a blue circle in the center") == {"shape": 0, "colour": 2, "position": 4}
    domain = DomainMetrics("varied_shapes")
    images, _, captions = data.varied_shapes(120, seed=5, split="heldout")
    aligned = domain.alignment(data.to_unit(images), captions)
    assert aligned.mean() > 0.9 and domain.alignment(data.to_unit(images), captions[1:] + captions[:1]).mean() < 0.6
    reference = domain.real_samples(1000, seed=999)
    other = domain.real_samples(300, seed=1000)
    floor = domain.fid(reference, other)  # about 0.6-0.9 (other seeds)
    blurred = F.avg_pool2d(F.pad(other, (1, 1, 1, 1), mode="replicate"), 3, stride=1)  # the same images, 3x3 box blur
    plain = data.to_unit(data.shapes(300, seed=5, split="heldout")[0])
    assert domain.fid(reference, blurred) > 1.5 * floor  # 0.86 -> 1.65 measured
    assert domain.fid(reference, plain) > 10 * floor


def test_video_fid_sees_motion_that_per_frame_fid_cannot():
    """With its frames shuffled, every clip keeps exactly the same frames (per-frame FID cannot move) but
    loses its smooth motion; the clip classifier's video FID must rise far above its real-vs-real floor.
    (Played backwards would not do: a real clip reversed is another real clip, left <-> right.)"""
    from accel.pipelines.builtin import data

    video = DomainMetrics("moving_shapes")
    reference = video.real_samples(192, seed=999)
    other = video.real_samples(96, seed=1000)
    g = torch.Generator().manual_seed(0)
    shuffled = torch.stack([clip[torch.randperm(clip.shape[0], generator=g)] for clip in other])
    assert video.fid(reference, shuffled) == pytest.approx(video.fid(reference, other), rel=1e-4)
    floor = video.video_fid(reference, other)
    assert video.video_fid(reference, shuffled) > 5 * floor
    with pytest.raises(ValueError, match="video FID needs"):
        video.video_fid(reference[:, 0], other[:, 0])
    with pytest.raises(ValueError, match="needs the moving_shapes"):
        DomainMetrics("shapes").video_fid(reference, other)
    clips, labels, _ = data.moving_shapes(48, seed=3, split="heldout")
    probs = video._video_classifier.probabilities(data.to_unit(clips))
    assert (probs["direction"].argmax(-1) == labels[:, 2]).float().mean() > 0.95


def test_video_classifier_round_trip(tmp_path):
    from accel.pipelines.builtin.classifier import HEADS, VideoClassifier, load_classifier, save_classifier

    torch.manual_seed(0)
    model = VideoClassifier(HEADS["moving_shapes"]).eval()
    clips = torch.rand(2, 9, 3, 32, 32)
    save_classifier(model, str(tmp_path))
    loaded = load_classifier(str(tmp_path))
    assert isinstance(loaded, VideoClassifier) and loaded(clips).shape == (2, VideoClassifier.num_features)
    assert torch.equal(loaded(clips), model(clips))
    with pytest.raises(ValueError, match="takes clips"):
        model(clips[:, 0])


def test_flop_count_includes_dense_attention_on_the_cpu():
    # torch's counter registers the CUDA SDPA kernels only; on the CPU dense attention counted as 0 FLOPs,
    # so a sparse-attention plugin (whose attention is counted) looked costlier than dense attention
    from accel.metrics.cost import count_flops

    q = torch.randn(1, 2, 64, 16)
    with count_flops() as flops:
        torch.nn.functional.scaled_dot_product_attention(q, q, q)
    assert flops["total"] == 4 * 64 * 64 * 16 * 2
