"""Measurement operators, tested by identities and against independent references.

Identities, float64, relative to the size of the quantities compared: adjointness
<A x, y> = <x, AT y> to 1e-12; A A^+ A x = A x to 1e-9 (closed forms) or 1e-7 (conjugate gradients);
P = A^+ A idempotent and symmetric to the same; A^+ equal to the dense pseudo-inverse of the
operator's matrix. References: scipy.ndimage.convolve for blur (same boundary: wrap / mirror /
reflect), a loop-by-loop numpy transcription of MATLAB imresize's antialiased cubic for bicubic
downsampling (whole image, 1e-12) and PIL's BICUBIC reduce, which uses the same kernel and
centres but clips its support at the border instead of mirroring, on the interior (2 output
pixels from each edge) to float32 precision (1e-5).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from guidedinv.errors import InputError
from guidedinv.guidance import operator_matrix
from guidedinv.noise import NoiseSource
from guidedinv.operators import (
    Blur,
    ColourToGrey,
    Compose,
    Downsample,
    GaussianNoise,
    Identity,
    Inpainting,
    LinearOperator,
    crop_to_multiple,
    gaussian_kernel,
    load_kernel,
    motion_kernel,
)

KERNELS = "/work/shared/data/kernels"




def rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def mask_for(shape, per="pixel", seed=1):
    b, c, h, w = shape
    lead = {"pixel": (h, w), "channel": (c, h, w), "item": (b, 1, h, w)}[per]
    return torch.rand(*lead, generator=torch.Generator().manual_seed(seed)) > 0.4


WELL_CONDITIONED = torch.tensor([[0.0, 1.0, 0.0], [1.0, 6.0, 2.0], [0.0, 1.0, 0.5]])

# (id, factory(shape) -> operator, shapes (B, C, H, W): odd, non-square, batch > 1, 1 and 3 channels)
OPERATORS = [
    ("inpaint-pixel", lambda s: Inpainting(mask_for(s, "pixel")), [(2, 1, 7, 10), (3, 3, 9, 5)]),
    ("inpaint-channel", lambda s: Inpainting(mask_for(s, "channel")), [(2, 3, 7, 10)]),
    ("inpaint-item", lambda s: Inpainting(mask_for(s, "item")), [(3, 3, 9, 5)]),
    ("bicubic-x3", lambda s: Downsample(3), [(2, 1, 9, 6), (3, 3, 15, 9)]),
    ("bicubic-x4", lambda s: Downsample(4), [(2, 1, 8, 8), (2, 3, 12, 20)]),
    ("average-x3", lambda s: Downsample(3, "average"), [(2, 1, 9, 6), (3, 3, 15, 9)]),
    ("blur-circular", lambda s: Blur(WELL_CONDITIONED, "circular"), [(2, 1, 7, 10), (3, 3, 9, 5)]),
    ("blur-circular-even", lambda s: Blur(rand(4, 6, seed=3).abs(), "circular"), [(2, 3, 7, 10)]),
    ("blur-reflect", lambda s: Blur(WELL_CONDITIONED, "reflect"), [(2, 1, 7, 10), (3, 3, 9, 5)]),
    ("blur-symmetric", lambda s: Blur(WELL_CONDITIONED.T, "symmetric"), [(2, 3, 7, 10)]),
    ("identity", lambda s: Identity(), [(2, 3, 7, 10)]),
    ("compose", lambda s: Downsample(3) @ Blur(WELL_CONDITIONED, "reflect"), [(2, 3, 9, 6)]),
    ("compose-fourier", lambda s: Downsample(3, "average") @ Blur(WELL_CONDITIONED, "circular"), [(2, 1, 9, 6), (3, 3, 15, 9)]),
    ("compose-fourier-x4", lambda s: Downsample(4, "average") @ Blur(rand(5, 4, seed=4).abs(), "circular"), [(2, 3, 8, 12)]),
    # a grey measurement of a colour image: the task's operator on the mean of the channels
    ("grey-inpaint", lambda s: ColourToGrey(Inpainting(mask_for(s, "pixel"))), [(2, 3, 7, 10)]),
    ("grey-bicubic-x3", lambda s: ColourToGrey(Downsample(3)), [(2, 3, 9, 6)]),
    ("grey-blur-circular", lambda s: ColourToGrey(Blur(WELL_CONDITIONED, "circular")), [(3, 3, 9, 5)]),
    ("grey-identity", lambda s: ColourToGrey(Identity()), [(2, 3, 7, 10)]),
]
CASES = [(name, make, shape) for name, make, shapes in OPERATORS for shape in shapes]
IDS = [f"{name}-{'x'.join(map(str, shape))}" for name, _, shape in CASES]
ITERATIVE = {"blur-reflect", "blur-symmetric", "compose"}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))


@pytest.mark.parametrize("name, make, shape", CASES, ids=IDS)
def test_adjoint_pinv_and_projection_identities(name, make, shape):
    op = make(shape)
    x = rand(*shape, seed=10)
    ax = op.A(x)
    assert tuple(ax.shape) == op.out_shape(shape) and op.in_shape(ax.shape) == tuple(shape)
    y = rand(*ax.shape, seed=11)
    lhs, rhs = float((ax * y).sum()), float((x * op.AT(y)).sum())
    assert abs(lhs - rhs) <= 1e-12 * (ax.norm() * y.norm()).item(), f"{name}: <Ax,y>={lhs!r} <x,ATy>={rhs!r}"

    tol = 1e-7 if name in ITERATIVE else 1e-9
    p = op.pinv(ax)
    assert rel(op.A(p), ax) < tol, f"{name}: A A+ A x != A x ({rel(op.A(p), ax):.2e})"
    px = op.project(x)
    assert rel(op.project(px), px) < tol, f"{name}: P not idempotent ({rel(op.project(px), px):.2e})"
    z = rand(*shape, seed=12)
    sym = abs(float((px * z).sum()) - float((x * op.project(z)).sum())) / float(x.norm() * z.norm())
    assert sym < tol, f"{name}: P not symmetric ({sym:.2e})"


# per-item masks have no single matrix: they are left out here
DENSE = [(case, i) for case, i in zip(CASES, IDS) if case[0] != "inpaint-item"]


@pytest.mark.parametrize("name, make, shape", [c for c, _ in DENSE], ids=[i for _, i in DENSE])
def test_pinv_is_the_dense_pseudo_inverse(name, make, shape):
    op = make(shape)
    amat = operator_matrix(op, shape[1:])
    y = op.A(rand(*shape, seed=20)) + 0.1 * rand(*op.out_shape(shape), seed=21)  # not in the range of A
    dense = (y.reshape(shape[0], -1) @ torch.linalg.pinv(amat).T).reshape(shape)
    tol = 1e-7 if name in ITERATIVE else 1e-9
    assert rel(op.pinv(y), dense) < tol, f"{name}: pinv off the dense pseudo-inverse by {rel(op.pinv(y), dense):.2e}"


@pytest.mark.parametrize("name, make, shape", CASES, ids=IDS)
@pytest.mark.parametrize("rho", [0.0, 0.3])
def test_prox_l2_solves_the_normal_equations(name, make, shape, rho):
    op = make(shape)
    z, y = rand(*shape, seed=30), op.A(rand(*shape, seed=31)) + 0.1 * rand(*op.out_shape(shape), seed=32)
    x = op.prox_l2(z, y, rho)
    tol = 1e-7 if name in ITERATIVE else 1e-9
    if rho > 0:  # (AT A + rho I) x = AT y + rho z
        lhs, rhs = op.AT(op.A(x)) + rho * x, op.AT(y) + rho * z
    else:  # the limit: the projection of z onto {A x = A A^+ y}
        lhs, rhs = x, z + op.pinv(y - op.A(z))
        assert rel(op.A(x), op.A(op.pinv(y))) < tol
    assert rel(lhs, rhs) < tol, f"{name}: prox residual {rel(lhs, rhs):.2e}"


def test_solvers_do_not_depend_on_the_batch():
    op = Downsample(3) @ Blur(WELL_CONDITIONED, "reflect")  # conjugate gradients
    y3 = op.A(rand(3, 1, 9, 6, seed=40))
    y3[1:] *= 50  # other items need more iterations
    one = op.pinv(y3[:1])
    three = op.pinv(y3)
    torch.testing.assert_close(three[:1], one, rtol=0, atol=1e-13)
    z3 = rand(3, 1, 9, 6, seed=41)
    torch.testing.assert_close(op.prox_l2(z3, y3, 0.2)[:1], op.prox_l2(z3[:1], y3[:1], 0.2), rtol=0, atol=1e-13)


# -- references ---------------------------------------------------------------------------------
def matlab_imresize_down(img: np.ndarray, factor: int) -> np.ndarray:
    """MATLAB imresize(img, 1/factor, 'bicubic') with antialiasing, transcribed loop by loop from its
    documented algorithm (1-based coordinates, symmetric padding), independent of the package."""

    def keys(t):
        t = abs(t)
        if t <= 1:
            return 1.5 * t**3 - 2.5 * t**2 + 1
        if t <= 2:
            return -0.5 * t**3 + 2.5 * t**2 - 4 * t + 2
        return 0.0

    def one_axis(v: np.ndarray) -> np.ndarray:
        scale, margin = 1.0 / factor, 8 * factor
        padded = np.pad(v, margin, mode="symmetric")
        out = []
        for x in range(1, len(v) // factor + 1):
            u = x / scale + 0.5 * (1 - 1 / scale)
            js = range(math.floor(u - 2 * factor) - 1, math.ceil(u + 2 * factor) + 2)
            w = np.array([scale * keys(scale * (u - j)) for j in js])
            vals = np.array([padded[j - 1 + margin] for j in js])
            out.append((w * vals).sum() / w.sum())
        return np.array(out)

    rows = np.stack([one_axis(col) for col in img.T], 1)
    return np.stack([one_axis(row) for row in rows])


@pytest.mark.parametrize("factor, size", [(2, (10, 14)), (3, (9, 15)), (4, (16, 8))])
def test_bicubic_matches_matlab_imresize_transcription(factor, size):
    img = rand(*size, seed=50).numpy()
    ours = Downsample(factor).A(torch.from_numpy(img)[None, None])[0, 0].numpy()
    ref = matlab_imresize_down(img, factor)
    assert np.abs(ours - ref).max() < 1e-12


@pytest.mark.parametrize("factor, size", [(2, (14, 10)), (3, (27, 33)), (4, (32, 24))])
def test_bicubic_matches_pil_in_the_interior(factor, size):
    from PIL import Image

    img = np.random.default_rng(factor).random(size).astype(np.float32)
    h, w = size
    pil = np.asarray(Image.fromarray(img, mode="F").resize((w // factor, h // factor), Image.BICUBIC, reducing_gap=None))
    ours = Downsample(factor).A(torch.from_numpy(img.astype(np.float64))[None, None])[0, 0].numpy()
    assert np.abs(ours - pil)[2:-2, 2:-2].max() < 1e-5
    assert np.abs(ours - pil).max() > 1e-3  # the border differs: PIL clips, MATLAB mirrors


def test_downsampling_basic_facts():
    x = rand(2, 3, 12, 8, seed=60)
    avg = Downsample(4, "average").A(x)
    torch.testing.assert_close(avg, x.reshape(2, 3, 3, 4, 2, 4).mean((3, 5)), rtol=0, atol=1e-14)
    torch.testing.assert_close(Downsample(4, "average").pinv(avg), avg.repeat_interleave(4, -2).repeat_interleave(4, -1))
    const = torch.full((1, 1, 12, 8), 0.7, dtype=torch.float64)
    torch.testing.assert_close(Downsample(4).A(const), torch.full((1, 1, 3, 2), 0.7, dtype=torch.float64))
    torch.testing.assert_close(Downsample(1).A(x), x, rtol=0, atol=1e-15)
    ramp = torch.arange(24, dtype=torch.float64).expand(1, 1, 24, 24)  # cubic kernels reproduce lines
    centres = (torch.arange(6, dtype=torch.float64) + 0.5) * 4 - 0.5
    torch.testing.assert_close(Downsample(4).A(ramp)[0, 0, 0, 2:4], centres[2:4], rtol=0, atol=1e-12)


BOUNDARY_TO_SCIPY = {"circular": "wrap", "reflect": "mirror", "symmetric": "reflect"}


@pytest.mark.parametrize("boundary", list(BOUNDARY_TO_SCIPY))
@pytest.mark.parametrize("kshape", [(3, 3), (4, 5), (5, 2), (15, 21)], ids=lambda k: f"k{k[0]}x{k[1]}")
def test_blur_matches_scipy_convolve(boundary, kshape):
    kernel = rand(*kshape, seed=70).abs()
    x = rand(2, 3, 7, 10, seed=71)
    ours = Blur(kernel, boundary).A(x).numpy()
    k = (kernel / kernel.sum()).numpy()
    ref = np.stack([[ndi.convolve(x[b, c].numpy(), k, mode=BOUNDARY_TO_SCIPY[boundary]) for c in range(3)] for b in range(2)])
    assert np.abs(ours - ref).max() < 1e-12


def test_dps_gaussian_kernel_and_big_kernel_on_a_small_image():
    delta = np.zeros((61, 61))
    delta[30, 30] = 1
    dps = ndi.gaussian_filter(delta, 3.0)  # how DPS builds its 61x61, sigma 3 kernel
    ours = gaussian_kernel(61, 3.0, truncate=4.0).numpy()
    assert np.abs(ours - dps).max() < 1e-12
    plain = gaussian_kernel((5, 7), (1.0, 2.0)).numpy()
    d = np.arange(-2, 3)[:, None] ** 2 / 2.0 + np.arange(-3, 4)[None, :] ** 2 / 8.0
    assert np.abs(plain - np.exp(-d) / np.exp(-d).sum()).max() < 1e-15
    x = rand(1, 1, 7, 10, seed=72)  # a 61 x 61 kernel on a 7 x 10 image: the extension repeats
    for boundary, mode in BOUNDARY_TO_SCIPY.items():
        ref = ndi.convolve(x[0, 0].numpy(), ours, mode=mode)
        assert np.abs(Blur(ours, boundary).A(x)[0, 0].numpy() - ref).max() < 1e-12, boundary


def test_motion_kernel():
    k = motion_kernel(61, 0.5, seed=3)
    assert k.shape == (61, 61) and float(k.min()) >= 0 and abs(float(k.sum()) - 1) < 1e-12
    grid = torch.arange(61, dtype=torch.float64)
    centre = (float((k.sum(1) * grid).sum()), float((k.sum(0) * grid).sum()))
    assert max(abs(c - 30) for c in centre) < 1e-9  # centre of mass on the middle pixel
    torch.testing.assert_close(motion_kernel(61, 0.5, seed=3), k, rtol=0, atol=0)
    assert float((motion_kernel(61, 0.5, seed=4) - k).abs().max()) > 1e-3

    def spread(kern):  # eigenvalues of the second-moment matrix
        yy, xx = torch.meshgrid(grid, grid, indexing="ij")
        pts = torch.stack([yy.flatten() - 30, xx.flatten() - 30], 1)
        return torch.linalg.eigvalsh((pts * kern.flatten()[:, None]).T @ pts)

    line = spread(motion_kernel(61, 0.0, seed=5))
    assert float(line[0] / line[1]) < 0.01, "intensity 0 must be a straight line"
    shakes = [spread(motion_kernel(61, 1.0, seed=s)) for s in range(6)]
    assert np.median([float(e[0] / e[1]) for e in shakes]) > 0.05, "intensity 1 must leave the line"


def test_kernel_files(tmp_path):
    levin = load_kernel(f"{KERNELS}/levin09.npz", "k3")
    assert levin.shape == (15, 15) and abs(float(levin.sum()) - 1) < 1e-12
    raw = np.load(f"{KERNELS}/usrnet12.npz")["k08"].astype(np.float64)
    np.save(tmp_path / "k.npy", raw)
    assert np.abs(load_kernel(tmp_path / "k.npy").numpy() - raw / raw.sum()).max() < 1e-12
    from PIL import Image

    img = (np.arange(12).reshape(3, 4) * 20).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "k.png")
    assert np.abs(load_kernel(tmp_path / "k.png").numpy() - img / img.sum()).max() < 1e-12
    with pytest.raises(InputError, match="name one with key"):
        load_kernel(f"{KERNELS}/levin09.npz")
    with pytest.raises(InputError, match="no kernel 'k9'"):
        load_kernel(f"{KERNELS}/levin09.npz", "k9")
    (tmp_path / "k.txt").write_text("not a kernel")
    with pytest.raises(InputError, match="not a kernel file"):
        load_kernel(tmp_path / "k.txt")


def test_measurement_range_conversion_and_noise():
    x01 = torch.rand(2, 3, 12, 9, generator=torch.Generator().manual_seed(80), dtype=torch.float64)
    for op in (Inpainting(mask_for((2, 3, 12, 9))), Downsample(3), Blur(WELL_CONDITIONED),
               Compose(Blur(WELL_CONDITIONED), Downsample(3, "average"))):
        y01 = op.A(x01)
        torch.testing.assert_close(op.to_model_range(y01), op.A(2 * x01 - 1), rtol=0, atol=1e-12)
        torch.testing.assert_close(op.to_unit_range(op.A(2 * x01 - 1)), y01, rtol=0, atol=1e-12)
    noise = GaussianNoise(0.05)
    assert noise.sigma_model == 0.1 and GaussianNoise.from_model_range(0.05).sigma_y == 0.025
    y = torch.zeros(4, 3, 64, 64, dtype=torch.float64)
    std = float(noise(y, NoiseSource.from_seeds(range(4))).std())
    assert abs(std - 0.1) < 0.003, std


def test_float32_and_devices():
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    x64 = rand(2, 3, 9, 6, seed=90)
    for dev in devices:
        for op in (Inpainting(mask_for((2, 3, 9, 6))), Downsample(3), Downsample(3, "average"), Blur(WELL_CONDITIONED, "circular"),
                   Blur(WELL_CONDITIONED, "reflect")):
            x = x64.to(dev, torch.float32)
            ax = op.A(x)
            assert ax.dtype == torch.float32 and ax.device.type == dev
            assert rel(ax.double().cpu(), op.A(x64)) < 1e-5
            assert rel(op.AT(ax).double().cpu(), op.AT(op.A(x64))) < 1e-5
            assert rel(op.A(op.pinv(ax)).double().cpu(), op.A(x64)) < 1e-3


# -- bad input ----------------------------------------------------------------------------------
def test_bad_inputs_are_input_errors():
    x = rand(1, 3, 8, 8)
    with pytest.raises(InputError, match=r"mask is 6x7 .* image is 8x8"):
        Inpainting(torch.ones(7, 6)).A(x)
    with pytest.raises(InputError, match="channels"):
        Inpainting(torch.ones(2, 8, 8)).A(x)
    with pytest.raises(InputError, match="only 0"):
        Inpainting(torch.full((8, 8), 0.5))
    for bad in (torch.zeros(3, 3), -torch.ones(3, 3), torch.tensor([[1.0, -1.0]])):
        with pytest.raises(InputError, match="must sum to a positive number"):
            Blur(bad)
    with pytest.raises(InputError, match="NaN"):
        Blur(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(InputError, match="2-D"):
        Blur(torch.ones(2, 3, 3))
    with pytest.raises(InputError, match="boundary"):
        Blur(torch.ones(3, 3), "wrap")
    with pytest.raises(InputError, match="factor 16 is larger than the image 8x8"):
        Downsample(16).A(x)
    with pytest.raises(InputError, match="not a multiple of the downsampling factor 3"):
        Downsample(3).A(x)
    with pytest.raises(InputError, match="larger than the image"):
        crop_to_multiple(x, 9)
    assert crop_to_multiple(x, 3).shape == (1, 3, 6, 6)
    with pytest.raises(InputError, match="integer"):
        Downsample(2.5)
    with pytest.raises(InputError, match=r"\(B, C, H, W\)"):
        Downsample(2).A(torch.ones(8, 8))
    with pytest.raises(InputError, match="sigma_y"):
        GaussianNoise(-0.1)
    with pytest.raises(InputError, match="odd"):
        gaussian_kernel(4, 1.0)
    with pytest.raises(InputError, match="rho"):
        Identity().prox_l2(x, x, -1.0)
    assert isinstance(Downsample(2) @ Identity(), LinearOperator)


def test_compose_takes_the_fourier_closed_form_only_where_it_holds():
    """The last factor offers the product's solvers (LinearOperator.solver_after): a circular blur then
    block averaging gets the FFT ones, which agree with conjugate gradients; anything else gets none."""
    from guidedinv.operators.fourier import BlurAverageSolver

    kernel = gaussian_kernel(5, 1.0).double()
    fast = Downsample(2, "average") @ Blur(kernel, "circular")
    assert isinstance(fast._closed_form, BlurAverageSolver)
    for other in (Downsample(2, "bicubic") @ Blur(kernel, "circular"), Downsample(2, "average") @ Blur(kernel, "reflect"),
                  Blur(kernel, "circular") @ Downsample(2, "average"), Compose(Blur(kernel, "circular"))):
        assert other._closed_form is None
    y = torch.rand(2, 1, 6, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    slow = LinearOperator.pinv(fast, y)  # the base class's conjugate gradients
    assert torch.allclose(fast.pinv(y), slow, atol=1e-7 * float(slow.abs().max()))
