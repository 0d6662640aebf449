"""Linear forward models y = A x for inverse problems, with adjoint and pseudo-inverse.

Symbols (one map, used by every operator and guidance term):
    A(x)     the forward model, images (B, C, H, W) -> measurements (B, C', H', W')
    AT(y)    its exact adjoint: <A x, y> = <x, AT y> for every x, y (tested to float64 rounding)
    pinv(y)  the Moore-Penrose pseudo-inverse A^+ y: the minimum-norm least-squares solution
    project  P x = A^+ A x, the orthogonal projection onto the row space of A (P P = P)
    spectral A = U diag(s) V^T where it is exact and cheap (:mod:`guidedinv.operators.spectral`), else None
    prox_l2  argmin_x ||y - A x||^2 + rho ||x - z||^2 (DiffPIR's data step), rho = 0 the projection
             z + A^+ (y - A z) of z onto {x : A x = A A^+ y}

The defaults solve with conjugate gradients; operators with a closed form override them.
Every reduction is per item: an image's result never depends on the batch it shares.
Operators act on whatever range their input is in; measurements of a [0, 1] image convert to the
model's [-1, 1] range with :meth:`LinearOperator.to_model_range` (y -> 2 y - A 1), the one place
where that conversion happens for operators whose rows do not sum to 1 (inpainting).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import torch

from ..errors import InputError

if TYPE_CHECKING:
    from .spectral import Spectral


class ClosedForm(Protocol):
    """What :meth:`LinearOperator.solver_after` returns: the product's solvers on (B, C, H, W) images."""

    def pinv(self, y: torch.Tensor) -> torch.Tensor: ...

    def prox_l2(self, z: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor: ...

__all__ = ["LinearOperator", "Compose", "ClosedForm", "conjugate_gradient", "default_tol", "check_image"]


def default_tol(dtype: torch.dtype) -> float:
    """Relative residual where iterative solvers stop: 1e-10 in float64, about 1e-4 in float32."""
    return max(1e-10, 1000 * torch.finfo(dtype).eps)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-item inner product, shaped (B, 1, 1, ...) to broadcast against a and b."""
    return (a * b).flatten(1).sum(1).view(-1, *([1] * (a.ndim - 1)))


def conjugate_gradient(
    apply: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    x: torch.Tensor | None = None,
    tol: float | None = None,
    max_iter: int = 200,
) -> torch.Tensor:
    """Solve M x = b for a symmetric positive semi-definite M (``apply``), one system per item.

    Each item stops when its residual is below ``tol`` times its ||b|| and is frozen from then on,
    so an item's answer does not depend on the other items. Started from 0 on a consistent
    singular system, CG stays in the range of M and returns the minimum-norm solution.
    """
    tol = default_tol(b.dtype) if tol is None else tol
    x = torch.zeros_like(b) if x is None else x.clone()
    r = b - apply(x) if bool(x.ne(0).any()) else b.clone()
    p = r.clone()
    rr = _dot(r, r)
    stop = tol**2 * _dot(b, b)
    active = rr > stop
    for _ in range(max_iter):
        if not bool(active.any()):
            break
        mp = apply(p)
        pmp = _dot(p, mp)
        alpha = torch.where(active & (pmp > 0), rr / torch.where(pmp > 0, pmp, 1), 0)
        x = x + alpha * p
        r = r - alpha * mp
        rr_new = _dot(r, r)
        beta = torch.where(active & (rr > 0), rr_new / torch.where(rr > 0, rr, 1), 0)
        p = r + beta * p
        rr = torch.where(active, rr_new, rr)
        active = active & (rr > stop)
    return x


def check_image(x: torch.Tensor, what: str = "image") -> torch.Tensor:
    """Operators take batched images (B, C, H, W); anything else is an InputError."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"{what} must be a (B, C, H, W) tensor, got {shape}")
    if not x.is_floating_point():
        raise InputError(f"{what} must be a float tensor (float32 or float64), got {x.dtype}")
    return x


class LinearOperator:
    """Base class: subclasses implement :meth:`A` and :meth:`AT` and may override the solvers.

    ``out_shape(shape)`` / ``in_shape(shape)`` map a (..., H, W) shape through A and back
    (identity by default). ``op2 @ op1`` is the composition x -> op2(op1(x)).
    """

    def A(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def AT(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.A(x)

    def __matmul__(self, other: LinearOperator) -> Compose:
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return Compose(other, self)

    def out_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        return tuple(int(s) for s in shape)

    def in_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        return tuple(int(s) for s in shape)

    def spectral(self, x: torch.Tensor) -> Spectral | None:
        """The exact SVD A = U diag(s) V^T for images shaped like x (size, dtype, device), or None
        when this operator has none (the default; see :mod:`guidedinv.operators.spectral`)."""
        return None

    def solver_after(self, first: LinearOperator) -> ClosedForm | None:
        """A closed-form ``pinv`` / ``prox_l2`` for the product ``self @ first`` (first applied
        first), or None (the default: :class:`Compose` then solves by conjugate gradients). The
        operator applied last answers, so this module never needs to know the concrete operators."""
        return None

    # -- solvers ------------------------------------------------------------------------------
    def gram(self, x: torch.Tensor) -> torch.Tensor:
        """AT A x."""
        return self.AT(self.A(x))

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """A^+ y by conjugate gradients on the normal equations AT A x = AT y, started from 0."""
        return conjugate_gradient(self.gram, self.AT(y))

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """P x = A^+ A x, the part of x that the measurement sees."""
        return self.pinv(self.A(x))

    def prox_l2(self, z: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor:
        """argmin_x ||y - A x||^2 + rho ||x - z||^2; rho = 0 is the limit z + A^+ (y - A z)."""
        rho = float(rho)
        if not rho >= 0 or not math.isfinite(rho):
            raise InputError(f"rho must be a finite number >= 0, got {rho}")
        if rho == 0:
            return z + self.pinv(y - self.A(z))
        return self._prox_l2(z, y, rho)

    def _prox_l2(self, z: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor:
        """rho > 0: solve (AT A + rho I) x = AT y + rho z by conjugate gradients, started from z."""
        return conjugate_gradient(lambda v: self.gram(v) + rho * v, self.AT(y) + rho * z, x=z)

    # -- data range ---------------------------------------------------------------------------
    def to_model_range(self, y: torch.Tensor) -> torch.Tensor:
        """A measurement of a [0, 1] image as the measurement of its [-1, 1] version: A(2x - 1) = 2 y - A 1."""
        return 2 * y - self.A(y.new_ones(self.in_shape(y.shape)))

    def to_unit_range(self, y: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_model_range`: (y + A 1) / 2."""
        return (y + self.A(y.new_ones(self.in_shape(y.shape)))) / 2


class Compose(LinearOperator):
    """Apply operators in the order given: Compose(op1, op2)(x) = op2(op1(x)); AT in reverse.

    The pseudo-inverse and the proximal step use conjugate gradients (the product of the factors'
    pseudo-inverses is not the pseudo-inverse of the product in general), except where a pair of
    factors offers a closed form (:meth:`LinearOperator.solver_after`): a circular blur followed by
    block averaging has FFT ones (:mod:`guidedinv.operators.fourier`).
    """

    def __init__(self, *ops: LinearOperator) -> None:
        flat: list[LinearOperator] = []
        for op in ops:
            if not isinstance(op, LinearOperator):
                raise InputError(f"Compose takes linear operators, got {type(op).__name__}")
            flat.extend(op.ops if isinstance(op, Compose) else [op])
        if not flat:
            raise InputError("Compose needs at least one operator")
        self.ops = tuple(flat)
        self._closed_form = self.ops[1].solver_after(self.ops[0]) if len(self.ops) == 2 else None

    def A(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            x = op.A(x)
        return x

    def AT(self, y: torch.Tensor) -> torch.Tensor:
        for op in reversed(self.ops):
            y = op.AT(y)
        return y

    def spectral(self, x: torch.Tensor) -> Spectral | None:
        """A single factor's decomposition; a product of several has none here."""
        return self.ops[0].spectral(x) if len(self.ops) == 1 else None

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        if self._closed_form is None:
            return super().pinv(y)
        return self._closed_form.pinv(check_image(y))

    def _prox_l2(self, z: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor:
        if self._closed_form is None:
            return super()._prox_l2(z, y, rho)
        self.out_shape(check_image(z).shape)  # the size checks of the factors
        return self._closed_form.prox_l2(z, y, rho)

    def out_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        for op in self.ops:
            shape = op.out_shape(shape)
        return tuple(shape)

    def in_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        for op in reversed(self.ops):
            shape = op.in_shape(shape)
        return tuple(shape)

    def __repr__(self) -> str:
        return " @ ".join(repr(op) for op in reversed(self.ops))
