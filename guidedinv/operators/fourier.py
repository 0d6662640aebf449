"""Closed forms for circular blur followed by block averaging, A = S_s K (the FFT-friendly SR model).

Block averaging is decimation D (keep pixel (s i, s j)) after a circular box filter B whose output
at (s i, s j) is the mean of the s x s block there, so A = D G with G = B K diagonal in Fourier.
Decimating aliases the s^2 spectral copies onto the low-resolution grid (M x L):
    F_LR(D x)[u] = (1/s^2) sum_j X[u + j (M, L)],    F_HR(D^T v)[w] = V[w mod (M, L)],
hence A A^T is diagonal on the low-resolution grid with d[u] = (1/s^2) sum_j |G[u + j (M, L)]|^2, and
    A^+ y = A^T (A A^T)^+ y,     (A^T A + rho I)^-1 b = (b - A^T (rho I + A A^T)^-1 A b) / rho
(Woodbury). This is the USRNet / DiffPIR data step (Zhang et al. 2020, eq. 7) written for block
averaging instead of decimation. ``Compose(Blur(k, "circular"), Downsample(s, "average"))``, i.e.
``Downsample(s, "average") @ Blur(k, "circular")``, uses it for pinv and prox_l2
(:meth:`Downsample.solver_after <guidedinv.operators.downsample.Downsample.solver_after>` picks it).
"""
from __future__ import annotations

import torch

__all__ = ["BlurAverageSolver"]


class BlurAverageSolver:
    """pinv and the proximal step of block-average(s) after a circular blur (kernel (kh, kw))."""

    def __init__(self, kernel: torch.Tensor, factor: int, rcond: float | None) -> None:
        self.kernel, self.factor, self.rcond = kernel, factor, rcond
        self._cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _spectra(self, h: int, w: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """G on the high-resolution grid and d = eig(A A^T) on the low-resolution grid."""
        key = (h, w, like.dtype, like.device)
        if key not in self._cache:
            s, (kh, kw) = self.factor, self.kernel.shape
            blur = torch.zeros(h, w, dtype=torch.float64)
            rows = ((torch.arange(kh) - kh // 2) % h)[:, None].expand(kh, kw)
            cols = ((torch.arange(kw) - kw // 2) % w)[None, :].expand(kh, kw)
            blur.index_put_((rows, cols), self.kernel, accumulate=True)
            box = torch.zeros(h, w, dtype=torch.float64)
            box[((-torch.arange(s)) % h)[:, None], ((-torch.arange(s)) % w)[None, :]] = 1.0 / s**2
            g = torch.fft.fft2(blur) * torch.fft.fft2(box)
            d = (g.abs() ** 2).reshape(s, h // s, s, w // s).sum((0, 2)) / s**2
            cdtype = torch.complex128 if like.dtype == torch.float64 else torch.complex64
            self._cache[key] = (g.to(like.device, cdtype), d.to(like.device, like.dtype))
        return self._cache[key]

    def _a(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        s = self.factor
        return torch.fft.ifft2(torch.fft.fft2(x) * g).real[..., ::s, ::s]

    def _at(self, y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        s = self.factor
        up = y.new_zeros(*y.shape[:-2], y.shape[-2] * s, y.shape[-1] * s)
        up[..., ::s, ::s] = y
        return torch.fft.ifft2(torch.fft.fft2(up) * g.conj()).real

    @staticmethod
    def _lowres(v: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        return torch.fft.ifft2(torch.fft.fft2(v) * gain).real

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        s = self.factor
        g, d = self._spectra(y.shape[-2] * s, y.shape[-1] * s, y)
        rcond = 1000 * torch.finfo(y.dtype).eps if self.rcond is None else self.rcond
        keep = d > rcond**2 * d.max()
        return self._at(self._lowres(y, torch.where(keep, 1 / torch.where(keep, d, 1), 0)), g)

    def prox_l2(self, z: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor:
        g, d = self._spectra(z.shape[-2], z.shape[-1], z)
        b = self._at(y, g) + rho * z
        return (b - self._at(self._lowres(self._a(b, g), 1 / (rho + d)), g)) / rho

