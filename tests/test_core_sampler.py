"""The one loop and every step rule against closed-form answers (exact Gaussian / mixture priors).

Tolerances: with N = 20000 samples a mean is known to ~0.006 and a covariance entry to ~0.007
(eigenvalues up to ~0.8); the bounds (mean 0.03, covariance 0.04) are about 5 standard errors plus
the rule's discretisation bias at the stated step count, measured at 0.006-0.014 (e.g. DDPM-small
needs 1000 steps for that: at 250 its covariance is 0.034 short, a real first-order bias).
Statistical tests draw the batch from one stream (fast); batch independence is tested separately
with per-item streams.
"""
from __future__ import annotations

import pytest
import torch
from conftest import component_of, empirical_cov

from guidedinv import DDIM, DDPM, DPMSolverPP2M, NetworkDenoiser, NoiseSource, Resampling, sample
from guidedinv.denoiser import Prediction
from guidedinv.rules import Renoise, make_rule

N = 20000
MEAN_TOL, COV_TOL = 0.03, 0.04


def seeds(n: int, base: int = 0) -> NoiseSource:
    return NoiseSource.from_seeds(range(base, base + n))


class OneStream(NoiseSource):
    """The whole batch from one generator: fast for large-sample statistics (batch-dependent by design)."""

    def __init__(self, seed: int, batch: int):
        super().__init__([torch.Generator().manual_seed(seed)] * batch)

    def randn(self, shape, dtype=torch.float32, device="cpu"):
        return torch.randn(len(self), *shape, dtype=dtype, generator=self.generators[0]).to(device)


class LearnedVarianceNet(torch.nn.Module):
    """A 'network' in guided-diffusion's format: eps of an exact prior plus a constant learned-range channel."""

    def __init__(self, prior, v: float):
        super().__init__()
        self.prior, self.v = prior, v

    def forward(self, x, t):
        eps = self.prior.eps(x, t)
        return torch.cat([eps, torch.full_like(eps, self.v)], 1)


RULES = [
    ("ddpm-small", lambda: DDPM("small"), "1000"),
    ("ddpm-large", lambda: DDPM("large"), "250"),
    ("ddim-eta0", lambda: DDIM(0.0), "250"),
    ("ddim-eta0.5", lambda: DDIM(0.5), "500"),
    ("dpm++2m", DPMSolverPP2M, "logsnr25"),
]


@pytest.mark.parametrize("name, rule, steps", RULES, ids=[r[0] for r in RULES])
def test_gaussian_prior_reproduced_by_every_rule(gaussian3, name, rule, steps):
    x = sample(gaussian3, (N, 3), OneStream(1, N), steps=steps, rule=rule(), dtype=torch.float64)
    mean_err = float((x.mean(0) - gaussian3.mean).abs().max())
    cov_err = float((empirical_cov(x) - gaussian3.cov).abs().max())
    assert mean_err < MEAN_TOL, f"{name}: mean off by {mean_err:.4f}"
    assert cov_err < COV_TOL, f"{name}: covariance off by {cov_err:.4f}"


def test_ddim_eta1_is_ddpm_with_the_small_variance(gaussian3):
    a = sample(gaussian3, (32, 3), seeds(32), steps="50", rule=DDIM(1.0), dtype=torch.float64)
    b = sample(gaussian3, (32, 3), seeds(32), steps="50", rule=DDPM("small"), dtype=torch.float64)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_learned_variance_through_the_network_boundary(gaussian3):
    # guided-diffusion's 2C-channel output (here 2 x 3 on a (3,) event) with v = 0: halfway in log space
    den = NetworkDenoiser(LearnedVarianceNet(gaussian3, 0.0), gaussian3.schedule, "eps", learned_sigma=True, clip=False)
    x = sample(den, (N, 3), OneStream(2, N), steps="500", rule=DDPM("learned"), dtype=torch.float64)
    assert float((x.mean(0) - gaussian3.mean).abs().max()) < MEAN_TOL
    assert float((empirical_cov(x) - gaussian3.cov).abs().max()) < COV_TOL


