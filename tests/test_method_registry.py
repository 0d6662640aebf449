"""The registry is the one place a method lives: a method object added to it is usable by the
request checks, the command line and restore() with no other change (what a new method file plus
its registration line does), and every registered method is self-consistent."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image

from guidedinv.app import build_request, restore
from guidedinv.app.methods import METHODS, GuidedMethod, get_method, methods_for_kind
from guidedinv.app.methods.base import ClassicalMethod, Setting
from guidedinv.cli import run
from guidedinv.errors import InputError


class MedianFilter(ClassicalMethod):
    """A toy classical denoiser: the per-channel median of a size x size window."""

    name = "median"
    summary = "median filter (toy)"
    kinds = ("identity",)
    settings = (Setting("size", "int", 3, "window side (odd)", low=1, high=15),)

    def solver(self, settings, operator, sigma_y):
        from scipy.ndimage import median_filter

        size = settings["size"]
        return lambda y, _: np.stack([median_filter(y[..., c], size=size, mode="reflect") for c in range(y.shape[-1])], -1)


@pytest.fixture()
def registered(monkeypatch):
    monkeypatch.setitem(METHODS, "median", MedianFilter())


def test_a_registered_method_is_checked_and_run_like_the_others(registered, tmp_path, monkeypatch, capsys):
    assert "median" in methods_for_kind("identity") and "median" not in methods_for_kind("blur")
    request = build_request("denoise", sets=['method="median"', "methods.median.size=5"])
    y = torch.rand(1, 3, 12, 12)
    out = restore(None, request, y)
    from scipy.ndimage import median_filter

    expected = median_filter(y[0, 0].double().numpy(), size=5, mode="reflect")
    np.testing.assert_allclose(out[0, 0].double().numpy(), expected, atol=1e-6)
    with pytest.raises(InputError, match="methods.median.size = 40"):
        build_request("denoise", sets=['method="median"', "methods.median.size=40"])
    with pytest.raises(InputError, match="works for denoise only"):
        build_request("deblur", sets=['method="median"'])
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["guidedinv", "denoise", "x.png", "--method", "median", "-o", "m.png"])
    with pytest.raises(SystemExit) as stop:
        run()
    assert stop.value.code in (0, None)
    assert "wrote m.png, m.recipe.toml (median, no network" in capsys.readouterr().out
    assert 'method = "median"' in (tmp_path / "m.recipe.toml").read_text()


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_is_self_consistent(name):
    method = get_method(name)
    settings = method.check_settings({}, f"methods.{name}")
    assert method.kinds and all(k in ("inpaint", "downsample", "blur", "identity", "edit") for k in method.kinds)
    assert method.summary and all(s.help for s in method.settings)
    if isinstance(method, GuidedMethod):
        cost = method.cost(settings)
        assert cost.forward >= 1 and cost.backward in (0, cost.forward)
        for budget in (4, 20):
            steps = method.steps_for_budget(settings, budget)
            assert method.cost({**settings, "steps": steps}).forward <= budget
    else:
        assert method.cost(settings).forward == 0
