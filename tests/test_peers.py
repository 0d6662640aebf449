"""The peer adapters are exact: deepinv's denoiser interface over ours against a closed-form posterior
mean, diffusers' DDIM loop over our eps against our own DDIM sampler, our operators as deepinv physics
against deepinv's own solvers. The library tests skip when deepinv / diffusers are not installed."""
from __future__ import annotations

import importlib.util

import pytest
import torch
from conftest import save_tiny_prior

from guidedinv.bench.harness import CountingDenoiser
from guidedinv.bench.peers import (
    PEERS,
    EpsUNet,
    PeerUnavailable,
    UnitRangeDenoiser,
    continuous_timestep,
    diffusers_ddim_sample,
    load_deepinv,
    operator_physics,
    repaint_steps_for_budget,
    svd_physics,
)
from guidedinv.defaults import load_prior
from guidedinv.noise import NoiseSource
from guidedinv.operators import Blur, Downsample, Inpainting
from guidedinv.priors import GaussianPrior
from guidedinv.rules import DDIM
from guidedinv.sampler import sample
from guidedinv.schedule import VPSchedule


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("peers") / "tiny.safetensors"
    save_tiny_prior(path)
    return load_prior(str(path), "cpu")


@pytest.fixture(scope="module")
def dinv():
    if importlib.util.find_spec("deepinv") is None:
        pytest.skip("deepinv is not installed (pip install 'guidedinv[peers]')")
    try:
        return load_deepinv()[0]
    except PeerUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def diffusers():
    return pytest.importorskip("diffusers")


def gaussian_image_prior(shape=(3, 4, 4)) -> GaussianPrior:
    gen = torch.Generator().manual_seed(0)
    d = shape[0] * shape[1] * shape[2]
    mean = torch.rand(d, generator=gen, dtype=torch.float64) * 1.6 - 0.8
    var = torch.rand(d, generator=gen, dtype=torch.float64) * 0.3 + 0.05
    return GaussianPrior(mean, var, event_shape=shape)


def test_continuous_timestep_inverts_the_schedule():
    sched = VPSchedule.linear()
    t = torch.tensor([0.0, 1.0, 17.0, 250.0, 999.0], dtype=torch.float64)
    sigma = ((1 - sched.alphas_cumprod[t.long()]) / sched.alphas_cumprod[t.long()]).sqrt()
    assert torch.allclose(continuous_timestep(sched, sigma), t, atol=1e-9)
    frac = torch.tensor([0.3, 123.45, 998.9], dtype=torch.float64)
    sigma = ((1 - sched.alpha_bar_tensor(frac)) / sched.alpha_bar_tensor(frac)).sqrt()
    back = continuous_timestep(sched, sigma)
    assert torch.allclose(back, frac, atol=1e-9)
    assert torch.allclose(sched.alpha_bar_tensor(back), 1 / (1 + sigma**2), rtol=1e-12)
    assert continuous_timestep(sched, torch.tensor([1e-6, 1e6])).tolist() == [0.0, 999.0]  # clamped


