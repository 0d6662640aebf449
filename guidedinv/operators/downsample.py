"""Downsampling by an integer factor s: (B, C, H, W) -> (B, C, H/s, W/s).

Two kernels, both separable, so A x = W_h x W_w^T with two small dense matrices (built once per
size in float64): the adjoint is exact by construction and the pseudo-inverse and the proximal
step have closed forms through the factors (A^+ = W_h^+ (.) W_w^+T; AT A + rho I diagonalises in
the tensor product of the eigenbases of W_h^T W_h and W_w^T W_w).

``"bicubic"``: MATLAB imresize(x, 1/s, 'bicubic') with its default antialiasing, which is also
    DPS's ``Resizer`` (util/resizer.py) and DDRM's/DDNM's "sr_bicubic" family. Keys' cubic with
    a = -0.5, stretched by s (support 4 s input pixels); output pixel i (0-based) is centred at
    input coordinate (i + 0.5) s - 0.5; each row of weights is normalised to sum to 1; taps outside
    the image are mirrored with the edge pixel repeated (d c b a | a b c d, MATLAB's 'symmetric',
    scipy's 'reflect'). DPS pairs its Resizer with a nearest-neighbour "transpose"; here AT is
    the true adjoint.
``"average"``: the mean of each s x s block (DDRM "sr2/4/8", DDNM "sr_averagepooling"); A A^T = I/s^2,
    so A^+ y repeats each value over its block.

Sizes that s does not divide are refused (InputError) rather than cropped or padded in secret:
crop with :func:`crop_to_multiple` first, and keep the crop to put the result back.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from ..errors import InputError
from .base import LinearOperator, check_image
from .blur import Blur
from .fourier import BlurAverageSolver
from .spectral import Kronecker

__all__ = ["Downsample", "cubic", "resize_matrix", "crop_to_multiple"]

Mode = Literal["bicubic", "average"]


def cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys (1981) cubic convolution kernel; a = -0.5 is MATLAB's and PIL's bicubic."""
    ax = np.abs(x)
    near = (a + 2) * ax**3 - (a + 3) * ax**2 + 1
    far = a * ax**3 - 5 * a * ax**2 + 8 * a * ax - 4 * a
    return np.where(ax <= 1, near, np.where(ax < 2, far, 0.0))


def resize_matrix(n_in: int, factor: int, mode: Mode = "bicubic") -> np.ndarray:
    """The (n_in / factor, n_in) float64 matrix that downsamples one axis."""
    n_out = n_in // factor
    mat = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    if mode == "average":
        for k in range(factor):
            mat[rows, rows * factor + k] = 1.0 / factor
        return mat
    width = 4.0 * factor  # the cubic's support, stretched by the factor (antialiasing)
    taps = math.ceil(width) + 2
    centre = (rows + 0.5) * factor - 0.5
    idx = np.floor(centre - width / 2)[:, None].astype(np.int64) + np.arange(taps)[None, :]
    weights = cubic((centre[:, None] - idx) / factor) / factor
    weights /= weights.sum(1, keepdims=True)
    period = np.concatenate([np.arange(n_in), np.arange(n_in - 1, -1, -1)])  # symmetric extension
    np.add.at(mat, (np.repeat(rows, taps), period[np.mod(idx, 2 * n_in)].ravel()), weights.ravel())
    return mat


def crop_to_multiple(x: torch.Tensor, factor: int) -> torch.Tensor:
    """The top-left part of x whose height and width are multiples of ``factor``."""
    h, w = x.shape[-2] // factor * factor, x.shape[-1] // factor * factor
    if h == 0 or w == 0:
        raise InputError(f"factor {factor} is larger than the image {x.shape[-1]}x{x.shape[-2]} (width x height)")
    return x[..., :h, :w]


