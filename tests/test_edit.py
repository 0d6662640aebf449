"""Editing on the one sampler, against exact answers: SDEdit's start, masked edits, ILVR and DDIM
inversion on analytic priors; class translation on the exact Gaussian mixture; the command line's
bad input. Tolerances: with N = 20000 samples a mean is known to ~0.01 and a covariance entry to
~0.01 here (unit-scale priors)."""
from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
from conftest import component_of, empirical_cov
from PIL import Image

from guidedinv import DDIM, DDPM, DPMSolverPP2M, NoiseSource, sample
from guidedinv.app.methods import PlanInput, get_method
from guidedinv.app.methods.sdedit import start_timestep
from guidedinv.guidance import ILVR, ClassifierGuidance, MaskedBlend
from guidedinv.operators import Identity
from guidedinv.priors import GaussianPrior
from guidedinv.sampler import decode, invert

N = 20000
F64 = torch.float64


@pytest.fixture(scope="module")
def image_prior() -> GaussianPrior:
    """A correlated Gaussian over (3, 2, 2) images (12 values), eigenvalues in ~[0.03, 1.2]."""
    g = torch.Generator().manual_seed(7)
    root = torch.randn(12, 12, generator=g, dtype=F64) / math.sqrt(12)
    cov = root @ root.T + 0.03 * torch.eye(12, dtype=F64)
    return GaussianPrior(torch.linspace(-0.4, 0.4, 12, dtype=F64), cov, event_shape=(3, 2, 2))


def settings(**kw):
    return get_method("sdedit").check_settings(kw, "methods.sdedit")


def plan(prior, x_in, images=None, **kw):
    return get_method("sdedit").plan(PlanInput(Identity(), x_in, 0.0, settings(**kw), prior.schedule.num_steps, images or {}))


def run(prior, p, n, seed=0):
    init, t0 = p.start if p.start is not None else (None, None)
    init = None if init is None else init.expand(n, *init.shape[1:])
    return sample(prior, (n, *prior.event_shape), NoiseSource.from_seeds(range(seed, seed + n)), steps=p.steps, rule=p.rule,
                  terms=p.terms, init=init, init_t=t0, dtype=F64)


