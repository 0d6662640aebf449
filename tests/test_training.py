"""The training loop: resume is exact, the loss falls on a learnable toy, exports load back."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from guidedinv.models.adm import ADMConfig
from guidedinv.training import CropSampler, Trainer, TrainSettings, export_safetensors

TINY = ADMConfig(model_channels=32, num_res_blocks=1, channel_mult=(1, 1), attention_ds=(), out_channels=3, head_channels=None)


def stripes(n: int = 6, size: int = 20) -> list[torch.Tensor]:
    """Synthetic uint8 images: vertical stripes of random period, a structure a tiny net can learn."""
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        period = int(torch.randint(2, 6, (1,), generator=g))
        row = ((torch.arange(size) // period) % 2 * 255).to(torch.uint8)
        out.append(row.expand(3, size, size).contiguous())
    return out


def settings(steps: int, **kw) -> TrainSettings:
    return TrainSettings(steps=steps, batch=4, checkpoint_every=2, log_every=1, network=TINY.to_dict(), **kw)


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    data = CropSampler(stripes(), 16)
    straight = Trainer(settings(4), data, tmp_path / "a")
    straight.train()
    first = Trainer(settings(2), data, tmp_path / "b")
    first.train()
    resumed = Trainer(settings(4), data, tmp_path / "b")
    assert resumed.resume() and resumed.step == 2
    resumed.train()
    for (name, p), q in zip(straight.ema.state_dict().items(), resumed.ema.state_dict().values()):
        assert torch.equal(p, q), name
    rows = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]


def test_resume_refuses_other_settings(tmp_path):
    data = CropSampler(stripes(), 16)
    Trainer(settings(2), data, tmp_path).train()
    other = Trainer(settings(2, lr=1e-3), data, tmp_path)
    with pytest.raises(ValueError, match="lr"):
        other.resume()


def test_training_makes_a_better_denoiser_on_a_learnable_toy(tmp_path):
    # the v-loss averaged over all t has a high floor (x0 is unknowable at t ~ T), so measure what
    # training is for: the x0 error at a fixed, moderate noise level on a fixed held-out batch
    data = CropSampler(stripes(), 16)
    trainer = Trainer(TrainSettings(steps=60, batch=8, lr=3e-3, warmup=5, log_every=10, checkpoint_every=1000,
                                    network=TINY.to_dict()), data, tmp_path)
    x0, _ = data.batch(16, torch.Generator().manual_seed(99))
    t = torch.full((16,), 150)
    ab = float(trainer.schedule.alpha_bar(150))
    x_t = ab**0.5 * x0 + (1 - ab) ** 0.5 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(98))

    def x0_error():
        with torch.no_grad():
            v = trainer.net(x_t, t)
        return float(((ab**0.5 * x_t - (1 - ab) ** 0.5 * v) - x0).pow(2).mean())

    before = x0_error()
    trainer.train()
    after = x0_error()
    assert after < 0.5 * before, (before, after)


def test_crops_are_in_range_and_augmented():
    images = [torch.arange(3 * 20 * 24, dtype=torch.int64).reshape(3, 20, 24).remainder(256).to(torch.uint8)]
    data = CropSampler(images + [torch.zeros(3, 8, 8, dtype=torch.uint8)], 16)
    assert data.skipped == 1  # smaller than the crop
    x, labels = data.batch(32, torch.Generator().manual_seed(1))
    assert x.shape == (32, 3, 16, 16) and labels is None
    assert float(x.min()) >= -1 and float(x.max()) <= 1
    assert len({tuple(c.flatten()[:5].tolist()) for c in x}) > 8  # different crops and orientations


def test_export_carries_its_own_description(tmp_path):
    net = Trainer(settings(1), CropSampler(stripes(), 16), tmp_path).ema
    path = export_safetensors(net, TINY, tmp_path / "m.safetensors", schedule="linear", prediction="v", kind="prior",
                              card={"steps": 1})
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        assert set(f.keys()) == set(net.state_dict())
    assert ADMConfig.from_dict(json.loads(meta["config"])) == TINY
    assert meta["prediction"] == "v" and meta["schedule"] == "linear" and json.loads(meta["card"]) == {"steps": 1}


# -- the commands on labelled folders (ImageFolder layout) ------------------------------------------
def _labelled_folder(root, per_class=6, size=20):
    """Two classes a classifier can tell apart at low noise: reddish and bluish noisy images."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for _k, name in enumerate(["blue", "red"]):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            base = np.array([40, 60, 200] if name == "blue" else [200, 50, 40], dtype=float)
            img = np.clip(base + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / name / f"{i}.png")
    return root


