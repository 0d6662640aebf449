"""DAPS (guidedinv.daps: the Annealing path and the DAPSStep rule on the one sampler; the method
app/methods/daps.py) against closed forms on the exact Gaussian prior.

* the posterior draw of one level equals the dense-matrix formula: mean M^-1 (scale A^T y / sigma^2 +
  x0_hat / r^2) and noise M^-1/2 z, M = scale A^T A / sigma^2 + I / r^2, for every operator with a
  spectral form (1e-10, float64), its covariance is M^-1; perturb-and-MAP (no spectral form) equals
  its own dense formula, whose covariance is M^-1 too; sigma_y = 0 keeps A x = y;
* as the levels grow denser, DAPS with ode_steps = 1 (x0_hat = E[x0 | x_t], exact here) and exact
  draws approaches the closed-form posterior p(x0 | y): Monte Carlo over 2000 samples of 4 x 4 and
  6 x 5 images; errors (|mean - posterior mean|, ||cov - posterior cov||_F / ||posterior cov||_F)
  shrink from 5 to 25 to 200 levels ("logsnrN"), and stay within stated bounds at 200 (measured
  values in the comments);
* scale 0 (and no operator) is the unguided annealing, bit for bit, which samples the prior;
* items do not depend on their batch (exact, perturb-and-MAP and Langevin draws);
* the path makes levels x ode_steps network calls, which the method's cost counts;
* the method through restore() on a tiny untrained network: every task with its preset (warm
  starts included), the reflect-boundary blur (perturb-and-MAP), per-seed results.
"""
from __future__ import annotations

import math

import pytest
import torch
from conftest import save_tiny_prior
from test_measurement_guidance import smooth_prior

from guidedinv import NoiseSource, sample
from guidedinv.app import build_request, restore
from guidedinv.app.methods import get_method
from guidedinv.daps import Annealing, DAPSStep, posterior_sample
from guidedinv.errors import InputError
from guidedinv.guidance import gaussian_posterior, operator_matrix
from guidedinv.models import load_denoiser
from guidedinv.operators import Blur, Downsample, Identity, Inpainting, gaussian_kernel
from guidedinv.schedule import VPSchedule, respace

F64 = torch.float64
SIGMA_Y = 0.05  # [0, 1] scale: 0.1 on the model range
MASK = torch.rand(4, 4, generator=torch.Generator().manual_seed(1)) > 0.5
OPERATORS = {  # (image shape, operator); every one has a spectral form but "blur-reflect"
    "inpaint": ((3, 4, 4), lambda: Inpainting(MASK)),
    "sr2-bicubic": ((1, 8, 8), lambda: Downsample(2)),
    "sr2-average": ((1, 4, 6), lambda: Downsample(2, "average")),
    "blur-circular": ((1, 6, 5), lambda: Blur(gaussian_kernel(3, 0.7), "circular")),
    "identity": ((1, 3, 4), lambda: Identity()),
    "blur-reflect": ((1, 6, 5), lambda: Blur(gaussian_kernel(3, 1.0), "reflect")),
}


class Draws(NoiseSource):
    """Hands out the given tensors in order (one per draw), whatever shape is asked for."""

    def __init__(self, *draws):
        super().__init__([torch.Generator()])
        self.draws = list(draws)

    def randn_like(self, x):
        out = self.draws.pop(0)
        assert out.shape == x.shape, (out.shape, x.shape)
        return out


class BatchDraws(NoiseSource):
    """One stream for the whole batch: fast Monte Carlo (batch independence is tested separately)."""

    def __init__(self, n, seed):
        super().__init__([torch.Generator()])
        self.n, self.gen = n, torch.Generator().manual_seed(seed)

    def __len__(self):
        return self.n

    def randn(self, shape, dtype=F64, device="cpu"):
        return torch.randn((self.n, *shape), generator=self.gen, dtype=dtype)

    def randn_like(self, x):
        return torch.randn(x.shape, generator=self.gen, dtype=x.dtype)


def sym_power(m, p):
    lam, u = torch.linalg.eigh(m)
    return u @ torch.diag(lam.clamp(min=0) ** p) @ u.T