@pytest.mark.parametrize("sigma", [0.006, 0.08, 0.37, 3.0, 70.0])
def test_unit_range_denoiser_is_the_exact_posterior_mean(sigma):
    """On [0, 1] with noise sigma ([0, 1] scale) a Gaussian prior's E[x0 | x] is known in closed form."""
    prior = gaussian_image_prior()
    x0 = torch.rand(2, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x = x0 + sigma * torch.randn(x0.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    mean_u, var_u = ((prior.mean + 1) / 2).view(3, 4, 4), (prior.cov.diagonal() / 4).view(3, 4, 4)
    exact = mean_u + var_u / (var_u + sigma**2) * (x - mean_u)
    assert torch.allclose(UnitRangeDenoiser(prior)(x, sigma), exact, atol=1e-6, rtol=0)
    per_item = UnitRangeDenoiser(prior)(x, torch.tensor([sigma, sigma]).view(2, 1, 1, 1))
    assert torch.allclose(per_item, exact, atol=1e-6, rtol=0)


def test_unit_range_denoiser_equals_our_network_at_the_matching_timestep(tiny):
    x0 = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    for t in (0, 40, 500, 999):
        ab = tiny.schedule.alpha_bar(t)
        sigma = ((1 - ab) / ab) ** 0.5 / 2  # deepinv's sigma: [0, 1] scale
        x = x0 + sigma * torch.randn(x0.shape, generator=torch.Generator().manual_seed(t))
        with torch.no_grad():
            theirs = UnitRangeDenoiser(tiny)(x, sigma)
            ours = (tiny(ab**0.5 * (2 * x - 1), torch.tensor([float(t)])).x0 + 1) / 2
        assert (theirs - ours).abs().max() < 1e-6


def test_eps_unet_is_our_eps(tiny):
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        out = EpsUNet(tiny)(x, torch.tensor(321)).sample
        ours = tiny.eps(x, torch.tensor([321.0, 321.0]))
    assert torch.equal(out, ours)


@pytest.mark.parametrize("steps", [10, 25])
def test_diffusers_ddim_over_our_eps_equals_our_ddim(tiny, diffusers, steps):
    """diffusers' DDIMScheduler (eta 0, leading spacing, its own float32 alpha_bar) = our 'ddimN' DDIM."""
    ours = sample(tiny, (2, 3, 16, 16), NoiseSource.from_seeds([3, 4]), steps=f"ddim{steps}", rule=DDIM(0.0))
    x_t = NoiseSource.from_seeds([3, 4]).randn((3, 16, 16))
    theirs = diffusers_ddim_sample(diffusers, tiny, x_t, steps)
    assert (ours - theirs).abs().max() < 1e-5


def test_repaint_budget_and_counted_calls(tiny, diffusers):
    counter = CountingDenoiser(tiny)
    for nfe in (5, 12):
        steps = repaint_steps_for_budget(diffusers, tiny.schedule, nfe, 5, 3)
        assert steps >= 1
        mask = torch.ones(16, 16, dtype=torch.bool)
        mask[4:12, 4:12] = False
        op = Inpainting(mask)
        counter.reset()
        out = PEERS["diffusers-repaint"].run(diffusers, counter, op, op.A(torch.rand(1, 3, 16, 16)), 0.0, nfe, 0)
        assert out.shape == (1, 3, 16, 16) and torch.isfinite(out).all()
        assert 0 < counter.calls <= nfe and counter.grad_calls == 0


def _ops():
    mask = torch.rand(16, 16, generator=torch.Generator().manual_seed(5)) < 0.6
    return [Inpainting(mask), Downsample(4, "bicubic"), Blur.gaussian(9, 1.5, boundary="circular")]


@pytest.mark.parametrize("op", _ops(), ids=lambda op: type(op).__name__)
def test_operator_physics_prox_matches_deepinv_conjugate_gradients(dinv, op):
    """Our prox with rho = 1 / gamma solves deepinv's prox_l2 problem: compare with deepinv's own CG."""
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    y = op.A(torch.rand(1, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(7)))
    ours = operator_physics(dinv, op, 0.01)
    generic = dinv.physics.LinearPhysics(A=op.A, A_adjoint=op.AT, max_iter=500, tol=1e-12)
    for gamma in (0.3, 5.0):
        theirs = generic.prox_l2(x, y, gamma)
        assert (ours.prox_l2(x, y, gamma) - theirs).abs().max() < 1e-4  # deepinv's CG stops near 1e-6
        assert (op.prox_l2(x, y, gamma) - theirs).abs().max() > 1e-3  # the other reading of gamma is wrong
    assert ours.noise_model.sigma == pytest.approx(0.01)


@pytest.mark.parametrize("op", _ops(), ids=lambda op: type(op).__name__)
def test_svd_physics_is_our_operator(dinv, op):
    physics = svd_physics(dinv, op, 0.01, (1, 3, 16, 16))  # raises unless A matches
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(8))
    y = op.A(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(9)))
    assert (physics.A(x) - op.A(x)).abs().max() < 1e-5
    assert (physics.A_adjoint(y) - op.AT(y)).abs().max() < 1e-5
    coords = physics.V_adjoint(x)
    assert (physics.V(coords) - x).abs().max() < 1e-5  # V is orthogonal


def test_svd_physics_refuses_what_it_cannot_decompose(dinv):
    with pytest.raises(PeerUnavailable):
        svd_physics(dinv, Blur.gaussian(9, 1.5, boundary="reflect"), 0.01, (1, 3, 16, 16))


@pytest.mark.parametrize("name", ["deepinv-dps", "deepinv-dps-tuned", "deepinv-diffpir", "deepinv-ddrm"])
def test_deepinv_peers_run_at_the_counted_budget(dinv, tiny, name):
    op = Downsample(2, "bicubic")
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(10))
    y = op.A(x) + 0.01 * torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(11))
    counter = CountingDenoiser(tiny)
    out = PEERS[name].run(dinv, counter, op, y, 0.01, 4, 0)
    assert out.shape == (1, 3, 16, 16) and torch.isfinite(out).all()
    assert counter.calls == 4
    assert counter.grad_calls == (4 if name.startswith("deepinv-dps") else 0)


def test_equal_quality_ratio():
    from guidedinv.bench.peers_run import equal_quality_ratio

    curve = [(1.0, 20.0), (2.0, 22.0), (4.0, 23.0)]
    assert equal_quality_ratio(21.0, 3.0, curve) == ("=", pytest.approx(2.0))  # ours needs 1.5 s
    assert equal_quality_ratio(19.0, 3.0, curve) == (">=", pytest.approx(3.0))
    assert equal_quality_ratio(24.0, 2.0, curve) == ("<", pytest.approx(0.5))