def sdedit_moments(prior: GaussianPrior, x_in: torch.Tensor, t0: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of x0 ~ p(x0 | x_t0), x_t0 ~ q(x_t0 | x_in), for a Gaussian prior: with
    g_i = ab lam_i / (ab lam_i + 1 - ab) per eigenvalue, mean = mu + U g U^T (x_in - mu) and
    covariance U diag(lam (1 - g)(1 + g)) U^T (the posterior's own spread plus that of x_t0)."""
    ab = prior.schedule.alpha_bar(t0)
    lam, u = prior.eigvals, prior.eigvecs
    g = ab * lam / (ab * lam + 1 - ab)
    mean = prior.mean + ((x_in.flatten() - prior.mean) @ u * g) @ u.T
    return mean, (u * (lam * (1 - g) * (1 + g))) @ u.T


@pytest.mark.parametrize("strength", [0.2, 0.4])
def test_sdedit_samples_the_exact_posterior_of_the_noised_input(image_prior, strength):
    x_in = torch.full((1, 3, 2, 2), 1.5, dtype=F64)
    p = plan(image_prior, x_in, strength=strength, rule="ddpm", steps="1000")  # every timestep below t0
    t0 = start_timestep(strength)
    assert p.start[1] == t0 == round(strength * 999)
    x = run(image_prior, p, N).reshape(N, -1)
    mean, cov = sdedit_moments(image_prior, x_in, t0)
    assert float((x.mean(0) - mean).abs().max()) < 0.03
    assert float((empirical_cov(x) - cov).abs().max()) < 0.04


def test_strength_zero_is_the_input_and_one_ignores_it(image_prior):
    x_in = torch.full((1, 3, 2, 2), 1.5, dtype=F64)
    assert plan(image_prior, x_in, strength=0.0).start[1] == -1
    assert plan(image_prior, x_in, strength=1.0).start is None  # pure noise: the prior itself
    x = run(image_prior, plan(image_prior, x_in, strength=1.0, rule="ddpm", steps="250"), N).reshape(N, -1)
    assert float((x.mean(0) - image_prior.mean).abs().max()) < 0.03
    # 250 ancestral steps (not every timestep) leave the covariance ~5% off at this prior's scale
    assert float((empirical_cov(x) - image_prior.cov).abs().max()) < 0.08


def test_distance_to_the_input_grows_with_strength(image_prior):
    x_in = torch.full((1, 3, 2, 2), 1.5, dtype=F64)
    curve = []
    for strength in (0.1, 0.3, 0.5, 0.7, 0.9):
        x = run(image_prior, plan(image_prior, x_in, strength=strength, rule="ddim", steps="logsnr20"), 2000)
        curve.append(float((x - x_in).flatten(1).norm(dim=1).mean()))
    print("distance to the input against strength 0.1..0.9:", [round(c, 3) for c in curve])
    assert all(a < b for a, b in zip(curve, curve[1:]))


def test_masked_edit_keeps_the_outside_exactly_and_regenerates_inside(image_prior):
    x_in = torch.full((1, 3, 2, 2), 1.5, dtype=F64)
    mask = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=F64)  # edit the top-left pixel of each channel
    p = plan(image_prior, x_in, images={"mask": mask[None, None]}, strength=1.0, rule="ddpm", steps="250")
    assert isinstance(p.terms[0], MaskedBlend)
    n = 4000
    x = run(image_prior, p, n)
    assert torch.equal(x[..., ~mask.bool()], x_in[..., ~mask.bool()].expand(n, 3, 3))  # bit for bit
    # inside: the exact conditional of the edited coordinates given the kept ones; replacement without
    # resampling is RePaint's first-order approximation of it: within 0.35 of the prior-to-conditional gap
    inside = mask.bool().expand(3, 2, 2).flatten()
    cov, mu = image_prior.cov, image_prior.mean
    a, b = inside, ~inside
    gain = cov[a][:, b] @ torch.linalg.inv(cov[b][:, b])
    cond_mean = mu[a] + gain @ (x_in.flatten()[b] - mu[b])
    got = x.reshape(n, -1)[:, a].mean(0)
    gap = float((cond_mean - mu[a]).norm())
    print(f"masked edit: inside mean off the exact conditional by {float((got - cond_mean).norm()) / gap:.2f} of the gap")
    assert float((got - cond_mean).norm()) < 0.6 * gap, (got, cond_mean, mu[a])


def _ilvr_run(prior, ref, n):
    term = ILVR(ref, 2, mode="average")
    p = plan(prior, torch.zeros(1, 3, 2, 2, dtype=F64), strength=1.0, rule="ddpm", steps="250")
    x = sample(prior, (n, 3, 2, 2), NoiseSource.from_seeds(range(n)), steps=p.steps, rule=p.rule, terms=[term], dtype=F64)
    pmat = torch.stack([term.low_pass(e.reshape(1, 3, 2, 2)).flatten() for e in torch.eye(12, dtype=F64)])
    return term, x, pmat


REF = torch.tensor([0.8, -0.6, 0.3], dtype=F64)[None, :, None, None].expand(1, 3, 2, 2) + \
    torch.tensor([[0.5, 0.0], [0.0, -0.2]], dtype=F64)


def test_ilvr_low_pass_is_exactly_the_references(image_prior):
    term, x, _ = _ilvr_run(image_prior, REF, 500)
    assert float((term.low_pass(x) - term.low_pass(REF)).abs().max()) < 1e-10  # the last step replaces it exactly


def test_ilvr_high_pass_follows_the_conditional_prior(image_prior):
    """Where the prior's low and high frequencies are independent (its covariance commutes with the
    low-pass P), the high-pass of ILVR's output is exactly the prior's (mean and covariance); on a
    correlated prior replacement without resampling only approximates the conditional (stated gap)."""
    _, _, pmat = _ilvr_run(image_prior, REF, 1)
    q = torch.eye(12, dtype=F64) - pmat
    cov, mu = image_prior.cov, image_prior.mean
    split = GaussianPrior(mu, pmat @ cov @ pmat + q @ cov @ q + 1e-3 * torch.eye(12, dtype=F64), event_shape=(3, 2, 2))
    n = 20000
    _, x, _ = _ilvr_run(split, REF, n)
    high = x.reshape(n, -1) @ q.T
    assert float((high.mean(0) - q @ split.mean).abs().max()) < 0.03
    assert float((empirical_cov(high) - q @ split.cov @ q).abs().max()) < 0.06  # 250 ancestral steps
    n = 4000
    _, x, _ = _ilvr_run(image_prior, REF, n)
    m_cond = mu + cov @ pmat @ torch.linalg.pinv(pmat @ cov @ pmat) @ (pmat @ (REF.flatten() - mu))
    high = x.reshape(n, -1) @ q.T
    gap = float((q @ (m_cond - mu)).norm())
    off = float((high.mean(0) - q @ m_cond).norm()) / gap
    print(f"ILVR on a correlated prior: high-pass mean off the exact conditional by {off:.2f} of the gap")
    assert off < 0.7


@pytest.mark.parametrize("rule, order", [(lambda: DDIM(0.0), 1), (DPMSolverPP2M, 2)], ids=["ddim", "dpm++2m"])
def test_inversion_round_trip_error_falls_at_the_rules_order(gaussian3, rule, order):
    g = torch.Generator().manual_seed(3)
    x0 = gaussian3.mean + torch.randn(64, 3, generator=g, dtype=F64) @ torch.linalg.cholesky(gaussian3.cov).T
    errors = []
    for n in (10, 20, 40):
        z = invert(gaussian3, x0, steps=f"logsnr{n}", rule=rule())
        errors.append(float((decode(gaussian3, z, steps=f"logsnr{n}", rule=rule()) - x0).norm(dim=1).mean()))
    ratios = [a / b for a, b in zip(errors, errors[1:])]
    print(f"round-trip error at 10 / 20 / 40 steps: {errors}, ratios {ratios}")
    if order == 1:
        assert all(1.7 < r < 2.3 for r in ratios)  # first order: halves when the steps double
    else:
        assert all(r > 3.5 for r in ratios)  # at least second order


def test_inversion_refuses_a_stochastic_rule(gaussian3):
    with pytest.raises(ValueError, match="deterministic"):
        invert(gaussian3, torch.zeros(2, 3, dtype=F64), steps="10", rule=DDPM("small"))


def test_class_translation_on_the_exact_mixture(mixture3):
    """Translate samples of component 0 towards component 2 with the exact noisy classifier: at strength
    1 and s = 1 at least 99% land in 2; the distance to the input grows with strength."""
    n = 4000
    start = mixture3.components[0].mean.expand(n, 2)
    curve, landed = [], []
    for strength in (0.2, 0.4, 0.6, 0.8, 1.0):
        t0 = start_timestep(strength)
        term = ClassifierGuidance(mixture3.classifier(), torch.full((n,), 2), scale=1.0)
        init, init_t = (None, None) if strength >= 1 else (start, t0)
        x = sample(mixture3, (n, 2), NoiseSource.from_seeds(range(n)), steps="250", rule=DDPM("small"), terms=[term],
                   init=init, init_t=init_t, dtype=F64)
        landed.append(float((component_of(mixture3, x) == 2).double().mean()))
        curve.append(float((x - start).norm(dim=1).mean()))
    print("strength 0.2..1.0: fraction in the target", landed, "distance to the input", curve)
    assert landed[-1] >= 0.99
    assert all(a < b for a, b in zip(curve, curve[1:]))


# -- the command line ------------------------------------------------------------------------------
@pytest.fixture()
def work(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(tmp_path / "small.png")
    m = np.zeros((16, 16), np.uint8)
    m[4:10, 4:10] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    (tmp_path / "fake.safetensors").write_bytes(b"not a latent")
    return tmp_path


def cli(monkeypatch, capsys, work, *args):
    from guidedinv.cli import run as run_cli

    monkeypatch.chdir(work)
    monkeypatch.setattr(sys, "argv", ["guidedinv", *args])
    try:
        run_cli()
        code = 0
    except SystemExit as stop:
        code = int(stop.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


TOY = ["--model", "toy-prior", "--tile", "0", "--steps", "logsnr6"]


def test_edit_command_masked_and_reproducible(work, monkeypatch, capsys):
    code, out, err = cli(monkeypatch, capsys, work, "edit", "x.png", "--mask", "m.png", "--strength", "0.6", *TOY, "-o", "e.png")
    assert code == 0, err
    assert "wrote e.png, e.recipe.toml (sdedit, strength 0.6" in out
    x, e = (np.asarray(Image.open(work / n).convert("RGB")) for n in ("x.png", "e.png"))
    m = np.asarray(Image.open(work / "m.png")) > 0
    assert np.array_equal(x[~m], e[~m]) and not np.array_equal(x[m], e[m])
    code, _, err = cli(monkeypatch, capsys, work, "edit", "x.png", "--task", "e.recipe.toml", "-o", "again.png", "-q")
    assert code == 0, err
    assert np.array_equal(np.asarray(Image.open(work / "again.png")), np.asarray(Image.open(work / "e.png")))


def test_invert_then_decode_from_the_latent(work, monkeypatch, capsys):
    code, out, err = cli(monkeypatch, capsys, work, "invert", "x.png", "-o", "x.latent.safetensors", "--model", "toy-prior",
                         "--tile", "0", "--steps", "logsnr10")
    assert code == 0 and "dB PSNR" in out, err
    code, _, err = cli(monkeypatch, capsys, work, "edit", "x.png", "--from-latent", "x.latent.safetensors", *TOY, "-o", "d.png",
                       "-q")
    assert code == 0, err
    assert Image.open(work / "d.png").size == (16, 16)


BAD = {
    "strength-high": (["edit", "x.png", "--strength", "1.5"], "--strength 1.5"),
    "strength-nan": (["edit", "x.png", "--strength", "nan"], "--strength nan"),
    "mask-size": (["edit", "small.png", "--mask", "m.png", *TOY], "the mask is 16x16 but the image is 16x12"),
    "reference-size": (["edit", "small.png", "--reference", "x.png", "--ilvr", "2", *TOY], "the reference is 16x16"),
    "ilvr-no-reference": (["edit", "x.png", "--ilvr", "2"], "--reference"),
    "class-unconditional": (["edit", "x.png", "--class", "1", *TOY], "unconditional"),
    "class-unknown": (["edit", "x.png", "--class", "9", "--classifier", "toy-classifier", *TOY], "knows classes 0..4"),
    "guidance-cfg-with-classifier": (["edit", "x.png", "--class", "1", "--guidance", "cfg", "--classifier", "toy-classifier"],
                                     "drop --classifier"),
    "latent-not-a-latent": (["edit", "x.png", "--from-latent", "fake.safetensors", *TOY], "not a latent file"),
    "latent-missing": (["edit", "x.png", "--from-latent", "nofile.safetensors", *TOY], "no such file"),
    "out-is-input": (["edit", "x.png", "-o", "x.png"], "is also IMAGE"),
    "out-is-mask": (["edit", "x.png", "--mask", "m.png", "-o", "m.png"], "is also --mask"),
    "invert-rule": (["invert", "x.png", "-o", "z.safetensors", "--rule", "ddpm"], "deterministic rule"),
    "invert-suffix": (["invert", "x.png", "-o", "z.png"], "must end in .safetensors"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_edit_input_is_one_line_exit_2_nothing_written(work, monkeypatch, capsys, name):
    args, needle = BAD[name]
    before = sorted(p.name for p in work.iterdir())
    code, _, err = cli(monkeypatch, capsys, work, *args)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err
    assert sorted(p.name for p in work.iterdir()) == before