class _Factors:
    """The two axis matrices of one image size, with the pieces the solvers need (float64)."""

    def __init__(self, wh: np.ndarray, ww: np.ndarray) -> None:
        self.wh, self.ww = torch.from_numpy(wh), torch.from_numpy(ww)
        self.wh_pinv, self.ww_pinv = torch.linalg.pinv(self.wh), torch.linalg.pinv(self.ww)
        self.eh, self.vh = torch.linalg.eigh(self.wh.T @ self.wh)
        self.ew, self.vw = torch.linalg.eigh(self.ww.T @ self.ww)
        self._cast: dict[tuple, tuple[torch.Tensor, ...]] = {}
        self._spectral: dict[tuple, Kronecker] = {}

    def get(self, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        key = (like.dtype, like.device)
        if key not in self._cast:
            parts = (self.wh, self.ww, self.wh_pinv, self.ww_pinv, self.eh, self.vh, self.ew, self.vw)
            self._cast[key] = tuple(p.to(dtype=like.dtype, device=like.device) for p in parts)
        return self._cast[key]

    def spectral(self, like: torch.Tensor) -> Kronecker:
        key = (like.dtype, like.device)
        if key not in self._spectral:
            self._spectral[key] = Kronecker(self.wh, self.ww, like)
        return self._spectral[key]


class Downsample(LinearOperator):
    """factor: integer s >= 1; mode: "bicubic" (MATLAB/DPS antialiased) or "average" (block mean)."""

    def __init__(self, factor: int, mode: Mode = "bicubic") -> None:
        if isinstance(factor, bool) or not float(factor).is_integer() or int(factor) < 1:
            raise InputError(f"downsampling factor must be an integer >= 1, got {factor!r}")
        if mode not in ("bicubic", "average"):
            raise InputError(f"downsampling mode must be 'bicubic' or 'average', got {mode!r}")
        self.factor, self.mode = int(factor), mode
        self._factors: dict[tuple[int, int], _Factors] = {}

    def _check_hw(self, h: int, w: int) -> None:
        s = self.factor
        if s > h or s > w:
            raise InputError(f"downsampling factor {s} is larger than the image {w}x{h} (width x height)")
        if h % s or w % s:
            raise InputError(
                f"image {w}x{h} (width x height) is not a multiple of the downsampling factor {s}; "
                f"crop it first (guidedinv.operators.crop_to_multiple gives {w // s * s}x{h // s * s})"
            )

    def _axis_factors(self, x: torch.Tensor, high_res: bool = True) -> _Factors:
        check_image(x)
        h, w = x.shape[-2:]
        if high_res:
            self._check_hw(h, w)
        else:
            h, w = h * self.factor, w * self.factor
        if (h, w) not in self._factors:
            self._factors[(h, w)] = _Factors(
                resize_matrix(h, self.factor, self.mode), resize_matrix(w, self.factor, self.mode)
            )
        return self._factors[(h, w)]

    def _get(self, x: torch.Tensor, high_res: bool = True) -> tuple[torch.Tensor, ...]:
        return self._axis_factors(x, high_res).get(x)

    def spectral(self, x: torch.Tensor) -> Kronecker:
        """Both modes: the Kronecker product of the two axis matrices' SVDs (x: a high-resolution image)."""
        return self._axis_factors(x).spectral(x)

    def out_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        *lead, h, w = (int(s) for s in shape)
        self._check_hw(h, w)
        return (*lead, h // self.factor, w // self.factor)

    def in_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        *lead, h, w = (int(s) for s in shape)
        return (*lead, h * self.factor, w * self.factor)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        wh, ww = self._get(x)[:2]
        return wh @ x @ ww.T

    def AT(self, y: torch.Tensor) -> torch.Tensor:
        wh, ww = self._get(y, high_res=False)[:2]
        return wh.T @ y @ ww

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """Closed form: A^+ = W_h^+ (.) W_w^+T (the pseudo-inverse of a Kronecker product)."""
        wh_pinv, ww_pinv = self._get(y, high_res=False)[2:4]
        return wh_pinv @ y @ ww_pinv.T

    def _prox_l2(self, z: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor:
        """Closed form: (AT A + rho I)^-1 (AT y + rho z) in the eigenbasis V_h (x) V_w of AT A."""
        eh, vh, ew, vw = self._get(z)[4:]
        b = vh.T @ (self.AT(y) + rho * z) @ vw
        return vh @ (b / (eh[:, None] * ew[None, :] + rho)) @ vw.T

    def solver_after(self, first: LinearOperator) -> BlurAverageSolver | None:
        """Block averaging after a circular blur (the FFT-friendly SR model): the closed forms of
        :mod:`guidedinv.operators.fourier`; any other product is solved by conjugate gradients."""
        if self.mode == "average" and isinstance(first, Blur) and first.boundary == "circular":
            return BlurAverageSolver(first.kernel, self.factor, first.rcond)
        return None

    def __repr__(self) -> str:
        return f"Downsample({self.factor}, {self.mode!r})"
