"""Schedules, respacing and noise-level conversions against guided-diffusion's definitions."""
from __future__ import annotations

import math

import pytest
import torch

from guidedinv.sampler import Resampling, build_path, resampling_path
from guidedinv.schedule import VPSchedule, alpha_bar_to_sigma, cosine_betas, linear_betas, respace, sigma_to_alpha_bar

TEN_TEN_TEN = [
    0, 37, 74, 111, 148, 185, 222, 259, 296, 333,
    334, 371, 408, 445, 482, 518, 555, 592, 629, 666,
    667, 704, 741, 778, 815, 851, 888, 925, 962, 999,
]  # fmt: skip  (worked out by hand from guided-diffusion's respace.space_timesteps)


def test_respacing_250_matches_guided_diffusion():
    steps = respace("250")
    assert len(steps) == 250
    assert steps[:6] == [0, 4, 8, 12, 16, 20]
    assert steps[-3:] == [991, 995, 999]
    # every step is round-half-even of j * 999/249
    assert steps == sorted({round(j * 999 / 249) for j in range(250)})


def test_respacing_ddim25_matches_guided_diffusion():
    assert respace("ddim25") == list(range(0, 1000, 40))
    assert respace("ddim25")[-1] == 960
    assert respace("ddim50") == list(range(0, 1000, 20))
    assert respace("ddim250") == list(range(0, 1000, 4))


def test_respacing_sections_10_10_10():
    assert respace("10,10,10") == TEN_TEN_TEN


@pytest.mark.parametrize(
    "spec, head, tail",
    [("100", [0, 10, 20], [979, 989, 999]), ("50", [0, 20, 41, 61, 82], [999]), ("20", [0, 53, 105, 158], [999])],
)
def test_respacing_other_counts(spec, head, tail):
    steps = respace(spec)
    assert len(steps) == int(spec)
    assert steps[: len(head)] == head and steps[-len(tail):] == tail


@pytest.mark.parametrize("bad", ["ddim999", "1001", "abc", "ddimx", "0"])
def test_respacing_rejects_impossible_specs(bad):
    with pytest.raises(ValueError):
        respace(bad)


def test_linear_schedule_endpoints_and_scaling():
    betas = linear_betas(1000)
    assert betas.dtype == torch.float64
    assert float(betas[0]) == pytest.approx(1e-4) and float(betas[-1]) == pytest.approx(0.02)
    short = linear_betas(250)  # scaled by 1000/T
    assert float(short[0]) == pytest.approx(4e-4) and float(short[-1]) == pytest.approx(0.08)
    sched = VPSchedule.linear()
    assert sched.alpha_bar(999) == pytest.approx(float(torch.prod(1 - betas)), rel=1e-12)
    assert sched.alpha_bar(999) == pytest.approx(4.04e-5, rel=0.01)


def test_cosine_schedule_formula_and_clip():
    betas = cosine_betas(1000)
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    sched = VPSchedule.cosine()
    # alpha_bar_t = f((t+1)/T) / f(0) as long as no beta was clipped
    for t in (0, 10, 500, 900):
        assert sched.alpha_bar(t) == pytest.approx(f((t + 1) / 1000) / f(0), rel=1e-9)
    assert float(betas[-1]) == pytest.approx(0.999)
    assert float(betas.max()) <= 0.999


def test_conversions_round_trip():
    sched = VPSchedule.linear()
    for t in (0, 1, 17, 500, 999):
        ab = sched.alpha_bar(t)
        assert sigma_to_alpha_bar(alpha_bar_to_sigma(ab)) == pytest.approx(ab, rel=1e-12)
        assert sched.t_from_sigma(sched.sigma(t)) == t
    assert sched.alpha_bar(-1) == 1.0 and sched.sigma(-1) == 0.0 and sched.t_from_sigma(0.0) == -1


