"""DDNM+'s per-singular-value noise rule (the Projection term's x0 correction plus the
NoisyProjectionStep rule, noise_rule="svd": DDRM's step) and the exact spectral decompositions it
runs on (guidedinv.operators.spectral).

* decompositions: V is invertible exactly, U diag(s) V^T is A, V diag(s) U^T is A^T, V diag(1/s) U^T is
  A^+, V diag(s^2) V^T is A^T A, checked against the dense matrix of A (odd and non-square sizes, 1 and
  3 channels); every filter V diag(g) V^T with g a function of s is a symmetric real matrix (the real
  FFT's half spectrum handled as pairs +-f);
* the rule itself: a sampling run (term + rule) equals the formula written out on a dense SVD of A
  (float64, 1e-10); with sigma_y = 0 it is DDNM's noiseless projection; items do not depend on their
  batch; the sampler's rule is the only one that steps and draws once per step; a term and a rule
  built from different settings are refused;
* accuracy against the closed-form posterior on the correlated Gaussian prior of
  test_measurement_guidance (ratio = |sample mean - posterior mean| / |prior mean - posterior mean|,
  256 samples, 20 steps like DDRM's; measured ratios with two seed sets in the comments). The scalar
  rule (eq. 19) fails on circular blurs because A^+ n is not white; the SVD rule does not. Like DDRM,
  the SVD rule's blend pulls toward the measurement by lambda_i per step whatever the step size, so on
  these problems its bias grows with the number of steps (blur: 0.16 at "20", 0.31 at "50", 0.64 at
  "200"); the bounds hold at 20.
"""
from __future__ import annotations

import math

import pytest
import torch
from test_measurement_guidance import SIGMA_Y, Float64Draws, problem, seeds  # problems "blur-circ", "blur-ill", "sr4-bicubic", "inpaint"

from guidedinv import DDIM, DDPM, NoiseSource, respace, sample
from guidedinv.errors import InputError
from guidedinv.guidance import GuidanceTerm, Projection, gaussian_posterior, operator_matrix
from guidedinv.operators import Blur, Compose, Downsample, Identity, Inpainting, gaussian_kernel, motion_kernel
from guidedinv.rules import NoisyProjectionStep

F64 = torch.float64
GEN = torch.Generator().manual_seed(0)
MASK = torch.rand(5, 7, generator=GEN) > 0.5
CHANNEL_MASK = torch.rand(3, 5, 7, generator=GEN) > 0.5

# (image shape (C, H, W), operator): odd, even and non-square sizes, 1 and 3 channels
DECOMPOSABLE = {
    "blur-gauss": ((1, 7, 5), lambda: Blur(gaussian_kernel(3, 1.0), "circular")),
    "blur-motion": ((3, 6, 9), lambda: Blur(motion_kernel(5, 0.5, 1), "circular")),
    "blur-box-zeros": ((1, 6, 6), lambda: Blur(torch.ones(3, 3), "circular")),  # |K| = 0 at some frequencies
    "blur-wide-kernel": ((1, 5, 4), lambda: Blur(gaussian_kernel(7, 2.0), "circular")),  # kernel larger than the image
    "sr-bicubic": ((3, 8, 12), lambda: Downsample(4)),
    "sr-bicubic-odd": ((1, 9, 6), lambda: Downsample(3)),
    "sr-average": ((1, 9, 6), lambda: Downsample(3, "average")),
    "sr-average-rgb": ((3, 6, 10), lambda: Downsample(2, "average")),
    "inpaint": ((3, 5, 7), lambda: Inpainting(MASK)),
    "inpaint-per-channel": ((3, 5, 7), lambda: Inpainting(CHANNEL_MASK)),
    "identity": ((1, 4, 6), lambda: Identity()),
    "compose-one": ((1, 7, 5), lambda: Compose(Blur(gaussian_kernel(3, 1.0), "circular"))),
}


def dense(fn, shape) -> torch.Tensor:
    """The matrix of a linear map on images of ``shape``, one column per pixel."""
    d = math.prod(shape)
    return fn(torch.eye(d, dtype=F64).reshape(d, *shape)).reshape(d, -1).T


