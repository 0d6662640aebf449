"""Classical restoration baselines: the solvers. Each is a method of a recipe (``method = "wiener"``,
:mod:`guidedinv.app.methods.classical`), run through the same :func:`guidedinv.app.solve.restore`
call as the guided methods, so the command line and the benchmark
treat them alike. No network, no randomness: the same measurement always gives the same result.

Convention (restore()'s): measurement y (B, C, h, w) in [0, 1], C = 1 or 3 -> x (B, C, H, W) in
[0, 1] (clipped). Every image and channel is solved on its own in float64 numpy on the CPU.

Methods, the operator kind each solves, and their settings (``[methods.NAME]`` in a recipe or
``--set methods.NAME.KEY=...``; sigma_y is the recipe's measurement noise on [0, 1]):

``bicubic`` / ``lanczos`` (downsample): Pillow's ``Image.resize`` on 32-bit float ("F") channels,
    BICUBIC (Keys a = -0.5) or LANCZOS (a = 3), pixel centres aligned with the operator's
    ((i + 0.5) s - 0.5); no 8-bit rounding.
``wiener`` (blur): ``skimage.restoration.wiener``, i.e. conj(K) Y / (|K|^2 + balance |L|^2) with L the
    discrete Laplacian (Hunt's regularised Wiener filter). balance (default 1.0 sigma_y, at least
    1e-4) is a setting. FFT-based, so the measurement is first padded by the operator's own
    boundary rule (reflect / symmetric; circular needs none) by the kernel's size and cropped after.
``richardson_lucy`` (blur): ``skimage.restoration.richardson_lucy`` (zero-boundary convolutions) on
    the same padding (a circular blur: wrapped), the measurement clipped to >= 1e-6 (RL needs positive data); iterations (default 30).
``tv_deconv`` (blur): our own ADMM for min_x 1/2 ||k * x - y||^2 + weight TV(x) on the padded
    image with circular boundary (the x-step is one FFT division); TV is isotropic over both
    directions and all channels together (colour TV). weight (default 0.1 sigma_y, at least 1e-5),
    iterations (default 100), ADMM penalty rho = 10 weight.
``biharmonic`` (inpaint): ``skimage.restoration.inpaint_biharmonic`` of the masked pixels, the
    observed ones kept as measured.
``tv_denoise`` (identity): ``skimage.restoration.denoise_tv_chambolle``, weight (default 0.7 sigma_y),
    colour TV through ``channel_axis``.

The default constants were chosen on three 256 x 256 crops of training images (BSD200) with the
benchmark's degradations (sigma_y = 0.01, denoising 0.05; benchmarks/tune_baselines.py), never on the
validation sets: the best mean PSNR over the Gaussian and the motion blur together.
"""
from __future__ import annotations

import numpy as np

__all__ = ["upsample", "wiener", "richardson_lucy", "tv_deconvolution", "biharmonic",
           "tv_denoise"]

PAD_MODES = {"reflect": "reflect", "symmetric": "symmetric", "circular": "wrap"}


