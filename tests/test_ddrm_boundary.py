"""DDRM needs an exact SVD, which a blur has only when the solver's blur is circular (boundary
"padded" or "circular"): a "reflect" blur with ddrm is refused when the request is checked, in one
line naming what was typed and what would do, before any model loads and with nothing written."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_recipe_mask import invoke, refuse_models

from guidedinv.app.request import build_request
from guidedinv.errors import InputError

REFUSAL = ("operator.boundary = 'reflect': DDRM needs an operator with an exact SVD (a blur has one only with boundary "
           "\"padded\" or \"circular\"); use --set operator.boundary=\"padded\" or another method: pnp, diffpir, ddnm, dps, "
           "pigdm, daps, wiener, richardson_lucy, tv_deconv")


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "img.png")
    (tmp_path / "reflect.toml").write_text('task = "deblur"\nmethod = "pnp"\n[operator]\nkernel = "gaussian:1.0"\n'
                                           'size = 5\nboundary = "reflect"\n')
    refuse_models(monkeypatch)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("args, source", [
    (["--method", "ddrm", "--set", "operator.boundary=reflect"], "--set operator.boundary=reflect"),
    (["--method", "ddrm", "--set", 'operator.boundary="reflect"'], '--set operator.boundary="reflect"'),
    (["--task", "reflect.toml", "--method", "ddrm"], "--method ddrm"),
    (["--set", "operator.boundary=reflect", "--set", "method=ddrm"], "--set method=ddrm"),
], ids=["set-boundary", "set-quoted", "task-file", "set-method"])
def test_ddrm_with_a_reflect_blur_is_a_usage_error_before_any_model_loads(work, capsys, args, source):
    before = sorted(os.listdir(work))
    code, err = invoke(capsys, "deblur", "img.png", *args, "-o", "out.png")
    assert code == 2
    assert err.strip().splitlines() == [f"guidedinv: error: {source}: {REFUSAL}"]
    assert sorted(os.listdir(work)) == before  # nothing written


def test_what_the_refusal_offers_is_accepted():
    for sets in (['method="ddrm"', 'operator.boundary="padded"'], ['method="ddrm"', 'operator.boundary="circular"'],
                 ['method="ddnm"', 'operator.boundary="reflect"'], ['method="wiener"', 'operator.boundary="reflect"']):
        request = build_request("deblur", sets=sets)
        assert (request.method, request.operator.boundary) == (sets[0][8:-1], sets[1][19:-1])
    for task, sets in (("inpaint", []), ("superres", []), ("denoise", [])):  # no boundary: other kinds are untouched
        assert build_request(task, sets=['method="ddrm"', *sets]).method == "ddrm"
    with pytest.raises(InputError) as info:
        build_request("deblur", sets=['method="ddrm"', 'operator.boundary="reflect"'])
    assert str(info.value) == f'--set operator.boundary="reflect": {REFUSAL}'