@pytest.mark.parametrize("name", list(DECOMPOSABLE))
def test_spectral_decomposition_reproduces_the_operator(name):
    shape, make = DECOMPOSABLE[name]
    op = make()
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    spec = op.spectral(x)
    assert spec is not None
    torch.testing.assert_close(spec.from_spectral(spec.to_spectral(x)), x, rtol=0, atol=1e-10)
    amat = operator_matrix(op, shape)
    y = torch.randn(2, *op.out_shape((2, *shape))[1:], generator=torch.Generator().manual_seed(2), dtype=F64)
    d, m = amat.shape[1], amat.shape[0]
    assert float((spec.A(x).reshape(2, m) - x.reshape(2, d) @ amat.T).abs().max()) < 1e-10  # U diag(s) V^T = A
    assert float((spec.AT(y).reshape(2, d) - y.reshape(2, m) @ amat).abs().max()) < 1e-10  # V diag(s) U^T = A^T
    pinv = torch.linalg.pinv(amat)
    got = spec.from_spectral(spec.y_spec(y)).reshape(2, d)
    assert float((got - y.reshape(2, m) @ pinv.T).abs().max()) < 1e-8  # V diag(1/s) U^T = A^+ (s = 0 dropped)
    gram = dense(lambda v: spec.filter(v, spec.s**2), shape)
    assert float((gram - amat.T @ amat).abs().max()) < 1e-10
    proj = dense(lambda v: spec.filter(v, spec.measured.to(F64)), shape)
    assert float((proj - pinv @ amat).abs().max()) < 1e-8
    # a filter by any function of s is a real symmetric matrix: noise drawn in pixels and filtered
    # has covariance V diag(g^2) V^T, never a half-counted spectrum
    filt = dense(lambda v: spec.filter(v, torch.sqrt(spec.s) + 0.3), shape)
    assert float((filt - filt.T).abs().max()) < 1e-12
    sq = dense(lambda v: spec.filter(v, (torch.sqrt(spec.s) + 0.3) ** 2), shape)
    assert float((filt @ filt.T - sq).abs().max()) < 1e-10


