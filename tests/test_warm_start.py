"""Recipe-level method settings through guidedinv.app.solve on a tiny untrained network: warm starts
(a guided method starting from a classical estimate noised to start_sigma), the plug-and-play
method, and DDNM's noise rule."""
from __future__ import annotations

import pytest
import torch
from conftest import save_tiny_prior

from guidedinv.app.recipes import apply_overrides, load_recipe
from guidedinv.app.solve import restore, run_classical, warm_start
from guidedinv.errors import InputError
from guidedinv.io import to_model_range
from guidedinv.models import load_denoiser


@pytest.fixture(scope="module")
def prior(tmp_path_factory):
    path = tmp_path_factory.mktemp("warm") / "tiny.safetensors"
    save_tiny_prior(path)
    return load_denoiser(path, device="cpu")


def lows(batch=2, h=8, w=8):
    return torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(3))


def superres(*sets):
    return apply_overrides(load_recipe("superres"), ["operator.scale=2", 'method="pnp"', 'methods.pnp.steps="logsnr4"', *sets])


def test_warm_start_is_the_classical_estimate_at_the_timestep_of_start_sigma(prior):
    recipe = superres('methods.pnp.init="lanczos"', "methods.pnp.start_sigma=0.3")
    y = lows()
    init, t = warm_start(recipe, prior, y, None)
    expected = to_model_range(run_classical(recipe, y, method="lanczos"))
    torch.testing.assert_close(init, expected, rtol=0, atol=0)
    assert t == prior.schedule.t_from_sigma(0.3) and abs(prior.schedule.sigma(t) / 0.3 - 1) < 0.05
    assert warm_start(superres(), prior, y, None) == (None, None)


def test_warm_started_results_are_per_image_and_reproducible(prior):
    recipe = superres('methods.pnp.init="bicubic"', "methods.pnp.start_sigma=0.5")
    y = lows(3)
    both = restore(prior, recipe, y, seeds=[5, 6, 7])
    assert both.shape == (3, 3, 16, 16)
    torch.testing.assert_close(restore(prior, recipe, y[1:2], seeds=[6]), both[1:2], rtol=0, atol=1e-6)
    torch.testing.assert_close(restore(prior, recipe, y, seeds=[5, 6, 7]), both, rtol=0, atol=0)


def test_a_start_at_the_lowest_level_keeps_the_estimate_where_the_data_pins_it(prior):
    """Noiseless inpainting started at t = 0 from the biharmonic fill: the known pixels are the
    measurement exactly (the proximal step with sigma_y = 0 is a hard projection)."""
    recipe = apply_overrides(load_recipe("inpaint"), ['method="pnp"', "noise.sigma_y=0.0", 'methods.pnp.steps="1"',
                                                      "methods.pnp.start_sigma=0.011"])
    x = lows(1, 16, 16)
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[4:12, 4:12] = True
    out = restore(prior, recipe, x * ~mask, mask=mask)
    torch.testing.assert_close(out[..., ~mask], x[..., ~mask], rtol=0, atol=1e-6)


@pytest.mark.parametrize("sets, needle", [
    (['methods.pnp.init="wiener"'], "does not solve superres; choose from bicubic, lanczos"),
    (['methods.pnp.init="nonsense"'], "expected one of none, bicubic"),
    (["methods.pnp.start_sigma=0.5"], "start_sigma needs methods.pnp.init"),
    (['methods.pnp.init="lanczos"', "methods.pnp.start_sigma=0"], "start_sigma = 0: expected a number > 0"),
    (['methods.pnp.init="lanczos"', "methods.pnp.start_sigma=0.3", 'methods.pnp.steps="logsnr200"'], "below init_t"),
])
def test_bad_warm_start_settings_are_input_errors(prior, sets, needle):
    with pytest.raises((InputError, ValueError), match=needle):
        restore(prior, superres(*sets), lows(1))


def test_init_none_switches_a_presets_warm_start_off_with_its_level(prior):
    """The inpaint preset starts pnp from the biharmonic fill at start_sigma 0.5; --set
    methods.pnp.init="none" starts from pure noise, and the written recipe holds no start_sigma."""
    from guidedinv.app.request import build_request, parse_request

    warm = build_request("inpaint", sets=[])
    cold = build_request("inpaint", sets=['methods.pnp.init="none"'])
    assert warm.settings["init"] == "biharmonic" and warm.settings["start_sigma"] == 0.5
    assert cold.settings["init"] == "none" and "start_sigma" not in cold.settings
    assert "start_sigma" not in cold.recipe["methods"]["pnp"] and parse_request(cold.recipe, "resolved") == cold


def test_ddnm_noise_rule_is_a_recipe_setting(prior):
    """methods.ddnm.noise_rule reaches the Projection term: on a noisy circular blur the two rules differ."""
    from guidedinv.app.solve import build_operator, plan_method
    from guidedinv.guidance import Projection

    recipe = apply_overrides(load_recipe("deblur"), ['method="ddnm"', 'operator.boundary="circular"', "operator.size=5",
                                                     'operator.kernel="gaussian:1.0"'])
    op = build_operator(recipe, (8, 8))
    y = torch.zeros(1, 3, 8, 8)
    for rule in ("svd", "scalar"):
        plan = plan_method(apply_overrides(recipe, [f'methods.ddnm.noise_rule="{rule}"']), op, y)
        assert isinstance(plan.terms[0], Projection) and plan.terms[0].noise_rule == rule
    with pytest.raises(InputError, match="noise_rule"):
        plan_method(apply_overrides(recipe, ['methods.ddnm.noise_rule="bogus"']), op, y)
