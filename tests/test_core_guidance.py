"""Classifier guidance and classifier-free guidance against the exact mixture posterior.

With the mixture's exact noisy classifier, classifier guidance at s = 1 turns the prior's score
into the exact score of p(x_t | c), so every rule must sample component c. CFG at scale w with
the exact class-conditional denoisers is, by Bayes, classifier guidance at s = w; tested as an
identity, not by eye.
"""
from __future__ import annotations

import pytest
import torch
from conftest import component_of, empirical_cov

from guidedinv import DDIM, DDPM, NULL_LABEL, ClassifierFreeGuidance, ClassifierGuidance, DPMSolverPP2M, NoiseSource, sample
from guidedinv.guidance import GuidanceTerm

N = 8000


class OneStream(NoiseSource):
    def __init__(self, seed: int, batch: int):
        super().__init__([torch.Generator().manual_seed(seed)] * batch)

    def randn(self, shape, dtype=torch.float32, device="cpu"):
        return torch.randn(len(self), *shape, dtype=dtype, generator=self.generators[0]).to(device)


RULES = [("ddpm", lambda: DDPM("large"), "100"), ("ddim", lambda: DDIM(0.0), "100"), ("dpm++2m", DPMSolverPP2M, "logsnr25")]


@pytest.mark.parametrize("name, rule, steps", RULES, ids=[r[0] for r in RULES])
@pytest.mark.parametrize("target", [0, 2])
def test_classifier_guidance_s1_samples_the_requested_component(mixture3, name, rule, steps, target):
    labels = torch.full((N,), target)
    term = ClassifierGuidance(mixture3.classifier(), labels, scale=1.0)
    x = sample(mixture3, (N, 2), OneStream(target, N), steps=steps, rule=rule(), terms=[term], dtype=torch.float64)
    inside = float((component_of(mixture3, x) == target).double().mean())
    comp = mixture3.components[target]
    assert inside >= 0.99, f"{name}: only {inside:.4f} of samples in component {target}"
    assert float((x.mean(0) - comp.mean).abs().max()) < 0.03, f"{name}: mean {x.mean(0).tolist()}"
    assert float((empirical_cov(x) - comp.cov).abs().max()) < 0.03, f"{name}: cov {empirical_cov(x).tolist()}"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_classifier_guidance_on_the_cosine_schedule_stays_exact_at_its_last_level(mixture3, dtype):
    """On the cosine schedule alpha_bar(999) = 2.4e-9, so the x0 correction s (1 - ab) / sqrt(ab) grad
    is multiplied by 2e4 at the first step (guided-diffusion's condition_score does the same); with
    the exact classifier the gradient is correspondingly small and the samples stay exact, in
    float32 too."""
    from guidedinv.priors import GaussianMixturePrior
    from guidedinv.schedule import VPSchedule

    cosine = GaussianMixturePrior(mixture3.weights, torch.stack([c.mean for c in mixture3.components]),
                                  torch.stack([c.cov for c in mixture3.components]), schedule=VPSchedule.cosine())
    n = 4000
    term = ClassifierGuidance(cosine.classifier(), torch.full((n,), 2), scale=1.0)
    x = sample(cosine, (n, 2), OneStream(5, n), steps="100", rule=DDIM(0.0), terms=[term], dtype=dtype)
    assert bool(torch.isfinite(x).all())
    assert float((component_of(cosine, x.double()) == 2).double().mean()) >= 0.99
    assert float((x.double().mean(0) - cosine.components[2].mean).abs().max()) < 0.03


@pytest.mark.parametrize("rule", [DDPM("small"), DDIM(0.0), DPMSolverPP2M()], ids=["ddpm", "ddim", "dpm"])
def test_classifier_guidance_scale_zero_is_bit_identical_to_unguided(mixture3, rule):
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    plain = sample(mixture3, (6, 2), NoiseSource.from_seeds(range(6)), steps="30", rule=rule, dtype=torch.float64)
    term = ClassifierGuidance(mixture3.classifier(), labels, scale=0.0)
    zero = sample(mixture3, (6, 2), NoiseSource.from_seeds(range(6)), steps="30", rule=rule, terms=[term], dtype=torch.float64)
    assert torch.equal(plain, zero)
    half = ClassifierGuidance(mixture3.classifier(), labels, scale=0.5)
    guided = sample(mixture3, (6, 2), NoiseSource.from_seeds(range(6)), steps="30", rule=rule, terms=[half], dtype=torch.float64)
    assert not torch.allclose(plain, guided)  # and a non-zero scale does act


def test_terms_combine_and_respect_their_noise_window(mixture3):
    labels = torch.tensor([2, 2, 1, 0])
    run = lambda terms: sample(mixture3, (4, 2), NoiseSource.from_seeds(range(4)), steps="40", rule=DDIM(0.0),  # noqa: E731
                               terms=terms, dtype=torch.float64)
    cls = mixture3.classifier()
    whole = run([ClassifierGuidance(cls, labels, 1.0)])
    halves = run([ClassifierGuidance(cls, labels, 0.5), ClassifierGuidance(cls, labels, 0.5)])
    torch.testing.assert_close(whole, halves, rtol=1e-9, atol=1e-9)
    # a window that holds no step of the run leaves it unguided; one holding every step is the full term
    assert torch.equal(run([ClassifierGuidance(cls, labels, 1.0, sigma_window=(1e3, 1e4))]), run([]))
    torch.testing.assert_close(run([ClassifierGuidance(cls, labels, 1.0, sigma_window=(0.0, 1e3))]), whole)
    early = run([ClassifierGuidance(cls, labels, 1.0, sigma_window=(1.0, 1e3))])
    assert not torch.allclose(early, whole) and not torch.allclose(early, run([]))