@pytest.mark.parametrize("name", list(OPERATORS))
@pytest.mark.parametrize("scale", [1.0, 0.3])
def test_posterior_draw_equals_the_dense_formula(name, scale):
    shape, make = OPERATORS[name]
    op = make()
    gen = torch.Generator().manual_seed(3)
    x0 = torch.randn(2, *shape, generator=gen, dtype=F64)
    y = op.A(torch.randn(2, *shape, generator=gen, dtype=F64))
    z = torch.randn(2, *shape, generator=gen, dtype=F64)
    z2 = torch.randn(y.shape, generator=gen, dtype=F64)
    r, sigma = 0.7, 2 * SIGMA_Y
    amat = operator_matrix(op, shape)
    d = amat.shape[1]
    prec = scale * amat.T @ amat / sigma**2 + torch.eye(d, dtype=F64) / r**2
    cov = torch.linalg.inv(prec)
    flat = lambda t: t.reshape(2, -1)  # noqa: E731
    got = flat(posterior_sample(op, x0, y, r, sigma, scale, Draws(z, z2)))
    mean = (scale * flat(y) @ amat / sigma**2 + flat(x0) / r**2) @ cov
    if op.spectral(x0) is not None:  # mean + M^-1/2 z, one image of noise
        want = mean + flat(z) @ sym_power(cov, 0.5)
        noise_map = cov @ sym_power(prec, 0.5)  # the draw's linear map of z: must be M^-1/2 ...
    else:  # perturb-and-MAP: prox(x0 + r z, y + sigma/sqrt(scale) z2)
        want = mean + (flat(z) / r + math.sqrt(scale) * flat(z2) @ amat / sigma) @ cov
        noise_map = torch.cat([cov / r, math.sqrt(scale) * cov @ amat.T / sigma], 1)
    err = float((got - want).abs().max())
    assert err < 1e-8 if name == "blur-reflect" else err < 1e-10, err  # conjugate gradients stop at 1e-10 relative
    torch.testing.assert_close(noise_map @ noise_map.T, cov, rtol=0, atol=1e-12)  # ... so the covariance is M^-1


@pytest.mark.parametrize("name", ["inpaint", "sr2-bicubic", "blur-reflect"])
def test_noiseless_draw_keeps_the_measurement(name):
    shape, make = OPERATORS[name]
    op = make()
    gen = torch.Generator().manual_seed(4)
    x0 = torch.randn(2, *shape, generator=gen, dtype=F64)
    y = op.A(torch.randn(2, *shape, generator=gen, dtype=F64))
    x = posterior_sample(op, x0, y, 0.5, 0.0, 1.0, NoiseSource.from_seeds([1, 2]))
    assert float((op.A(x) - y).abs().max()) < (1e-8 if name == "blur-reflect" else 1e-12)
    if name == "inpaint":  # the unmeasured pixels: x0_hat + r z, the prior's tether alone
        z = NoiseSource.from_seeds([1, 2]).randn_like(x0)
        torch.testing.assert_close(x[:, :, ~MASK], (x0 + 0.5 * z)[:, :, ~MASK], rtol=0, atol=1e-12)


def daps_moments(prior, rule, levels, n=3000, ode_steps=1, seed=0):
    x = sample(prior, (n, *prior.event_shape), BatchDraws(n, seed), steps=levels, rule=rule,
               resample=Annealing(ode_steps), dtype=F64).reshape(n, -1)
    return x.mean(0), torch.cov(x.T)


@pytest.mark.parametrize("name, shape", [("sr2-bicubic", (1, 4, 4)), ("blur-circular", (1, 6, 5))])
def test_more_levels_approach_the_closed_form_posterior(name, shape):
    op = OPERATORS[name][1]()
    prior = smooth_prior(shape)
    truth = prior.sample(1, torch.Generator().manual_seed(5))
    y = op.A(truth) + 2 * SIGMA_Y * torch.randn(op.out_shape(truth.shape), generator=torch.Generator().manual_seed(6), dtype=F64)
    post_mean, post_cov = gaussian_posterior(prior, op, y, 2 * SIGMA_Y)
    errors = []
    for levels in ("logsnr5", "logsnr25", "logsnr200"):
        mean, cov = daps_moments(prior, DAPSStep(op, y, SIGMA_Y), levels, n=2000)
        errors.append((float((mean - post_mean.flatten()).norm()), float((cov - post_cov).norm() / post_cov.norm())))
    gap = float((prior.mean - post_mean.flatten()).norm())
    # measured (mean error, relative covariance error) at 5 / 25 / 200 levels, 2000 samples, two seeds:
    # sr2-bicubic (gap 2.1): (0.15-0.17, 18) / (0.038-0.046, 0.34) / (0.008-0.012, 0.07-0.09);
    # blur-circular (gap 2.2): (1.33, 4.0) / (0.17, 0.17-0.19) / (0.027-0.033, 0.10-0.11);
    # the Monte Carlo floor of the 200-level figures is about 0.01 and 0.06. Directions where the
    # posterior's variance is small converge slowest (the chain is a Langevin step of size sigma_t^2
    # per level): inpainting this smooth prior is still at (0.05, 0.14) with 200 and with 400 levels.
    (m5, c5), (m25, c25), (m200, c200) = errors
    assert m5 > m25 > m200 and c5 > c25 > c200, errors
    assert m200 < 0.05 < 0.1 * gap, (errors, gap)
    assert c200 < 0.15, errors


