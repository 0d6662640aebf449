"""Tiled network evaluation (guidedinv/tiling.py): the blend is a partition of unity, tiles cover the
image, per-item inputs follow their image, and nothing depends on the batch or the chunking."""
from __future__ import annotations

import pytest
import torch

from guidedinv.denoiser import NetworkDenoiser
from guidedinv.schedule import VPSchedule
from guidedinv.tiling import Tiling, blend_window, recommended_tiling, tile_starts, tiled_call


def pointwise(x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """A network acting pixel by pixel, with per-item timestep and label inputs."""
    out = torch.tanh(1.7 * x + 0.3 * x.roll(1, dims=1)) * (t / 1000).view(-1, 1, 1, 1)
    return out if labels is None else out + labels.view(-1, 1, 1, 1).to(x.dtype)


@pytest.mark.parametrize("length,tile,overlap", [(256, 64, 16), (100, 64, 16), (64, 64, 16), (40, 64, 16), (200, 48, 0), (97, 32, 31)])
def test_tiles_cover_the_axis_and_neighbours_share_at_least_the_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    size = min(tile, length)
    covered = torch.zeros(length, dtype=torch.bool)
    for s in starts:
        assert 0 <= s and s + size <= length
        covered[s:s + size] = True
    assert bool(covered.all())
    assert starts == sorted(set(starts)) and starts[-1] + size == length
    for a, b in zip(starts, starts[1:]):
        assert a + size - b >= overlap  # neighbours share at least the overlap


def test_blend_window_ramps_over_the_overlap_and_is_positive():
    w = blend_window(64, 16, torch.float64, torch.device("cpu"))
    assert bool((w > 0).all()) and torch.equal(w, w.flip(0))
    assert torch.equal(w[16:48], torch.ones(32, dtype=torch.float64))
    assert torch.allclose(w[:16], (torch.arange(16, dtype=torch.float64) + 0.5) / 16)
    assert torch.equal(blend_window(10, 0, torch.float64, torch.device("cpu")), torch.ones(10, dtype=torch.float64))


@pytest.mark.parametrize("hw", [(256, 256), (200, 136), (64, 300), (48, 40), (96, 64)])
def test_a_pixelwise_network_gives_the_same_output_tiled_or_not(hw):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 3, *hw, generator=gen, dtype=torch.float64)
    t = torch.tensor([10.0, 500.0, 990.0], dtype=torch.float64)
    labels = torch.tensor([0, 2, 1])
    whole = pointwise(x, t, labels)
    tiled = tiled_call(pointwise, x, (t, labels), Tiling(64, 16))
    assert tiled.shape == whole.shape
    assert torch.allclose(tiled, whole, atol=1e-12, rtol=0)  # the weights sum to one at every pixel
    assert torch.allclose(tiled_call(pointwise, x, (t, None), Tiling(32, 8)), pointwise(x, t), atol=1e-12, rtol=0)


