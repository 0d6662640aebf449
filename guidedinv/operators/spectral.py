"""Exact singular value decompositions A = U diag(s) V^T, for the operators that have a cheap one.

``operator.spectral(x)`` returns a :class:`Spectral` for images shaped like x (its size, dtype and
device), or None when the operator has no exact decomposition here (padded-boundary blur,
compositions). Symbols:

    to_spectral(x) = V^T x        an image's spectral coordinates
    from_spectral(c) = V c        back to the image (from_spectral(to_spectral(x)) = x)
    s                             the singular values, real, >= 0, broadcastable against
                                  to_spectral(x); s = 0 on the null space of A
    ut(y) = U^T y                 a measurement's coordinates, placed beside the matching s
    u(c) = U c                    the measurement whose coordinates are c (entries where s = 0 drop out)
    y_spec(y) = U^T y / s         the measurement in the image's spectral coordinates (0 where s = 0)

so A x = u(s to_spectral(x)), A^T y = from_spectral(s ut(y)) and A^+ y = from_spectral(y_spec(y)).
Diagonal gains g (functions of s) act on images as V diag(g) V^T x = ``filter(x, g)``.

Which operators have one:
    Identity      U = V = I, s = 1.
    Inpainting    U = V = I, s = the 0/1 mask.
    Blur          circular only: V^T = U^T = the orthonormal real FFT (rfft2, norm "ortho") up to
                  the phase of the transfer function K: s = |K(f)|, U^T y = rfft2(y) conj(K)/|K|.
                  The half spectrum is not an orthonormal real basis on its own (each f with
                  0 < f_w < W/2 stands for the pair +-f, a cosine and a sine of the same singular
                  value), so coordinates are never scaled one by one except by gains that are even
                  in f, which every function of |K| is: V g V^T is then the real filter
                  irfft2(g rfft2(x)), exactly. Frequencies with |K| <= rcond max|K| count as
                  zero, as in the operator's pseudo-inverse.
    Downsample    both modes: A x = W_h x W_w^T with small dense axis matrices, whose SVDs
                  W = U_a diag(s_a) V_a^T give A = (U_h (x) U_w) diag(s_h (x) s_w) (V_h (x) V_w)^T. The
                  spectral coordinates V_h^T x V_w have the image's size; the measured ones are its
                  top-left (H/f, W/f) block. Axis singular values below torch.linalg.pinv's cut-off
                  count as zero, as in the operator's pseudo-inverse.
"""
from __future__ import annotations

import torch

__all__ = ["Spectral", "Elementwise", "Fourier", "Kronecker"]


class Spectral:
    """A = U diag(s) V^T for images of one size, dtype and device; subclasses give V, U and s."""

    s: torch.Tensor

    def to_spectral(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def from_spectral(self, c: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def ut(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def u(self, c: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def measured(self) -> torch.Tensor:
        """Where s > 0 (bool, broadcastable like s)."""
        return self.s > 0

    def y_spec(self, y: torch.Tensor) -> torch.Tensor:
        """U^T y / s where s > 0, 0 on the null space: the coordinates of A^+ y."""
        measured = self.measured
        return torch.where(measured, self.ut(y) / torch.where(measured, self.s, 1), 0)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return self.u(self.s * self.to_spectral(x))

    def AT(self, y: torch.Tensor) -> torch.Tensor:
        return self.from_spectral(self.s * self.ut(y))

    def filter(self, x: torch.Tensor, gain: torch.Tensor | float) -> torch.Tensor:
        """V diag(gain) V^T x for a real gain broadcastable like s."""
        return self.from_spectral(gain * self.to_spectral(x))


class Elementwise(Spectral):
    """U = V = I: A x = s x with s a 0/1 mask or 1 (inpainting, identity)."""

    def __init__(self, s: torch.Tensor) -> None:
        self.s = s

    def to_spectral(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def from_spectral(self, c: torch.Tensor) -> torch.Tensor:
        return c

    def ut(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def u(self, c: torch.Tensor) -> torch.Tensor:
        return c


class Fourier(Spectral):
    """Circular convolution with transfer function ``otf`` (the rfft2 of the wrapped kernel, (H, W//2+1))."""

    def __init__(self, otf: torch.Tensor, size: tuple[int, int], rcond: float, dtype: torch.dtype) -> None:
        mag = otf.abs()
        keep = mag > rcond * mag.max()
        self.size = size
        self.s = torch.where(keep, mag, 0).to(dtype)
        self.phase = torch.where(keep, otf / torch.where(keep, mag, 1), 1)  # K / |K|: real (+-1) at DC and Nyquist

    def to_spectral(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft2(x, norm="ortho")

    def from_spectral(self, c: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfft2(c, s=self.size, norm="ortho")

    def ut(self, y: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft2(y, norm="ortho") * self.phase.conj()

    def u(self, c: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfft2(c * self.phase, s=self.size, norm="ortho")


class Kronecker(Spectral):
    """A x = W_h x W_w^T from the axis matrices' full SVDs (float64, cast to ``like``)."""

    def __init__(self, wh: torch.Tensor, ww: torch.Tensor, like: torch.Tensor) -> None:
        def axis(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            u, s, vt = torch.linalg.svd(w, full_matrices=True)
            cut = max(w.shape) * torch.finfo(w.dtype).eps * s.max()  # torch.linalg.pinv's default rtol
            return u, torch.where(s > cut, s, 0), vt.T

        (uh, sh, vh), (uw, sw, vw) = axis(wh), axis(ww)
        self.m = (len(sh), len(sw))
        s = torch.zeros(wh.shape[1], ww.shape[1], dtype=torch.float64)
        s[: self.m[0], : self.m[1]] = sh[:, None] * sw[None, :]
        cast = dict(dtype=like.dtype, device=like.device)
        self.uh, self.uw, self.vh, self.vw, self.s = (t.to(**cast) for t in (uh, uw, vh, vw, s))

    def to_spectral(self, x: torch.Tensor) -> torch.Tensor:
        return self.vh.T @ x @ self.vw

    def from_spectral(self, c: torch.Tensor) -> torch.Tensor:
        return self.vh @ c @ self.vw.T

    def ut(self, y: torch.Tensor) -> torch.Tensor:
        out = y.new_zeros(*y.shape[:-2], *self.s.shape)
        out[..., : self.m[0], : self.m[1]] = self.uh.T @ y @ self.uw
        return out

    def u(self, c: torch.Tensor) -> torch.Tensor:
        return self.uh @ c[..., : self.m[0], : self.m[1]] @ self.uw.T