def test_scale_zero_is_the_unguided_annealing_which_samples_the_prior():
    shape, op = (1, 4, 4), Downsample(2)
    prior = smooth_prior(shape)
    y = op.A(prior.sample(1, torch.Generator().manual_seed(5)))
    run = lambda rule: sample(prior, (3, *shape), NoiseSource.from_seeds([4, 5, 6]), steps="8", rule=rule,  # noqa: E731
                              resample=Annealing(2), dtype=F64)
    unguided = run(DAPSStep(None))
    assert torch.equal(run(DAPSStep(op, y, SIGMA_Y, scale=0.0)), unguided)
    assert not torch.equal(run(DAPSStep(op, y, SIGMA_Y)), unguided)
    mean, cov = daps_moments(prior, DAPSStep(None), "logsnr200", n=2000)
    # measured: mean 0.030 (Monte Carlo floor ~0.04: prior variances 0.26), covariance 0.055
    assert float((mean - prior.mean).norm()) < 0.1
    assert float((cov - prior.cov).norm() / prior.cov.norm()) < 0.1


@pytest.mark.parametrize("name, inner", [("sr2-bicubic", "exact"), ("blur-reflect", "exact"), ("inpaint", "langevin")])
def test_items_do_not_depend_on_their_batch(name, inner):
    shape, make = OPERATORS[name]
    op = make()
    prior = smooth_prior(shape)
    y = op.A(prior.sample(3, torch.Generator().manual_seed(5)))
    rule = DAPSStep(op, y, SIGMA_Y, inner=inner, langevin_steps=5, lr=1e-3)
    batch = sample(prior, (3, *shape), NoiseSource.from_seeds([7, 8, 9]), steps="6", rule=rule, resample=Annealing(2), dtype=F64)
    for i, seed in enumerate([7, 8, 9]):
        alone_rule = DAPSStep(op, y[i : i + 1], SIGMA_Y, inner=inner, langevin_steps=5, lr=1e-3)
        alone = sample(prior, (1, *shape), NoiseSource.from_seeds([seed]), steps="6", rule=alone_rule,
                       resample=Annealing(2), dtype=F64)
        # conjugate gradients (blur-reflect) stop at 1e-10 relative, which batched rounding can move
        torch.testing.assert_close(alone[0], batch[i], rtol=0, atol=1e-9 if name == "blur-reflect" else 1e-12)


def test_langevin_steps_sample_the_same_gaussian():
    shape, make = OPERATORS["sr2-average"]
    op = make()
    n = 2000
    x0 = torch.zeros(1, *shape, dtype=F64).expand(n, *shape)
    y = op.A(torch.randn(1, *shape, generator=torch.Generator().manual_seed(2), dtype=F64))
    r, sigma = 0.3, 0.2
    exact = posterior_sample(op, x0, y, r, sigma, 1.0, BatchDraws(n, 1)).reshape(n, -1)
    rule = DAPSStep(op, y, sigma / 2, inner="langevin", langevin_steps=300, lr=3e-3)
    from guidedinv.daps import _langevin

    lang = _langevin(op, x0, y.expand(n, *y.shape[1:]), r, sigma, 1.0, rule.langevin_steps, rule.lr, BatchDraws(n, 2))
    lang = lang.reshape(n, -1)
    # measured: means 0.023 apart (Monte Carlo: about 0.01 per entry, 24 entries), variances 2.0% apart
    # (the step's discretisation bias ~ lr / r^2 / 2 = 1.7%)
    assert float((lang.mean(0) - exact.mean(0)).abs().max()) < 0.04
    assert abs(float(lang.var(0).sum() / exact.var(0).sum()) - 1) < 0.05