# -- the solvers, on one (H, W, C) float64 image ------------------------------------------------
def upsample(y: np.ndarray, scale: int, kind: str = "bicubic") -> np.ndarray:
    """(h, w, C) -> (h s, w s, C) with Pillow's float resampling ("bicubic" or "lanczos")."""
    from PIL import Image

    resample = {"bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}[kind]
    h, w = y.shape[:2]
    channels = [np.asarray(Image.fromarray(y[..., c].astype(np.float32), mode="F").resize((w * scale, h * scale), resample))
                for c in range(y.shape[-1])]
    return np.stack(channels, -1).astype(np.float64)


def _pad(y: np.ndarray, kernel: np.ndarray, boundary: str, periodic_solver: bool = True) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Pad (H, W, C) by the kernel's size with the blur's boundary rule; the slices crop back.
    A circular blur needs no padding for an FFT solver (``periodic_solver``), and wraps otherwise."""
    if boundary == "circular" and periodic_solver:
        return y, (slice(None), slice(None))
    ph, pw = kernel.shape
    padded = np.pad(y, ((ph, ph), (pw, pw), (0, 0)), mode=PAD_MODES[boundary])
    return padded, (slice(ph, ph + y.shape[0]), slice(pw, pw + y.shape[1]))


def wiener(y: np.ndarray, kernel: np.ndarray, balance: float, boundary: str = "reflect") -> np.ndarray:
    """Regularised Wiener deconvolution of (H, W, C) by ``kernel`` (skimage, Laplacian regulariser)."""
    from skimage.restoration import wiener as sk_wiener

    padded, crop = _pad(y, kernel, boundary)
    if kernel.shape[0] > padded.shape[0] or kernel.shape[1] > padded.shape[1]:
        kernel = _fold(kernel, padded.shape[:2])
    out = np.stack([sk_wiener(padded[..., c], kernel, balance, clip=False) for c in range(y.shape[-1])], -1)
    return out[crop]


def richardson_lucy(y: np.ndarray, kernel: np.ndarray, iterations: int, boundary: str = "reflect") -> np.ndarray:
    """Richardson-Lucy deconvolution of (H, W, C) by ``kernel`` (skimage)."""
    from skimage.restoration import richardson_lucy as sk_rl

    padded, crop = _pad(np.clip(y, 1e-6, None), kernel, boundary, periodic_solver=False)
    out = np.stack([sk_rl(padded[..., c], kernel, num_iter=int(iterations), clip=False) for c in range(y.shape[-1])], -1)
    return out[crop]


def _fold(kernel: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A kernel larger than a (periodic) image, folded onto it with its centre at (H // 2, W // 2): the
    same circular convolution with a kernel that fits."""
    kh, kw = kernel.shape
    folded = np.zeros(shape)
    rows = (np.arange(kh) - kh // 2 + shape[0] // 2) % shape[0]
    cols = (np.arange(kw) - kw // 2 + shape[1] // 2) % shape[1]
    np.add.at(folded, (rows[:, None], cols[None, :]), kernel)
    return folded


def _otf(kernel: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """rfft2 of ``kernel`` wrapped onto an (H, W) torus with its centre at pixel (0, 0) (convolution)."""
    kh, kw = kernel.shape
    wrapped = np.zeros(shape)
    rows = (np.arange(kh) - kh // 2) % shape[0]
    cols = (np.arange(kw) - kw // 2) % shape[1]
    np.add.at(wrapped, (rows[:, None], cols[None, :]), kernel)
    return np.fft.rfft2(wrapped)


def tv_deconvolution(y: np.ndarray, kernel: np.ndarray, weight: float, iterations: int = 100,
                     boundary: str = "reflect") -> np.ndarray:
    """ADMM for argmin_x 1/2 ||k * x - y||^2 + weight sum_pixels ||(Dh x, Dv x)|| (colour TV).

    Split z = D x (forward differences, circular on the padded image), scaled dual u, penalty rho:
        x <- (K^T y + rho D^T (z - u)) / (K^T K + rho D^T D)    (in Fourier)
        z <- shrink(D x + u, weight / rho)                        (per pixel, over directions and channels)
        u <- u + D x - z
    """
    padded, crop = _pad(y, kernel, boundary)
    hp, wp, _ = padded.shape
    rho = 10.0 * weight
    k_hat = _otf(kernel, (hp, wp))[..., None]
    # forward differences x[i+1] - x[i] (circular): transfer functions along each axis
    dv_hat = (np.exp(2j * np.pi * np.arange(hp) / hp) - 1)[:, None, None]
    dh_hat = (np.exp(2j * np.pi * np.fft.rfftfreq(wp)) - 1)[None, :, None]
    denom = np.abs(k_hat) ** 2 + rho * (np.abs(dv_hat) ** 2 + np.abs(dh_hat) ** 2)
    kty = np.conj(k_hat) * np.fft.rfft2(padded, axes=(0, 1))

    def grad(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.roll(x, -1, 0) - x, np.roll(x, -1, 1) - x

    def grad_t(gv: np.ndarray, gh: np.ndarray) -> np.ndarray:
        return (np.roll(gv, 1, 0) - gv) + (np.roll(gh, 1, 1) - gh)

    x = padded.copy()
    zv, zh = grad(x)
    uv, uh = np.zeros_like(zv), np.zeros_like(zh)
    for _ in range(int(iterations)):
        rhs = kty + rho * np.fft.rfft2(grad_t(zv - uv, zh - uh), axes=(0, 1))
        x = np.fft.irfft2(rhs / denom, s=(hp, wp), axes=(0, 1))
        gv, gh = grad(x)
        vv, vh = gv + uv, gh + uh
        norm = np.sqrt((vv**2 + vh**2).sum(-1, keepdims=True))
        shrink = np.maximum(1 - (weight / rho) / np.maximum(norm, 1e-12), 0)
        zv, zh = shrink * vv, shrink * vh
        uv, uh = vv - zv, vh - zh
    return x[crop]


def biharmonic(y: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """Fill the True pixels of ``fill`` (H, W) in (H, W, C) by biharmonic inpainting (skimage)."""
    from skimage.restoration import inpaint_biharmonic

    return inpaint_biharmonic(y, fill, channel_axis=-1)


def tv_denoise(y: np.ndarray, weight: float) -> np.ndarray:
    """Chambolle's TV denoising of (H, W, C) (skimage), colour TV."""
    from skimage.restoration import denoise_tv_chambolle

    return denoise_tv_chambolle(y, weight=weight, channel_axis=-1)