def _run(*args):
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "guidedinv", *args], env=env, capture_output=True, text=True, timeout=300)


def test_train_classifier_and_cond_prior_on_a_labelled_folder_load_back_with_their_classes(tmp_path):
    from guidedinv.models import load_denoiser, load_model

    data = _labelled_folder(tmp_path / "data")
    done = _run("train", "classifier", str(data), "--out", str(tmp_path / "clf"), "--steps", "150", "--crop", "16",
                "--batch", "16", "--channels", "32", "--mult", "1,1", "--lr", "3e-3", "--ema", "0.9", "--device", "cpu",
                "--export-dtype", "fp16", "-q")
    assert done.returncode == 0, done.stderr
    card = json.loads((tmp_path / "clf" / "card.json").read_text())
    assert card["classes"] == ["blue", "red"] and card["export_dtype"] == "fp16"
    clf = load_model(tmp_path / "clf" / "model.safetensors", device="cpu")
    with safe_open(str(tmp_path / "clf" / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys() if f.get_tensor(k).is_floating_point()} == {torch.float16}
    # at a low noise level the classifier separates the two colours
    sampler = CropSampler.from_labelled_folder(data, 16)
    x0, labels = sampler.batch(64, torch.Generator().manual_seed(1))
    t = torch.full((64,), 50)
    from guidedinv.schedule import VPSchedule

    ab = VPSchedule.linear().alpha_bar(50)  # the schedule it was trained on (linear, the default)
    x_t = ab ** 0.5 * x0 + (1 - ab) ** 0.5 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        accuracy = float((clf(x_t, t).argmax(1) == labels).float().mean())
    assert accuracy > 0.9, accuracy  # chance is 0.5

    done = _run("train", "cond-prior", str(data), "--out", str(tmp_path / "cond"), "--steps", "3", "--crop", "16",
                "--channels", "32", "--mult", "1,2", "--res-blocks", "1", "--label-dropout", "0.2", "--device", "cpu", "-q")
    assert done.returncode == 0, done.stderr
    cond = load_denoiser(tmp_path / "cond" / "model.safetensors", device="cpu")
    assert cond.prediction == "v" and cond.num_classes == 2 and cond.null_label_index == 2
    assert json.loads((tmp_path / "cond" / "card.json").read_text())["label_dropout"] == 0.2


@pytest.mark.parametrize("layout, needle", [
    ("loose", "outside a class folder"),
    ("one-class", "at least 2"),
    ("empty-class", "holds no images"),
    ("missing", "no such folder"),
])
def test_bad_labelled_folders_are_one_line_errors(tmp_path, layout, needle):
    from PIL import Image

    root = tmp_path / "data"
    if layout != "missing":
        (root / "a").mkdir(parents=True)
        Image.new("RGB", (20, 20)).save(root / "a" / "0.png")
    if layout == "loose":
        (root / "b").mkdir()
        Image.new("RGB", (20, 20)).save(root / "b" / "0.png")
        Image.new("RGB", (20, 20)).save(root / "stray.png")
    if layout == "empty-class":
        (root / "b").mkdir()
    done = _run("train", "classifier", str(root), "--out", str(tmp_path / "out"), "--steps", "1", "--crop", "16", "-q")
    assert done.returncode == 2 and needle in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