@pytest.mark.parametrize("v, fixed", [(1.0, "large"), (-1.0, "small")])
def test_learned_range_ends_are_the_fixed_variances(gaussian3, v, fixed):
    den = NetworkDenoiser(LearnedVarianceNet(gaussian3, v), gaussian3.schedule, "eps", learned_sigma=True, clip=False)
    learned = sample(den, (16, 3), seeds(16), steps="50", rule=DDPM("learned"), dtype=torch.float64)
    reference = sample(den, (16, 3), seeds(16), steps="50", rule=DDPM(fixed), dtype=torch.float64)
    torch.testing.assert_close(learned, reference, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name, rule, steps", RULES, ids=[r[0] for r in RULES])
def test_mixture_weights_and_means_reproduced(mixture3, name, rule, steps):
    x = sample(mixture3, (N, 2), OneStream(3, N), steps=steps, rule=rule(), dtype=torch.float64)
    comp = component_of(mixture3, x)
    freq = torch.bincount(comp, minlength=3).double() / N
    # weights are known to ~0.0035 (binomial standard error at N = 20000)
    assert float((freq - mixture3.weights).abs().max()) < 0.015, f"{name}: weights {freq.tolist()}"
    for k, c in enumerate(mixture3.components):
        mean_err = float((x[comp == k].mean(0) - c.mean).abs().max())
        assert mean_err < MEAN_TOL + 0.01, f"{name}: component {k} mean off by {mean_err:.4f}"


def test_ddim_eta0_is_deterministic_and_converges_to_the_probability_flow(gaussian3):
    x_T = torch.randn(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    exact = gaussian3.pf_ode_solution(x_T, 999)

    def solve(steps, rule):
        # start exactly at t = 999 from the given x_T: init_t = 999 with init = x_T / sqrt(ab) and no noise
        out = []

        class Fixed(NoiseSource):
            def randn(self, shape, dtype=torch.float32, device="cpu"):
                return torch.zeros(len(self), *shape, dtype=dtype, device=device)

        path_init = x_T / gaussian3.schedule.alpha_bar(999) ** 0.5
        out = sample(gaussian3, (64, 3), Fixed([torch.Generator()] * 64), steps=steps, rule=rule,
                     init=path_init, init_t=999, dtype=torch.float64)
        return out

    ddim = {n: float((solve(f"logsnr{n}", DDIM(0.0)) - exact).abs().max()) for n in (10, 20, 40, 80, 160)}
    dpm = {n: float((solve(f"logsnr{n}", DPMSolverPP2M()) - exact).abs().max()) for n in (10, 20, 40, 80, 160)}
    for name, err in (("DDIM", ddim), ("DPM-Solver++(2M)", dpm)):
        values = list(err.values())
        assert all(a > b for a, b in zip(values, values[1:])), f"{name} error does not shrink: {err}"
    # first order: halving the step roughly halves the error; second order: roughly quarters it
    assert 1.6 < ddim[80] / ddim[160] < 2.5, ddim
    assert dpm[40] / dpm[80] > 3.0 and dpm[80] / dpm[160] > 3.0, dpm
    assert all(dpm[n] < ddim[n] / 5 for n in dpm), (dpm, ddim)
    # determinism: the same seeds give bit-identical results; other seeds differ
    a = sample(gaussian3, (8, 3), seeds(8), steps="ddim25", rule=DDIM(0.0), dtype=torch.float64)
    b = sample(gaussian3, (8, 3), seeds(8), steps="ddim25", rule=DDIM(0.0), dtype=torch.float64)
    c = sample(gaussian3, (8, 3), seeds(8, 100), steps="ddim25", rule=DDIM(0.0), dtype=torch.float64)
    assert torch.equal(a, b) and not torch.allclose(a, c)


@pytest.mark.parametrize("rule", [DDPM("small"), DDIM(0.5), DPMSolverPP2M()], ids=["ddpm", "ddim", "dpm"])
def test_same_seed_same_output_and_batch_independence(mixture3, rule):
    item_seeds = [11, 22, 33, 44, 55]
    batch = sample(mixture3, (5, 2), NoiseSource.from_seeds(item_seeds), steps="40", rule=rule, dtype=torch.float64)
    again = sample(mixture3, (5, 2), NoiseSource.from_seeds(item_seeds), steps="40", rule=rule, dtype=torch.float64)
    assert torch.equal(batch, again)
    for i, s in enumerate(item_seeds):
        alone = sample(mixture3, (1, 2), NoiseSource.from_seeds([s]), steps="40", rule=rule, dtype=torch.float64)
        torch.testing.assert_close(alone[0], batch[i], rtol=0, atol=1e-12)
    # a bare generator is split into per-item streams: item 0 is the same at every batch size
    one = sample(mixture3, (1, 2), torch.Generator().manual_seed(7), steps="40", rule=rule, dtype=torch.float64)
    four = sample(mixture3, (4, 2), torch.Generator().manual_seed(7), steps="40", rule=rule, dtype=torch.float64)
    torch.testing.assert_close(one[0], four[0], rtol=0, atol=1e-12)


def test_callback_sees_every_step(gaussian3):
    seen = []
    out = sample(gaussian3, (4, 3), seeds(4), steps="ddim10", rule=DDIM(0.0), callback=seen.append, dtype=torch.float64)
    assert [s.t for s in seen] == list(range(900, -1, -100))
    assert [s.index for s in seen] == list(range(10)) and all(s.num_steps == 10 for s in seen)
    assert seen[-1].t_next == -1 and seen[-1].sigma == pytest.approx(gaussian3.schedule.sigma(0))
    assert torch.equal(seen[-1].x_next, out)
    # the x0 the callback sees is the exact denoiser's at that step
    mid = seen[4]
    expected = gaussian3(mid.x, torch.full((4,), float(mid.t))).x0
    torch.testing.assert_close(mid.x0, expected)


def test_sdedit_start_samples_the_exact_posterior_given_the_noised_image(gaussian3):
    # Starting from init noised to t and running an exact sampler gives p(x0 | x_t): for a Gaussian
    # prior, E[x0 | x_t] averaged over x_t ~ q(x_t | init) = mu + K (sqrt(ab) init - sqrt(ab) mu)
    # with K = U diag(sqrt(ab) lam / (ab lam + 1 - ab)) U^T; i.e. the image is kept at low noise.
    init = torch.tensor([2.0, 2.0, -2.0], dtype=torch.float64)
    for t_start in (50, 300, 999):
        ab = gaussian3.schedule.alpha_bar(t_start)
        gain = ab * gaussian3.eigvals / (ab * gaussian3.eigvals + 1 - ab)
        expected = gaussian3.mean + ((init - gaussian3.mean) @ gaussian3.eigvecs * gain) @ gaussian3.eigvecs.T
        x = sample(gaussian3, (N, 3), OneStream(4, N), steps="250", rule=DDPM("large"), init=init.expand(N, 3),
                   init_t=t_start, dtype=torch.float64)
        err = float((x.mean(0) - expected).abs().max())
        assert err < MEAN_TOL, f"init_t={t_start}: mean {x.mean(0).tolist()} vs {expected.tolist()}"
    with pytest.raises(ValueError):
        sample(gaussian3, (4, 3), seeds(4), init=init.expand(4, 3))


def test_resampling_jumps_keep_the_prior_exact(gaussian3):
    # RePaint's forward re-noising is exact, so unguided sampling with jumps still samples the prior
    seen = []
    x = sample(gaussian3, (N, 3), OneStream(5, N), steps="250", rule=DDPM("large"), resample=Resampling(5, 3),
               callback=seen.append, dtype=torch.float64)
    assert len(seen) == 250 + 2 * 5 * (250 // 5 - 1)  # 2 extra passes of 5 steps at every jump point
    assert float((x.mean(0) - gaussian3.mean).abs().max()) < MEAN_TOL
    assert float((empirical_cov(x) - gaussian3.cov).abs().max()) < COV_TOL


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_network_parameterisations_agree(gaussian3, prediction):
    sched = gaussian3.schedule

    def net(x, t):
        ab = sched.alpha_bar_tensor(t).view(-1, 1)
        x0 = gaussian3(x, t).x0
        eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
        return {"eps": eps, "x0": x0, "v": ab.sqrt() * eps - (1 - ab).sqrt() * x0}[prediction]

    den = NetworkDenoiser(net, sched, prediction, clip=False)
    x = torch.randn(6, 3, dtype=torch.float64)
    t = torch.tensor([0.0, 10, 200, 500, 900, 999])
    torch.testing.assert_close(den(x, t).x0, gaussian3(x, t).x0)
    assert isinstance(den(x, t), Prediction)


def test_renoise_is_ddim_at_zeta0_and_loses_variance_above(gaussian3):
    # zeta > 0 replaces a fixed fraction of x_t's noise at every level, so with the posterior MEAN as
    # x0 the spread of p(x0 | x_t) is dropped each step and never comes back: a bias that more steps
    # do not remove (measured: covariance 0.10 short at 500 steps, zeta = 0.5). DiffPIR accepts it for
    # restoration; it must not be mistaken for an exact sampler.
    x = sample(gaussian3, (N, 3), OneStream(6, N), steps="500", rule=Renoise(0.5), dtype=torch.float64)
    assert float(empirical_cov(x).trace()) < float(gaussian3.cov.trace()) - 0.1
    a = sample(gaussian3, (8, 3), seeds(8), steps="30", rule=Renoise(0.0), dtype=torch.float64)
    b = sample(gaussian3, (8, 3), seeds(8), steps="30", rule=DDIM(0.0), dtype=torch.float64)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert make_rule("renoise", zeta=0.2) == Renoise(0.2) and make_rule("ddim", eta=0.3) == DDIM(0.3)
    with pytest.raises(ValueError, match="unknown step rule"):
        make_rule("euler")
    with pytest.raises(ValueError, match="no option"):
        make_rule("ddpm", eta=1.0)


def test_make_rule_builds_through_the_constructors():
    """make_rule runs each rule's own checks: values out of range are refused with the option and its
    range named, unknown options with the rule's options named; every name still builds."""
    from guidedinv.rules import RULES, PlugAndPlay

    assert make_rule("ddpm-large") == DDPM("large") and make_rule("ddpm-learned") == DDPM("learned")
    assert make_rule("ddim") == DDIM(0.0) and make_rule("pnp") == PlugAndPlay() and make_rule("dpm++2m") == DPMSolverPP2M()
    assert set(RULES) == {"ddpm", "ddpm-large", "ddpm-learned", "ddim", "dpm++2m", "renoise", "pnp"}
    for name, options, needle in (
        ("renoise", {"zeta": 2}, r"renoise zeta must be a number in \[0, 1\], got 2"),
        ("renoise", {"zeta": -0.1}, r"zeta must be a number in \[0, 1\]"),
        ("renoise", {"zeta": float("nan")}, r"zeta must be a number in \[0, 1\]"),
        ("ddim", {"eta": -1}, "DDIM eta must be a finite number >= 0, got -1"),
        ("ddim", {"eta": float("inf")}, "DDIM eta must be a finite number >= 0"),
        ("ddim", {"eta": "much"}, "DDIM eta must be a finite number >= 0"),
        ("ddim", {"zeta": 0.5}, "step rule 'ddim' has no option 'zeta'; its options are eta"),
        ("renoise", {"eta": 0.5}, "has no option 'eta'; its options are zeta"),
        ("ddpm", {"variance": "large"}, "step rule 'ddpm' has no option 'variance'; it has no options"),
        ("pnp", {"lam": 1.0}, "step rule 'pnp' has no option 'lam'"),
    ):
        with pytest.raises(ValueError, match=needle):
            make_rule(name, **options)
    with pytest.raises(ValueError, match="eta must be a finite number >= 0"):
        DDIM(-0.5)