def test_a_local_network_sees_only_its_tile():
    """A 3x3 box filter differs from its tiled evaluation exactly where a tile edge cuts its footprint."""
    def box(x, t):
        return torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)

    x = torch.randn(1, 1, 96, 96, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    tiled = tiled_call(box, x, (torch.zeros(1),), Tiling(64, 32))  # tiles at 0 and 32 on each axis
    diff = (tiled - box(x, None)).abs()[0, 0]
    assert float(diff.max()) > 1e-3  # the seams are not hidden
    assert float(diff[40:56, 40:56].max()) < 1e-12  # interior of all four tiles: identical


def test_each_image_of_a_batch_is_tiled_on_its_own_and_chunking_does_not_matter():
    conv = torch.nn.Conv2d(3, 3, 5, padding=2).double()
    torch.nn.init.normal_(conv.weight, generator=torch.Generator().manual_seed(2))
    gn = torch.nn.GroupNorm(1, 3).double()

    def net(x, t):
        return gn(conv(x)) * (t / 1000).view(-1, 1, 1, 1)

    x = torch.randn(3, 3, 130, 100, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    t = torch.tensor([100.0, 400.0, 800.0], dtype=torch.float64)
    with torch.no_grad():
        together = tiled_call(net, x, (t,), Tiling(64, 16, max_tiles=64))
        one_tile_per_call = tiled_call(net, x, (t,), Tiling(64, 16, max_tiles=1))
        alone = torch.cat([tiled_call(net, x[i:i + 1], (t[i:i + 1],), Tiling(64, 16)) for i in range(3)])
        whole = net(x, t)
    assert torch.allclose(together, one_tile_per_call, atol=1e-12, rtol=0)
    assert torch.allclose(together, alone, atol=1e-12, rtol=0)
    assert float((together - whole).abs().max()) > 1e-3  # GroupNorm over a tile is not over the image


def test_the_denoiser_tiles_its_network_and_can_be_switched_off():
    denoiser = NetworkDenoiser(lambda x, t: pointwise(x, t), VPSchedule.named("linear"), prediction="x0", clip=False,
                               tiling=Tiling(32, 8))
    x = torch.randn(2, 3, 80, 72, generator=torch.Generator().manual_seed(4))
    t = torch.tensor([5.0, 700.0])
    tiled = denoiser(x, t).x0
    denoiser.tiling = None
    assert torch.allclose(tiled, denoiser(x, t).x0, atol=1e-6, rtol=0)


def test_recommended_tiling_is_four_thirds_of_the_training_crop():
    assert recommended_tiling(48, 8) == Tiling(64, 8)
    assert recommended_tiling(96, 8) == Tiling(128, 16)
    assert recommended_tiling(32, 8) == Tiling(48, 6)
    assert recommended_tiling(48, 32) == Tiling(64, 8)
    assert recommended_tiling(None, 8) is None and recommended_tiling(0, 8) is None


@pytest.mark.parametrize("size,overlap,max_tiles", [(0, 0, 1), (64, 64, 1), (64, -1, 1), (64, 16, 0)])
def test_bad_tilings_are_refused(size, overlap, max_tiles):
    with pytest.raises(ValueError, match="tiling"):
        Tiling(size, overlap, max_tiles)


# -- chunks under a memory budget (guidedinv.memory) ----------------------------------------------------
def _recording(net):
    """``net`` that also records the batch size of every call."""
    sizes: list[int] = []

    def fn(x, *extras):
        sizes.append(x.shape[0])
        return net(x, *extras)

    return fn, sizes


def _groupnorm_net():
    conv = torch.nn.Conv2d(3, 3, 5, padding=2).double()
    torch.nn.init.normal_(conv.weight, generator=torch.Generator().manual_seed(2))
    gn = torch.nn.GroupNorm(1, 3).double()
    return lambda x, t: gn(conv(x)) * (t / 1000).view(-1, 1, 1, 1)


@pytest.mark.parametrize("kind", ["groupnorm", "pointwise"])
def test_chunks_under_a_budget_give_the_output_of_one_call(kind):
    """Chunks of 1, 5 (crossing from one image to the next) and all 18 tiles of three 130x100 images:
    the same output; the chunks follow the budget and never exceed it."""
    from guidedinv.memory import call_bytes

    net = _groupnorm_net() if kind == "groupnorm" else (lambda x, t: pointwise(x, t))
    x = torch.randn(3, 3, 130, 100, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    t = torch.tensor([100.0, 400.0, 800.0], dtype=torch.float64)
    outs = {}
    with torch.no_grad():
        for per_call in (18, 5, 1):
            fn, sizes = _recording(net)
            per_tile = call_bytes(fn, x[:1, :, :64, :64], (t[:1],), False)
            sizes.clear()  # the measurement's own call
            outs[per_call] = tiled_call(fn, x, (t,), Tiling(64, 16, max_tiles=1000), budget=per_call * per_tile + per_tile // 2)
            assert sizes == [per_call] * (18 // per_call) + ([18 % per_call] if 18 % per_call else [])
    assert torch.equal(outs[18], outs[5]) and torch.equal(outs[18], outs[1])


def test_max_tiles_caps_the_tiles_of_one_image():
    """Before, one image's tiles always went into one call whatever max_tiles said."""
    fn, sizes = _recording(lambda x, t: pointwise(x, t))
    x = torch.randn(1, 3, 160, 160, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    t = torch.tensor([300.0], dtype=torch.float64)
    with torch.no_grad():
        out = tiled_call(fn, x, (t,), Tiling(64, 16, max_tiles=4), budget=2**40)
    assert sizes[-3:] == [4, 4, 1]  # 3 x 3 tiles
    assert torch.allclose(out, pointwise(x, t), atol=1e-12, rtol=0)


def test_progress_reports_every_chunk_up_to_the_total():
    from guidedinv.tiling import tile_progress

    seen: list[tuple[int, int]] = []
    x = torch.randn(2, 3, 160, 160, dtype=torch.float64)
    with torch.no_grad():
        with tile_progress(lambda done, total: seen.append((done, total))):
            tiled_call(lambda x, t: pointwise(x, t), x, (torch.ones(2),), Tiling(64, 16, max_tiles=4), budget=2**40)
        assert seen == [(0, 18), (4, 18), (8, 18), (12, 18), (16, 18), (18, 18)]  # 2 images of 3 x 3 tiles
        tiled_call(lambda x, t: pointwise(x, t), x, (torch.ones(2),), Tiling(64, 16))  # outside: nobody is told
    assert len(seen) == 6


def test_a_whole_image_over_the_budget_falls_back_to_tiles_or_is_refused():
    from guidedinv.errors import InputError
    from guidedinv.memory import call_bytes

    net = _groupnorm_net()
    x = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    t = torch.tensor([100.0, 700.0], dtype=torch.float64)
    with torch.no_grad():
        whole = call_bytes(net, x[:1], (t[:1],), False)
        fn, sizes = _recording(net)
        assert torch.equal(tiled_call(fn, x, (t,), None, budget=3 * whole), net(x, t))
        sizes.clear()
        by_image = tiled_call(fn, x, (t,), None, budget=whole + whole // 4)  # one image per call
        assert sizes == [1, 1] and torch.allclose(by_image, net(x, t), atol=1e-12, rtol=0)
        with pytest.warns(RuntimeWarning, match="instead"):
            fell = tiled_call(net, x, (t,), None, budget=whole // 2, fallback=Tiling(64, 16))
        assert torch.equal(fell, tiled_call(net, x, (t,), Tiling(64, 16), budget=whole // 2))
        alone = tiled_call(net, x, (t,), None, budget=whole // 2, room=2 * whole)  # no fallback: alone, if it fits
        assert torch.allclose(alone, net(x, t), atol=1e-12, rtol=0)
        with pytest.raises(InputError, match=r"whole image.*more than the .* available; at most about \d+x\d+ px") as info:
            tiled_call(net, x, (t,), None, budget=whole // 2, room=whole // 2)
    assert "\n" not in str(info.value) and "--tile N" in str(info.value)


def test_with_gradients_chunks_are_checkpointed_and_the_gradient_is_unchanged():
    """DPS differentiates through the network: over the budget, each chunk is recomputed in the
    backward pass instead of keeping its activations; the gradient is the same."""
    from guidedinv.memory import call_bytes
    from guidedinv.tiling import plan_call

    net = _groupnorm_net()
    x0 = torch.randn(2, 3, 130, 100, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    t = torch.tensor([100.0, 700.0], dtype=torch.float64)
    r = torch.randn(2, 3, 130, 100, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    per_tile = call_bytes(net, x0[:1, :, :64, :64], (t[:1],), True)
    grads = []
    for budget in (2**40, 3 * per_tile):
        plan = plan_call(2, 130, 100, Tiling(64, 16, max_tiles=1000), lambda h, w: per_tile, budget, grad=True)
        assert plan.checkpoint == (budget < 2**40) and plan.tiles == 12
        x = x0.clone().requires_grad_(True)
        out = tiled_call(net, x, (t,), Tiling(64, 16, max_tiles=1000), budget=budget)
        (grad,) = torch.autograd.grad((out * r).sum(), x)
        grads.append(grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-12, rtol=0)


def test_plan_chunks_fit_the_budget_and_a_tile_is_never_split():
    from guidedinv.tiling import plan_call

    plan = plan_call(3, 512, 512, Tiling(64, 8, max_tiles=1000), lambda h, w: 10 * h * w, budget=10 * 64 * 64 * 20)
    assert (plan.tiles, plan.chunk, plan.checkpoint) == (3 * 81, 20, False) and plan.peak_bytes <= 10 * 64 * 64 * 20
    assert plan_call(1, 512, 512, Tiling(64, 8), lambda h, w: 10 * h * w, budget=10).chunk == 1  # one tile over: alone
    assert plan_call(1, 512, 512, Tiling(64, 8, max_tiles=7), lambda h, w: 1, budget=2**40).chunk == 7
    grad = plan_call(1, 512, 512, Tiling(64, 8), lambda h, w: 100, budget=81 * 100, grad=True)
    assert not grad.checkpoint and grad.peak_bytes == 81 * 100  # every tile keeps its activations


def test_the_gradient_through_tiles_is_the_exact_jacobian_and_reaches_the_parameters():
    """gradcheck of the tiled call (chunks of 3 tiles, checkpointed) against finite differences, and the
    network's parameter gradients equal to one call's."""
    conv1, conv2 = torch.nn.Conv2d(1, 2, 3, padding=1).double(), torch.nn.Conv2d(2, 1, 3, padding=1).double()
    gn = torch.nn.GroupNorm(1, 2).double()

    def net(x, t):
        return conv2(torch.nn.functional.silu(gn(conv1(x)))) * t.view(-1, 1, 1, 1)

    t = torch.tensor([0.5, 2.0], dtype=torch.float64)
    x = torch.randn(2, 1, 24, 20, generator=torch.Generator().manual_seed(9), dtype=torch.float64, requires_grad=True)
    tiling = Tiling(16, 4, max_tiles=3)  # 2 x 2 tiles an image, chunks cross images
    assert torch.autograd.gradcheck(lambda a: tiled_call(net, a, (t,), tiling, budget=2**40), (x,), fast_mode=True)
    assert torch.autograd.gradcheck(lambda a: tiled_call(net, a, (t,), Tiling(16, 4), budget=1), (x,), fast_mode=True)  # checkpointed
    r = torch.randn(2, 1, 24, 20, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    grads = []
    for budget in (2**40, 1):
        out = tiled_call(net, x, (t,), Tiling(16, 4, max_tiles=1000), budget=budget)
        grads.append(torch.autograd.grad((out * r).sum(), [x, conv1.weight, gn.weight]))
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-12, rtol=0)
    whole = torch.autograd.grad((pointwise(x, t) * r).sum(), x)[0]  # a pixelwise net: tiled == whole, gradients too
    tiled = torch.autograd.grad((tiled_call(pointwise, x, (t,), Tiling(16, 4), budget=1) * r).sum(), x)[0]
    assert torch.allclose(tiled, whole, atol=1e-12, rtol=0)


def test_a_frozen_networks_gradient_is_recomputed_chunk_by_chunk_and_unchanged():
    """A loaded denoiser (parameters frozen) over the budget: no graph in the forward pass, each chunk
    run again in the backward pass; the output and the gradient are those of keeping everything."""
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.GroupNorm(2, 4), torch.nn.SiLU(),
                              torch.nn.Conv2d(4, 3, 3, padding=1)).double().requires_grad_(False)
    calls: list[bool] = []

    def network(x, t):
        calls.append(torch.is_grad_enabled())
        return net(x) * (t / 1000).view(-1, 1, 1, 1)

    denoiser = NetworkDenoiser(network, VPSchedule.named("linear"), prediction="x0", clip=False)
    denoiser.body = net  # its parameters, frozen
    x0 = torch.randn(2, 3, 40, 36, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    t = torch.tensor([300.0, 800.0], dtype=torch.float64)
    r = torch.randn(2, 3, 40, 36, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    results = []
    for budget in (2**40, 1):
        denoiser.tiling = Tiling(24, 4, max_tiles=3, budget=budget)  # 2 x 2 tiles an image, chunks of at most 3
        x = x0.clone().requires_grad_(True)
        calls.clear()
        out = denoiser(x, t).x0
        forward = list(calls)
        calls.clear()
        results.append((out.detach(), torch.autograd.grad((out * r).sum(), x)[0]))
        if budget == 1:  # chunks of one tile: 8 without a graph, then each again with one in the backward pass
            assert forward == [False] * 8 and calls == [True] * 8
    assert torch.equal(results[0][0], results[1][0])
    assert torch.allclose(results[0][1], results[1][1], atol=1e-12, rtol=0)
    x = x0.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: denoiser(a, t).x0, (x,), fast_mode=True)
