"""guidedinv/memory_estimate.py: the peak memory of a restoration, planned as the tiled call runs it,
and a refusal that says what would fit (and the size it names does fit)."""
from __future__ import annotations

import re

import pytest
import torch

from guidedinv.denoiser import NetworkDenoiser
from guidedinv.errors import InputError
from guidedinv.memory_estimate import check_memory, estimate_for, estimate_memory
from guidedinv.schedule import VPSchedule
from guidedinv.tiling import Tiling, tiled_call

GB = 2**30


def test_the_network_part_stays_within_the_budget_and_only_the_images_grow():
    sizes = [(408, 612), (1632, 2448), (4000, 6000)]
    for gradient in (False, True):
        estimates = [estimate_memory(h, w, gradient=gradient, budget=GB) for h, w in sizes]
        assert all(e.network <= GB for e in estimates)
        assert estimates[-1].network == estimates[1].network  # flat beyond the budget
        ratios = [e.images / (h * w) for e, (h, w) in zip(estimates, sizes)]
        assert max(ratios) == pytest.approx(min(ratios), rel=1e-6)  # the images part is linear in the pixels
    grad = estimate_memory(1632, 2448, gradient=True, budget=GB)
    assert grad.plan.checkpoint  # kept activations of all tiles would be far over the budget
    small = estimate_memory(64, 64, gradient=True, budget=GB)
    assert not small.plan.checkpoint and small.network == small.plan.item_bytes  # one tile, kept


def test_a_whole_image_over_the_budget_falls_back_or_is_refused_up_front():
    fell = estimate_memory(2000, 3000, tiling=None, budget=GB)
    assert fell.plan.fell_back and fell.network <= GB
    alone = estimate_memory(2000, 3000, tiling=None, fallback=None, budget=GB, room=100 * GB)
    assert alone.plan.tiling is None and alone.network > GB  # a whole image cannot be split: alone, over the budget
    with pytest.raises(InputError, match="whole image"):
        estimate_memory(2000, 3000, tiling=None, fallback=None, budget=GB, room=4 * GB)
    assert estimate_memory(256, 256, tiling=None, fallback=None, budget=GB).plan.tiling is None


def test_the_estimate_plans_the_chunks_the_network_call_runs():
    conv = torch.nn.Conv2d(3, 3, 3, padding=1)
    calls: list[int] = []

    def net(x, t):
        calls.append(x.shape[0])
        return conv(x)

    denoiser = NetworkDenoiser(net, VPSchedule.named("linear"), prediction="x0", clip=False, tiling=Tiling(32, 4))
    denoiser.conv = conv  # its weights
    per_tile = estimate_for(denoiser, 32, 32, budget=GB).plan.item_bytes
    budget = 7 * per_tile + 1
    estimate = estimate_for(denoiser, 150, 100, batch=2, budget=budget)
    x, t = torch.randn(2, 3, 150, 100), torch.full((2,), 10.0)
    calls.clear()
    with torch.no_grad():
        tiled_call(denoiser._call_net, x, (t, None), denoiser.tiling, budget=budget)
    assert calls == [estimate.plan.chunk] * (len(calls) - 1) + [calls[-1]] and sum(calls) == estimate.plan.tiles
    assert estimate.plan.chunk == 7 and estimate.weights == sum(p.numel() * 4 for p in conv.parameters())


def test_a_request_that_cannot_fit_is_refused_with_a_size_that_fits():
    estimate = estimate_memory(4000, 6000, batch=2, gradient=True, budget=GB)
    room = 2 * GB
    with pytest.raises(InputError) as info:
        check_memory(estimate, available=room, what="deblur with dps")
    message = str(info.value)
    assert "\n" not in message and message.startswith("deblur with dps (2 x 6000x4000 px) needs about")
    w, h = map(int, re.search(r"at most about (\d+)x(\d+) px fit", message).groups())
    assert abs(w / h - 1.5) < 0.01
    assert estimate_memory(h, w, batch=2, gradient=True, budget=GB).total <= room
    assert estimate_memory(h + 8, w + 12, batch=2, gradient=True, budget=GB).total > room  # the largest, near enough
    check_memory(estimate, available=estimate.total)  # what fits passes
    four = estimate_memory(1000, 1500, batch=4, budget=GB // 4)
    with pytest.raises(InputError, match="one image at a time fits"):
        check_memory(four, available=estimate_memory(1000, 1500, budget=GB // 4).total)
    dps = estimate_memory(1000, 1500, gradient=True, budget=GB // 4)
    with pytest.raises(InputError, match=r"without gradients through the network \(pnp, ddnm, diffpir\) needs"):
        check_memory(dps, available=estimate_memory(1000, 1500, budget=GB // 4).total)


def test_the_embedded_priors_figures_are_what_its_network_measures():
    """The estimate before any model loads uses the embedded prior's measured bytes per pixel."""
    from guidedinv.defaults import load_prior
    from guidedinv.memory_estimate import EMBEDDED_BYTES_PER_PIXEL, EMBEDDED_TILING, EMBEDDED_WEIGHTS, network_bytes_per_pixel

    prior = load_prior("default", device="cpu")
    assert prior.tiling == EMBEDDED_TILING
    assert sum(p.numel() * 4 for p in prior.parameters()) == EMBEDDED_WEIGHTS
    for gradient in (False, True):
        assert network_bytes_per_pixel(prior, gradient) == pytest.approx(EMBEDDED_BYTES_PER_PIXEL[gradient], rel=0.02)
