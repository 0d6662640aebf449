"""Requests beyond one image: a list of images of different sizes, and an extra class-guidance term
beside the measurement (classifier guidance or classifier-free), on the toy models."""
from __future__ import annotations

import sys

import pytest
import torch
from PIL import Image

from guidedinv.app import build_request, restore
from guidedinv.cli import run
from guidedinv.errors import InputError
from guidedinv.toy.data import make_dataset
from guidedinv.toy.evaluate import load_toy


@pytest.fixture(scope="module")
def toy():
    return load_toy()


def test_a_list_of_sizes_restores_each_image_as_alone(toy):
    request = build_request("denoise", sets=['model="toy-prior"', 'methods.pnp.steps="logsnr4"', "tile=0"])
    images = [torch.rand(3, 16, 16), torch.rand(3, 16, 24), torch.rand(1, 24, 16)]
    outs = restore(toy.prior, request, images, seeds=[3, 4, 5])
    assert [tuple(o.shape) for o in outs] == [(3, 16, 16), (3, 16, 24), (1, 24, 16)]
    for image, seed, out in zip(images, (3, 4, 5), outs):
        alone = restore(toy.prior, request, image[None], seeds=[seed])[0]
        torch.testing.assert_close(out, alone, rtol=0, atol=0)


def _target_probability(toy, x: torch.Tensor, label: int) -> float:
    with torch.no_grad():
        logits = toy.clean_classifier(x * 2 - 1, torch.zeros(x.shape[0], dtype=torch.long))
    return float(logits.softmax(-1)[:, label].mean())


def test_class_guidance_joins_the_measurement_term(toy):
    """Inpaint the right half of discs (class 0) with guidance towards vertical stripes (3): the known
    half is kept, the scale-0 term is the unguided run exactly, and the clean classifier's probability
    of class 3 rises with the scale."""
    x, labels = make_dataset(20, seed=11)
    discs = (x[labels == 0] / 255.0).float()  # 4 discs
    base = ['model="toy-prior"', "tile=0", 'operator.mask="half"', 'method="ddnm"', 'methods.ddnm.steps="logsnr20"']
    plain = build_request("inpaint", sets=base)
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[:, 8:] = True
    y = discs * ~mask
    unguided = restore(toy.prior, plain, y, mask=mask, seeds=range(4))
    zero = restore(toy.prior, build_request("inpaint", sets=[*base, "guidance.class=3", "guidance.scale=0.0"]), y, mask=mask,
                   seeds=range(4), classifier=toy.classifier)
    torch.testing.assert_close(zero, unguided, rtol=0, atol=0)
    strong = restore(toy.prior, build_request("inpaint", sets=[*base, "guidance.class=3", "guidance.scale=20.0"]), y,
                     mask=mask, seeds=range(4), classifier=toy.classifier)
    torch.testing.assert_close(strong[..., ~mask], discs[..., ~mask], rtol=0, atol=2e-4)  # DDNM keeps the known half (float32)
    assert _target_probability(toy, strong, 3) > _target_probability(toy, unguided, 3) + 0.1


def test_class_guidance_from_the_command_line(tmp_path, monkeypatch, capsys):
    x, _ = make_dataset(1, seed=2)
    Image.fromarray(x[0].permute(1, 2, 0).numpy()).save(tmp_path / "toy.png")
    monkeypatch.chdir(tmp_path)
    common = ["guidedinv", "inpaint", "toy.png", "--mask", "half", "--model", "toy-prior", "--tile", "0", "--steps", "logsnr6"]
    monkeypatch.setattr(sys, "argv", [*common, "--class", "3", "--classifier", "toy-classifier", "-o", "out.png"])
    with pytest.raises(SystemExit) as stop:
        run()
    assert stop.value.code in (0, None), capsys.readouterr().err
    assert "guidance" in (tmp_path / "out.recipe.toml").read_text()
    monkeypatch.setattr(sys, "argv", [*common, "--class", "7", "--classifier", "toy-classifier", "-o", "bad.png"])
    with pytest.raises(SystemExit) as stop:
        run()
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "knows classes 0..4" in err and not (tmp_path / "bad.png").exists()
    monkeypatch.setattr(sys, "argv", [*common, "--class", "1", "-o", "bad.png"])  # an unconditional prior, no classifier
    with pytest.raises(SystemExit) as stop:
        run()
    assert stop.value.code == 2 and "unconditional" in capsys.readouterr().err


def test_guidance_needs_a_class():
    with pytest.raises(InputError, match="guidance.class"):
        build_request("inpaint", sets=["guidance.scale=2.0"])