def test_tensor_lookup_agrees_with_scalar_and_interpolates_log_snr():
    sched = VPSchedule.cosine()
    t = torch.tensor([-1.0, 0.0, 5.0, 999.0, 10.5, -0.5])
    ab = sched.alpha_bar_tensor(t)
    for ti, abi in zip(t.tolist(), ab.tolist()):
        assert abi == pytest.approx(sched.alpha_bar(ti), rel=1e-12)
    snr = lambda a: math.log(a / (1 - a))  # noqa: E731
    mid = snr(float(ab[4]))
    assert mid == pytest.approx(0.5 * (snr(sched.alpha_bar(10)) + snr(sched.alpha_bar(11))), rel=1e-12)
    with pytest.raises(ValueError):
        sched.alpha_bar_tensor(torch.tensor([1000.0]))


def test_repaint_resampling_path_counts():
    # RePaint's paper setting: 250 levels, jump length 10, 10 resamplings -> 4571 entries, 2410 network calls
    path = resampling_path(250, Resampling(10, 10))
    assert len(path) == 4571
    assert sum(1 for a, b in zip(path, path[1:]) if b < a) == 2410
    # start: 249 down to 230, then straight back up to 240, then down again
    assert path[:20] == list(range(249, 229, -1))
    assert path[20:31] == list(range(231, 241)) + [239]
    assert path[-2:] == [0, -1]


def test_build_path_init_t_cuts_the_grid():
    path = build_path("ddim25", VPSchedule.linear(), init_t=500)
    assert path[0] == 480 and path[-2:] == [0, -1]
    assert path == sorted(path[:-1], reverse=True) + [-1]
    with pytest.raises(ValueError):
        build_path(10, VPSchedule.linear(), init_t=1000)


@pytest.mark.parametrize("init_t", [1, 57, 300, 999])
@pytest.mark.parametrize("count", [2, 10, 20])
def test_logsnr_grid_below_a_warm_start_spends_every_step_under_it(init_t, count):
    """A warm start at init_t with "logsnrN": N distinct steps from init_t down to 0 (N network calls),
    evenly spaced in log-SNR; guided-diffusion's specs keep SDEdit's cut instead."""
    sched = VPSchedule.linear()
    if count > init_t + 1:
        with pytest.raises(ValueError, match="below init_t"):
            build_path(f"logsnr{count}", sched, init_t=init_t)
        return
    path = build_path(f"logsnr{count}", sched, init_t=init_t)
    assert len(path) == count + 1 and path[0] == init_t and path[-2:] == [0, -1]
    assert path[:-1] == sorted(set(path[:-1]), reverse=True)
    if count >= 10 and init_t >= 300:
        logs = [math.log(sched.sigma(t)) for t in path[:-1] if t >= 20]  # below: integer rounding dominates
        gaps = [a - b for a, b in zip(logs, logs[1:])]
        assert max(gaps) < 1.3 * min(gaps)  # near-uniform in log sigma
    if init_t == 999:  # the full range: the same grid as a start from noise
        assert build_path(f"logsnr{count}", sched, init_t=999) == build_path(f"logsnr{count}", sched)


@pytest.mark.parametrize("count", [2, 10, 25, 100, 500, 1000])
def test_logsnr_spacing_is_exact_count_and_near_uniform_in_log_snr(count):
    sched = VPSchedule.linear()
    steps = respace(f"logsnr{count}", schedule=sched)
    assert len(steps) == count and steps == sorted(set(steps)) and steps[0] == 0 and steps[-1] == 999
    if 3 <= count <= 25:  # coarse grids: gaps in log sigma even up to rounding (fine ones hit integer t)
        gaps = [math.log(sched.sigma(b) / sched.sigma(a)) for a, b in zip(steps, steps[1:])]
        ideal = math.log(sched.sigma(999) / sched.sigma(0)) / (count - 1)
        assert max(abs(g - ideal) for g in gaps[1:]) < 0.5 * ideal + 0.05
    with pytest.raises(ValueError):
        respace("logsnr10")  # needs the schedule