def test_a_term_sees_every_step_through_both_hooks(mixture3):
    class Recorder(GuidanceTerm):
        def __init__(self):
            self.x0_calls, self.sample_calls = [], []

        def correct_x0(self, ctx, x0):
            self.x0_calls.append((ctx.index, ctx.t, ctx.sigma))
            return x0

        def correct_sample(self, ctx, x_next):
            self.sample_calls.append(ctx.t_next)
            return x_next

    rec = Recorder()
    sample(mixture3, (3, 2), NoiseSource.from_seeds(range(3)), steps="ddim10", terms=[rec], dtype=torch.float64)
    assert [c[1] for c in rec.x0_calls] == list(range(900, -1, -100))
    assert rec.sample_calls == list(range(800, -1, -100)) + [-1]


def test_cfg_scale_one_is_the_conditional_model_and_zero_the_unconditional(mixture3):
    x = torch.randn(7, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2
    t = torch.tensor([0.0, 5, 100, 300, 600, 900, 999])
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    cond = mixture3(x, t, labels).x0
    uncond = mixture3(x, t).x0
    torch.testing.assert_close(ClassifierFreeGuidance(mixture3, 1.0)(x, t, labels).x0, cond, rtol=0, atol=1e-12)
    assert torch.equal(ClassifierFreeGuidance(mixture3, 0.0)(x, t, labels).x0, uncond)
    # Ho & Salimans' w = 0 is our scale 1
    torch.testing.assert_close(ClassifierFreeGuidance.from_ho(mixture3, 0.0)(x, t, labels).x0, cond, rtol=0, atol=1e-12)
    # an unconditional request through the CFG wrapper stays unconditional at any scale
    nul = torch.full((7,), NULL_LABEL)
    torch.testing.assert_close(ClassifierFreeGuidance(mixture3, 4.0)(x, t, nul).x0, uncond, rtol=0, atol=1e-12)
    # and whole runs agree with the conditional model run directly
    direct = sample(mixture3, (7, 2), NoiseSource.from_seeds(range(7)), steps="50", rule=DDPM(), labels=labels, dtype=torch.float64)
    cfg = sample(ClassifierFreeGuidance(mixture3, 1.0), (7, 2), NoiseSource.from_seeds(range(7)), steps="50", rule=DDPM(),
                 labels=labels, dtype=torch.float64)
    torch.testing.assert_close(cfg, direct, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("w", [0.5, 2.0, 4.0])
def test_cfg_at_scale_w_equals_exact_classifier_guidance_at_s_w(mixture3, w):
    # Bayes: score(x_t | c) - score(x_t) = grad log p(c | x_t), so x0_u + w (x0_c - x0_u) is the
    # prior's x0 plus w (1 - ab)/sqrt(ab) grad log p(c | x_t): the classifier-guidance correction.
    labels = torch.tensor([0, 1, 2, 2, 1, 0, 1, 2])
    a = sample(ClassifierFreeGuidance(mixture3, w), (8, 2), NoiseSource.from_seeds(range(8)), steps="60", rule=DDPM(),
               labels=labels, dtype=torch.float64)
    b = sample(mixture3, (8, 2), NoiseSource.from_seeds(range(8)), steps="60", rule=DDPM(),
               terms=[ClassifierGuidance(mixture3.classifier(), labels, w)], dtype=torch.float64)
    torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-7)


def test_cfg_above_one_pushes_samples_away_from_the_other_classes(mixture3):
    # w > 1 samples (roughly) p(x | c) p(c | x)^(w - 1): mass near the other components is removed,
    # so the class mean moves away from them and the spread shrinks
    target = 1
    stats = {}
    for w in (1.0, 3.0):
        x = sample(ClassifierFreeGuidance(mixture3, w), (N // 4, 2), OneStream(9, N // 4), steps="100", rule=DDIM(0.0),
                   labels=torch.full((N // 4,), target), dtype=torch.float64)
        stats[w] = (x.mean(0), empirical_cov(x).trace(), float((component_of(mixture3, x) == target).double().mean()))
    others = torch.stack([mixture3.components[k].mean for k in (0, 2)]).mean(0)
    away = lambda m: float((m - others).norm())  # noqa: E731
    assert away(stats[3.0][0]) > away(stats[1.0][0]) + 0.02, stats
    assert float(stats[3.0][1]) < float(stats[1.0][1]), stats
    assert stats[3.0][2] >= stats[1.0][2] >= 0.99


def test_guidance_inputs_are_checked(mixture3):
    with pytest.raises(ValueError, match="scale"):
        ClassifierGuidance(mixture3.classifier(), torch.zeros(2, dtype=torch.long), scale=-1.0)
    with pytest.raises(ValueError, match="window"):
        ClassifierGuidance(mixture3.classifier(), torch.zeros(2, dtype=torch.long), sigma_window=(2.0, 1.0))
    term = ClassifierGuidance(mixture3.classifier(), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="labels for a batch"):
        sample(mixture3, (2, 2), NoiseSource.from_seeds(range(2)), steps="10", terms=[term], dtype=torch.float64)
    with pytest.raises(ValueError, match="class labels"):
        ClassifierFreeGuidance(mixture3, 2.0)(torch.zeros(2, 2, dtype=torch.float64), torch.zeros(2))