def test_singular_values_are_those_of_the_dense_matrix():
    for name in ("sr-bicubic", "sr-average-rgb", "inpaint-per-channel", "blur-gauss", "blur-motion"):
        shape, make = DECOMPOSABLE[name]
        op = make()
        spec = op.spectral(torch.zeros(1, *shape, dtype=F64))
        want = torch.linalg.svdvals(operator_matrix(op, shape))
        if isinstance(op, Blur):  # the half spectrum plus the mirrored columns (-f_h, W - f_w), per channel
            h, w = shape[1:]
            mirror = spec.s[(-torch.arange(h)) % h][:, 1 : (w - 1) // 2 + 1]
            got = torch.cat([spec.s.flatten(), mirror.flatten()]).repeat(shape[0])
        else:
            got = spec.s.expand(1, *shape).flatten()
        assert len(got) == math.prod(shape)
        got, want = got[got > 1e-12].sort().values, want[want > 1e-12].sort().values
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_operators_without_an_exact_decomposition_fall_back_to_the_scalar_rule():
    x = torch.zeros(1, 1, 8, 8, dtype=F64)
    for op in (Blur(gaussian_kernel(3, 1.0), "reflect"), Blur(gaussian_kernel(3, 1.0), "symmetric"),
               Downsample(2, "average") @ Blur(gaussian_kernel(3, 1.0), "circular")):
        assert op.spectral(x) is None
        term = Projection(op, op.A(x), SIGMA_Y)
        assert term.spectral(x) is None
    op = Blur(gaussian_kernel(3, 1.0), "circular")
    assert Projection(op, op.A(x), SIGMA_Y).spectral(x) is not None
    assert Projection(op, op.A(x), SIGMA_Y, noise_rule="scalar").spectral(x) is None
    with pytest.raises(InputError, match="noise_rule"):
        Projection(op, op.A(x), SIGMA_Y, noise_rule="dense")


# -- the rule, written out on a dense SVD ------------------------------------------------------------
def ddrm_reference(prior, op, y, sigma_y, steps, eta, n, base):
    """DDNM+'s SVD step / DDRM (eta_b = 1) in VE spectral coordinates of a dense SVD of A."""
    shape = prior.event_shape
    amat = operator_matrix(op, shape)
    m, d = amat.shape
    u, sv, vh = torch.linalg.svd(amat, full_matrices=True)
    v = vh.T
    s = torch.zeros(d, dtype=F64)
    s[: len(sv)] = torch.where(sv > 1e-10 * sv.max(), sv, 0)
    meas = s > 0
    ybar = torch.zeros(n, d, dtype=F64)
    ybar[:, :m] = y.reshape(-1, m).expand(n, m) @ u
    ybar = torch.where(meas, ybar / torch.where(meas, s, 1), 0)
    sigma = 2 * sigma_y
    rho = torch.where(meas, sigma / torch.where(meas, s, 1), math.inf)
    rng, sched = seeds(n, base), prior.schedule
    path = sorted(respace(steps), reverse=True) + [-1]
    x = rng.randn(shape, F64)
    regimes = set()
    for t, t_next in zip(path, path[1:]):
        a, a1 = sched.alpha_bar(t), sched.alpha_bar(t_next)
        s_ddim = eta * math.sqrt((1 - a1) / (1 - a) * (1 - a / a1))
        sn = math.sqrt((1 - a1) / a1)
        e = min(s_ddim / math.sqrt(1 - a1), 1.0) if a1 < 1 else 0.0
        replace = meas & (rho <= sn)
        lam = torch.where(replace, 1.0, torch.where(meas, math.sqrt(1 - e * e) * sn / rho, 0.0))
        regimes |= {("replace", bool(replace.any())), ("blend", bool((meas & ~replace).any()))}
        x0 = prior(x, torch.full((n,), float(t))).x0.reshape(n, d)
        c0 = x0 @ v
        c0h = c0 + lam * (ybar - c0)
        eps = ((x.reshape(n, d) / math.sqrt(a) - (c0h @ v.T)) / math.sqrt((1 - a) / a)) @ v  # VE: (xb_t - x0h) / sigma_t
        nxt = c0h + (~meas).to(F64) * math.sqrt(1 - e * e) * sn * eps
        if a1 < 1:
            fresh = torch.where(meas, torch.sqrt(torch.clamp(sn**2 - (lam * rho) ** 2, min=0)), e * sn)
            nxt = nxt + fresh * (rng.randn_like(x).reshape(n, d) @ v)
        x = (math.sqrt(a1) * nxt @ v.T).reshape(n, *shape)
    return x, regimes


@pytest.mark.parametrize("name", ["blur-circ", "sr4-bicubic", "inpaint"])
def test_svd_rule_is_ddrm_written_out_on_a_dense_svd(name):
    prior, op, y = problem(name)
    n, eta = 3, 0.85
    got = sample(prior, (n, *prior.event_shape), seeds(n, 100), steps="20", rule=NoisyProjectionStep(op, SIGMA_Y, eta),
                 terms=[Projection(op, y, SIGMA_Y)], dtype=F64)
    want, regimes = ddrm_reference(prior, op, y, SIGMA_Y, "20", eta, n, 100)
    assert regimes >= {("replace", True), ("blend", True)}, "both regimes should occur on this path"
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", ["blur-circ", "sr4-bicubic", "sr4-average", "inpaint"])
def test_svd_path_with_noiseless_y_is_the_ddnm_projection(name):
    prior, op, _ = problem(name, 0.0)
    y = op.A(prior.sample(1, torch.Generator().manual_seed(3)))
    run = lambda rule: sample(prior, (3, *prior.event_shape), seeds(3, 7), steps="20", rule=DDPM("small"),  # noqa: E731
                              terms=[Projection(op, y, 0.0, noise_rule=rule)], dtype=F64)
    svd, scalar = run("svd"), run("scalar")
    torch.testing.assert_close(svd, scalar, rtol=0, atol=1e-10)
    assert float((op.A(svd) - y).abs().max()) < 1e-9


@pytest.mark.parametrize("name", ["blur-circ", "sr4-bicubic", "inpaint"])
def test_svd_rule_is_batch_independent_and_off_at_scale_zero(name):
    """scale 0 switches the term off and makes the rule exactly DDIM(eta)."""
    prior, op, y = problem(name)
    shape = prior.event_shape
    run = lambda n, scale: sample(prior, (n, *shape), seeds(n, 50), steps="20", rule=NoisyProjectionStep(op, SIGMA_Y, 1.0, scale),  # noqa: E731
                                  terms=[Projection(op, y, SIGMA_Y, scale)], dtype=F64)
    one, three = run(1, 1.0), run(3, 1.0)
    torch.testing.assert_close(three[:1], one, rtol=0, atol=1e-10)
    plain = sample(prior, (3, *shape), seeds(3, 50), steps="20", rule=DDIM(1.0), dtype=F64)
    torch.testing.assert_close(run(3, 0.0), plain, rtol=0, atol=0)
    assert float((three - plain).abs().max()) > 1e-3


class CountingDraws(NoiseSource):
    """Counts the sampler's draws (each call draws once for the whole batch)."""

    draws = 0

    def randn(self, shape, dtype=torch.float32, device="cpu"):
        self.draws += 1
        return super().randn(shape, dtype, device)


class RecordingStep(NoisyProjectionStep):
    def step(self, x, pred, a, a_next, rng, state):
        self.outputs.append(super().step(x, pred, a, a_next, rng, state))
        return self.outputs[-1]


@pytest.mark.parametrize("noise_rule", ["svd", "scalar"])
def test_the_sampler_rule_is_the_only_step_and_draws_once_per_step(noise_rule):
    """Terms steer, rules step: the term has no correct_sample, each x_next is the rule's output,
    and the run draws once for x_T and once per step before the last (the old term drew again)."""
    assert "correct_sample" not in vars(Projection) and Projection.correct_sample is GuidanceTerm.correct_sample
    prior, op, y = problem("blur-circ")
    rule = RecordingStep(op, SIGMA_Y, 0.85, noise_rule=noise_rule)
    rule.outputs, infos, rng = [], [], CountingDraws.from_seeds([1, 2])
    sample(prior, (2, *prior.event_shape), rng, steps="20", rule=rule, terms=[Projection(op, y, SIGMA_Y, noise_rule=noise_rule)],
           callback=infos.append, dtype=F64)
    assert len(infos) == len(rule.outputs) == 20
    assert all(torch.equal(info.x_next, out) for info, out in zip(infos, rule.outputs))
    assert rng.draws == 1 + 19


def test_a_term_and_a_rule_built_from_different_settings_are_refused():
    prior, op, y = problem("blur-circ")
    run = lambda rule, term: sample(prior, (1, *prior.event_shape), seeds(1), steps="5", rule=rule, terms=[term], dtype=F64)  # noqa: E731
    with pytest.raises(InputError, match="needs the step rule guidedinv.rules.NoisyProjectionStep"):
        run(DDIM(0.85), Projection(op, y, SIGMA_Y))
    with pytest.raises(InputError, match="operator .* is not the step rule's object"):
        run(NoisyProjectionStep(Blur(gaussian_kernel(3, 1.0), "circular"), SIGMA_Y), Projection(op, y, SIGMA_Y))
    for rule, field in ((NoisyProjectionStep(op, 2 * SIGMA_Y), "sigma_y"), (NoisyProjectionStep(op, SIGMA_Y, scale=0.5), "scale"),
                        (NoisyProjectionStep(op, SIGMA_Y, noise_rule="scalar"), "noise_rule")):
        with pytest.raises(InputError, match=f"the Projection term's {field} .* differs from the step rule's"):
            run(rule, Projection(op, y, SIGMA_Y))
    with pytest.raises(InputError, match="scale .* differs"):  # a noiseless term checks a noisy projection rule too
        run(NoisyProjectionStep(op, 0.0, scale=0.5), Projection(op, y, 0.0))
    run(DDIM(0.85), Projection(op, y, 0.0))  # sigma_y = 0: any rule
    with pytest.raises(InputError, match="sigma_window needs sigma_y = 0"):
        Projection(op, y, SIGMA_Y, sigma_window=(0.1, 1.0))
    with pytest.raises(TypeError, match="eta"):
        Projection(op, y, SIGMA_Y, eta=0.85)  # eta belongs to the step rule
    for kwargs, needle in (({"eta": -1.0}, "eta"), ({"eta": math.nan}, "eta"), ({"scale": -1.0}, "scale"),
                           ({"noise_rule": "dense"}, "noise_rule"), ({"sigma_y": -0.1}, "sigma_y")):
        with pytest.raises(InputError, match=needle):
            NoisyProjectionStep(**{"operator": op, "sigma_y": SIGMA_Y, **kwargs})


@pytest.mark.parametrize("name", ["blur-circ", "sr4-bicubic", "inpaint"])
def test_svd_rule_runs_in_float32(name):
    prior, op, y = problem(name)
    run = lambda dtype: sample(prior, (2, *prior.event_shape), Float64Draws.from_seeds([3, 4]), steps="10",  # noqa: E731
                               rule=NoisyProjectionStep(op, SIGMA_Y), terms=[Projection(op, y.to(dtype), SIGMA_Y)], dtype=dtype)
    x, reference = run(torch.float32), run(F64)
    assert x.dtype == torch.float32
    err = float((x - reference).abs().max())
    assert err < 1e-5, err  # measured 0.9e-7 .. 1.9e-7


# -- accuracy against the exact posterior ---------------------------------------------------------------
def posterior_ratio(name, noise_rule, n=256, steps="20"):
    prior, op, y = problem(name)
    mean, _ = gaussian_posterior(prior, op, y, 2 * SIGMA_Y)
    x = sample(prior, (n, *prior.event_shape), seeds(n), steps=steps, rule=NoisyProjectionStep(op, SIGMA_Y, 1.0, noise_rule=noise_rule),
               terms=[Projection(op, y, SIGMA_Y, noise_rule=noise_rule)], dtype=F64)
    gap = float((prior.mean.reshape(mean.shape) - mean).norm())
    resid = float((op.A(x) - y).pow(2).flatten(1).mean(1).mean().sqrt())
    return float((x.mean(0, keepdim=True) - mean).norm()) / gap, resid


# measured (two seed sets): SVD rule / scalar rule
SVD_BOUNDS = {
    "blur-circ": 0.3,  # 0.159, 0.157 / 61.7, 61.7
    "blur-ill": 0.65,  # 0.466, 0.453 / 224, 224
    "sr4-bicubic": 0.2,  # 0.113, 0.078 / 0.127, 0.103
    "inpaint": 0.45,  # 0.356, 0.358 / 0.349, 0.347
}


@pytest.mark.parametrize("name", list(SVD_BOUNDS))
def test_svd_rule_lands_near_the_posterior_mean(name):
    ratio, resid = posterior_ratio(name, "svd")
    assert ratio < SVD_BOUNDS[name], f"{name}: {ratio:.3f} of the gap from the posterior mean"
    assert resid < 1.5 * 2 * SIGMA_Y, f"{name}: residual {resid:.3f} above the noise level {2 * SIGMA_Y}"


@pytest.mark.parametrize("name", ["blur-circ", "blur-ill", "inpaint"])
def test_svd_rule_against_the_scalar_rule(name):
    """On circular blurs the scalar rule lets A^+ n through (ratios 62 and 224); on inpainting, where
    every s_i is 1, both rules are equally good (0.356 vs 0.349)."""
    svd, _ = posterior_ratio(name, "svd")
    scalar, _ = posterior_ratio(name, "scalar")
    if name == "inpaint":
        assert abs(svd - scalar) < 0.08, (svd, scalar)
    else:
        assert scalar > 20 and svd < scalar / 50, (svd, scalar)
