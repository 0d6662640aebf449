"""guidedinv.app.job, the one job sequence of the commands and the page: every input checked before
a model loads (the exact one-line messages), and a job's result the engine's own, pixel for pixel."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import save_tiny_prior
from PIL import Image

from guidedinv import defaults
from guidedinv.app.job import JobOutputs, load_models, prepare_job, run_job, write_job_outputs
from guidedinv.app.measure import simulate_measurement
from guidedinv.app.request import build_request
from guidedinv.app.solve import restore
from guidedinv.errors import InputError
from guidedinv.io import read_image, read_mask


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("job")
    save_tiny_prior(d / "tiny.safetensors")
    mask = np.zeros((20, 24), np.uint8)
    mask[4:11, 5:16] = 255
    pixels = {"rgb.png": np.random.default_rng(1).integers(0, 256, (20, 24, 3), dtype=np.uint8), "mask.png": mask,
              "empty.png": np.zeros((20, 24), np.uint8), "small.png": np.full((10, 12), 255, np.uint8)}
    for name, array in pixels.items():
        Image.fromarray(array).save(d / name)
    return d


def _request(work: Path, task: str, *sets: str):
    return build_request(task, sets=[f"model={json.dumps(str(work / 'tiny.safetensors'))}", *sets])


@pytest.fixture
def no_model(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the inputs were checked")

    monkeypatch.setattr(defaults, "load_prior", refuse)


def test_a_bad_mask_is_refused_with_the_commands_message(work, no_model):
    request = _request(work, "inpaint", 'methods.pnp.steps="3"')
    empty, small = work / "empty.png", work / "small.png"
    with pytest.raises(InputError) as info:
        prepare_job(request, work / "rgb.png", empty)
    assert str(info.value) == f"{empty}: mask is empty: it marks nothing to fill (white = fill)"
    with pytest.raises(InputError) as info:
        prepare_job(request, work / "rgb.png", small)
    assert str(info.value) == (f"{small}: mask is 12x10 pixels but the image is 24x20; a mask must have the image's size "
                               "(width x height)")


def test_an_edit_mask_of_another_size_is_refused(work, no_model):
    small = work / "small.png"
    with pytest.raises(InputError) as info:
        prepare_job(_request(work, "edit", f"operator.mask={json.dumps(str(small))}"), work / "rgb.png")
    assert str(info.value) == f"{small}: the mask is 12x10 but the image is 24x20; a mask must have the image's size"


def test_a_request_over_the_memory_is_refused_naming_the_result(work, no_model, monkeypatch):
    import guidedinv.memory_estimate as estimate

    monkeypatch.setattr(estimate, "available_memory", lambda device=None: 1000)
    request = _request(work, "superres", "operator.scale=4")
    for name in ("--out", "the result"):
        with pytest.raises(InputError) as info:
            prepare_job(request, work / "rgb.png", result_name=name)
        assert str(info.value).startswith(f"{name} (1 x 96x80 px) needs ") and "but only 1000 B is available" in str(info.value)
    classical = _request(work, "superres", "operator.scale=4", 'method="bicubic"')
    assert prepare_job(classical, work / "rgb.png").y.shape == (1, 3, 20, 24)  # no network: nothing to estimate
    with pytest.raises(InputError) as info:  # a bad budget is named by its flag
        prepare_job(request, work / "rgb.png", memory="12")
    assert str(info.value) == "--memory '12': expected at least 1M (1 MiB)"


def test_the_command_refuses_before_loading_and_writes_nothing(work, no_model, monkeypatch, capsys):
    import guidedinv.memory_estimate as estimate
    from guidedinv.cli import run

    monkeypatch.setattr(estimate, "available_memory", lambda device=None: 1000)
    monkeypatch.chdir(work)
    before = sorted(p.name for p in work.iterdir())
    monkeypatch.setattr(sys, "argv", ["guidedinv", "superres", "rgb.png", "--scale", "4", "--model", "tiny.safetensors",
                                      "--compare", "cmp.png", "-q"])
    with pytest.raises(SystemExit) as stop:
        run()
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code != 0 and len(err) == 1 and err[0].startswith("guidedinv: error: --out (1 x 96x80 px) needs "), err
    assert sorted(p.name for p in work.iterdir()) == before


def test_a_job_is_the_engines_restoration_pixel_for_pixel(work):
    request = _request(work, "inpaint", 'methods.pnp.steps="3"')
    job = prepare_job(request, work / "rgb.png", work / "mask.png", outputs=JobOutputs(work / "out.png", trajectory=work / "t.gif"))
    denoiser, classifier = load_models(request, "cpu")
    assert classifier is None
    seen: list[int] = []
    result = run_job(job, denoiser, classifier, callback=lambda info: seen.append(info.index))
    image = read_image(work / "rgb.png").image[None]
    direct = restore(denoiser, request, image, mask=read_mask(work / "mask.png", (20, 24)), seeds=[request.seed])
    assert torch.equal(result.x, direct[0].cpu()) and result.posterior is None
    assert seen == list(range(len(seen))) and len(seen) > 0 and len(result.frames) == len(seen)  # frames: a trajectory was asked


def test_a_simulated_job_restores_the_simulated_measurement(work):
    request = _request(work, "denoise", "noise.sigma_y=0.1", 'method="tv_denoise"')
    job = prepare_job(request, work / "rgb.png", simulate=True, outputs=JobOutputs(work / "den.png"))
    clean = read_image(work / "rgb.png").image
    m = simulate_measurement(request, clean[None])
    assert torch.equal(job.y, m.y) and torch.equal(job.shown_input, clean)
    assert load_models(request, "cpu") == (None, None)  # a classical method loads nothing
    result = run_job(job, None)
    assert torch.equal(result.x, restore(None, request, m.y, seeds=[request.seed])[0].cpu()) and result.frames == []


def test_the_outputs_written_are_the_planned_ones(work, tmp_path):
    request = _request(work, "inpaint", 'method="biharmonic"')
    planned = JobOutputs(tmp_path / "r.png", compare=tmp_path / "c.png", mask=tmp_path / "m.png", trajectory=tmp_path / "t.gif")
    job = prepare_job(request, work / "rgb.png", work / "mask.png", outputs=planned)
    written = write_job_outputs(job, run_job(job, None), recipe="seed = 0\n")
    # no steps, so no trajectory frames and no GIF
    assert written == [tmp_path / "r.png", tmp_path / "r.recipe.toml", tmp_path / "m.png", tmp_path / "c.png"]
    assert (tmp_path / "r.recipe.toml").read_text() == "seed = 0\n"
    assert np.array_equal(np.asarray(Image.open(tmp_path / "m.png")) > 127, np.asarray(Image.open(work / "mask.png")) > 127)
    width = Image.open(tmp_path / "c.png").width
    job.outputs.measurement_panel = False  # the page's and edit's comparison: input | result
    write_job_outputs(job, run_job(job, None))
    assert (width, Image.open(tmp_path / "c.png").width) == (24 * 3 + 4 * 2, 24 * 2 + 4)
    job.outputs = None
    with pytest.raises(ValueError, match="plans no outputs"):
        write_job_outputs(job, run_job(job, None))