def test_path_and_cost_count_the_network_calls():
    schedule = VPSchedule.linear()
    grid = respace("5", 1000)
    path = Annealing(3).walk(grid, schedule)
    assert path[:4] == [999, path[1], path[2], -1] and 999 > path[1] > path[2] > 0 and path[-2:] == [0, -1]
    assert Annealing(3).calls(grid, schedule) == 4 * 3 + 1  # the level at t = 0 has one call
    method = get_method("daps")
    settings = method.check_settings({"steps": "10", "ode_steps": 3}, "methods.daps")
    assert method.cost(settings).forward == 9 * 3 + 1
    shape, make = OPERATORS["inpaint"]
    op = make()
    prior = smooth_prior(shape)
    seen = []
    sample(prior, (1, *shape), NoiseSource.from_seeds([0]), steps="10", rule=DAPSStep(op, op.A(prior.mean.reshape(1, *shape)), SIGMA_Y),
           resample=Annealing(3), callback=seen.append, dtype=F64)
    assert len(seen) == method.cost(settings).forward
    for nfe in (10, 20, 50):
        steps = method.steps_for_budget(settings, nfe)
        assert nfe - 3 < method.cost({**settings, "steps": steps}).forward <= nfe, (nfe, steps)


def test_bad_settings_are_input_errors():
    method = get_method("daps")
    for bad in ({"inner": "hmc"}, {"ode": "euler"}, {"tether": 0}, {"ode_steps": 0}, {"lr": -1}):
        with pytest.raises(InputError):
            method.check_settings(bad, "methods.daps")
    langevin = method.check_settings({"inner": "langevin"}, "methods.daps")
    with pytest.raises(InputError, match="sigma_y > 0"):
        method.check_request(langevin, 0.0, "methods.daps")
    op = Identity()
    with pytest.raises(InputError):
        DAPSStep(op, torch.zeros(1, 1, 2, 2), 0.0, inner="langevin")
    with pytest.raises(InputError):
        DAPSStep(op, torch.zeros(1, 1, 2, 2), 0.01, r_max=-1.0)


def test_langevin_step_is_capped_where_it_would_diverge():
    shape, make = OPERATORS["blur-circular"]
    op = make()
    prior = smooth_prior(shape)
    y = op.A(prior.sample(1, torch.Generator().manual_seed(5)))
    rule = DAPSStep(op, y, 0.01, inner="langevin", langevin_steps=50, lr=0.5)  # r down to 0.01 x tether at t = 0
    x = sample(prior, (2, *shape), NoiseSource.from_seeds([1, 2]), steps="logsnr6", rule=rule, resample=Annealing(1), dtype=F64)
    assert bool(torch.isfinite(x).all())
    assert float((op.A(x) - y).abs().max()) < 0.2  # and it still fits the measurement (noise 0.02)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny.safetensors"
    save_tiny_prior(path)
    return load_denoiser(path, device="cpu")


def test_method_restores_every_task(tiny):
    y = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    for task, extra, size in (("superres", ["operator.scale=2"], 16), ("deblur", ["operator.size=5"], 8),
                              ("deblur", ["operator.size=5", 'operator.boundary="reflect"', 'methods.daps.inner="langevin"'], 8),
                              ("inpaint", ['operator.mask="random:0.7"'], 8), ("denoise", [], 8)):
        request = build_request(task, sets=['method="daps"', 'methods.daps.steps="logsnr3"', "methods.daps.ode_steps=2", *extra])
        out = restore(tiny, request, y, seeds=[0, 1])
        assert out.shape == (2, 3, size, size) and bool(torch.isfinite(out).all()), (task, extra)
        torch.testing.assert_close(restore(tiny, request, y[1:], seeds=[1]), out[1:], rtol=0, atol=1e-5)
    with pytest.raises(InputError, match="needs noise.sigma_y > 0"):
        build_request("inpaint", sets=['method="daps"', 'methods.daps.inner="langevin"', "noise.sigma_y=0"])