def test_run_peers_reports_what_it_could_not_run(tmp_path, monkeypatch):
    """A missing library is a line under 'Not run' with its reason, the rest of the table still comes."""
    from PIL import Image

    import guidedinv.bench.peers_run as bp

    Image.new("RGB", (24, 24), (90, 140, 200)).save(tmp_path / "flat.png")

    def missing():
        raise PeerUnavailable("deepinv does not import: ImportError: test")

    monkeypatch.setattr(bp, "load_deepinv", missing)
    result = bp.run_peers([tmp_path / "flat.png"], tasks=["inpaint-box"], peers=["deepinv-ddrm"], nfes=[2], ours_nfes=[2],
                          crop=16, model="random-tiny", loop_check=False)
    text = bp.markdown(result)
    assert "`deepinv-ddrm` on inpaint-box: deepinv does not import: ImportError: test" in text
    assert "| ours-ddnm | – | 2 | 2 |" in text and "sigma_model = 2 sigma" in text
    written = bp.write_outputs(result, tmp_path / "out")
    assert [p.name for p in written] == ["results.csv", "summary.csv", "summary.md"]


def test_each_peer_is_paired_with_a_registry_method_that_solves_its_operators():
    """A peer's "ours" is a guided method of the registry whose kinds cover the peer's operators."""
    from guidedinv.app.methods import get_method
    from guidedinv.bench.peers_run import OURS_ALWAYS

    kind_of = {Inpainting: "inpaint", Downsample: "downsample", Blur: "blur"}
    for peer in PEERS.values():
        method = get_method(peer.ours)
        assert method.uses_network, peer.name
        assert all(kind_of[op] in method.kinds for op in peer.operators), peer.name
    assert all(get_method(m).uses_network for m in OURS_ALWAYS)


def test_run_peers_runs_variants_of_ours_at_their_own_budgets(tmp_path, monkeypatch):
    """--ours and --budget: a variant of ours is its method with its settings, at the budgets named for its row."""
    from PIL import Image

    import guidedinv.bench.peers_run as bp
    from guidedinv.errors import InputError

    Image.new("RGB", (24, 24), (90, 140, 200)).save(tmp_path / "flat.png")
    monkeypatch.setattr(bp, "load_deepinv", lambda: (_ for _ in ()).throw(PeerUnavailable("not here")))
    kw = dict(tasks=["inpaint-box"], peers=["deepinv-ddrm"], nfes=[2], ours_nfes=[2], crop=16, model="random-tiny", loop_check=False)
    result = bp.run_peers([tmp_path / "flat.png"], ours=["ddnm", "ours-ddnm-eta0.85"], budgets={"ours-ddnm-eta0.85": [3]}, **kw)
    got = {(r["method"], r["nfe_budget"], r["nfe"]) for r in result.rows}
    assert got == {("ours-ddnm", 2, 2), ("ours-ddnm-eta0.85", 3, 3)}
    assert "`ours-ddnm-eta0.85`: ddnm before" in bp.markdown(result)
    with pytest.raises(InputError, match="unknown method of ours 'nope'"):
        bp.run_peers([tmp_path / "flat.png"], ours=["nope"], **kw)
    with pytest.raises(InputError, match="budgets for ours-dps: not run"):
        bp.run_peers([tmp_path / "flat.png"], ours=["ddnm"], budgets={"ours-dps": [4]}, **kw)


def test_deepinv_dps_tuned_weight_is_the_operators(monkeypatch):
    """The tuned peer hands deepinv's DPS the weight of the operator's kind; an explicit weight wins."""
    import guidedinv.bench.peers as bp

    seen = []

    class FakeDPS:
        def __init__(self, *args, weight=1.0, **kwargs):
            seen.append(weight)

        def __call__(self, y, physics, seed=0):
            return torch.zeros(1, 3, 8, 8)

    class FakeDinv:
        sampling = type("S", (), {"DPS": FakeDPS})

    monkeypatch.setattr(bp, "operator_physics", lambda *a: None)
    monkeypatch.setattr(bp, "UnitRangeDenoiser", lambda denoiser: None)
    y = torch.zeros(1, 3, 8, 8)
    for op in (Downsample(2, "bicubic"), Blur.gaussian(5, 1.0, boundary="circular"), Inpainting(torch.ones(1, 1, 8, 8))):
        PEERS["deepinv-dps-tuned"].run(FakeDinv, None, op, y, 0.01, 3, 0)
    PEERS["deepinv-dps-tuned"].run(FakeDinv, None, Downsample(2, "bicubic"), y, 0.01, 3, 0, weight=7.0)
    PEERS["deepinv-dps"].run(FakeDinv, None, Downsample(2, "bicubic"), y, 0.01, 3, 0)
    assert seen == [bp.DPS_TUNED_WEIGHTS[Downsample], bp.DPS_TUNED_WEIGHTS[Blur], bp.DPS_TUNED_WEIGHTS[Inpainting], 7.0, 1.0]
