"""The classical baselines as methods (no network, no randomness): the solvers are
:mod:`guidedinv.baselines`' (its docstring has each one's maths, conventions and how the default
constants were chosen on training crops); here is only what a recipe may set and how the settings
map onto a solver. A setting left out scales with the measurement noise sigma_y ([0, 1] scale)."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .base import ClassicalMethod, Setting


def _floor(value: float, least: float) -> float:
    return max(float(value), least)


class Upsample(ClassicalMethod):
    kinds = ("downsample",)

    def __init__(self, name: str, summary: str) -> None:
        self.name, self.summary = name, summary

    def solver(self, settings: Mapping[str, Any], operator: Any, sigma_y: float) -> Callable:
        from ...baselines import upsample

        scale, kind = int(operator.factor), self.name
        return lambda y, _: upsample(y, scale, kind)


class Wiener(ClassicalMethod):
    name = "wiener"
    summary = "regularised Wiener deconvolution (scikit-image, Laplacian regulariser)"
    kinds = ("blur",)
    settings = (Setting("balance", "float", None, "regularisation weight (default sigma_y, at least 1e-4)",
                        low=0.0, low_open=True, high=1e6),)

    def solver(self, settings, operator, sigma_y):
        from ...baselines import wiener

        kernel, boundary = operator.kernel.numpy(), operator.boundary
        balance = settings.get("balance", _floor(sigma_y, 1e-4))
        return lambda y, _: wiener(y, kernel, balance, boundary)


class RichardsonLucy(ClassicalMethod):
    name = "richardson_lucy"
    summary = "Richardson-Lucy deconvolution (scikit-image)"
    kinds = ("blur",)
    settings = (Setting("iterations", "int", 30, "iterations", low=1, high=100000),)

    def solver(self, settings, operator, sigma_y):
        from ...baselines import richardson_lucy

        kernel, boundary = operator.kernel.numpy(), operator.boundary
        return lambda y, _: richardson_lucy(y, kernel, settings["iterations"], boundary)


class TVDeconvolution(ClassicalMethod):
    name = "tv_deconv"
    summary = "total-variation deconvolution (ADMM)"
    kinds = ("blur",)
    settings = (
        Setting("weight", "float", None, "TV weight (default 0.1 sigma_y, at least 1e-5)", low=0.0, low_open=True, high=1e6),
        Setting("iterations", "int", 100, "ADMM iterations", low=1, high=100000),
    )

    def solver(self, settings, operator, sigma_y):
        from ...baselines import tv_deconvolution

        kernel, boundary = operator.kernel.numpy(), operator.boundary
        weight = settings.get("weight", _floor(0.1 * sigma_y, 1e-5))
        return lambda y, _: tv_deconvolution(y, kernel, weight, settings["iterations"], boundary)


class Biharmonic(ClassicalMethod):
    name = "biharmonic"
    summary = "biharmonic inpainting (scikit-image)"
    kinds = ("inpaint",)

    def solver(self, settings, operator, sigma_y):
        from ...baselines import biharmonic

        return lambda y, fill: biharmonic(y, fill)


class TVDenoise(ClassicalMethod):
    name = "tv_denoise"
    summary = "Chambolle's total-variation denoising (scikit-image)"
    kinds = ("identity",)
    settings = (Setting("weight", "float", None, "TV weight (default 0.7 sigma_y, at least 1e-4)",
                        low=0.0, low_open=True, high=1e6),)

    def solver(self, settings, operator, sigma_y):
        from ...baselines import tv_denoise

        weight = settings.get("weight", _floor(0.7 * sigma_y, 1e-4))
        return lambda y, _: tv_denoise(y, weight)


METHODS = (
    Upsample("bicubic", "bicubic upscaling (Pillow, float)"),
    Upsample("lanczos", "Lanczos upscaling (Pillow, float)"),
    Wiener(),
    RichardsonLucy(),
    TVDeconvolution(),
    Biharmonic(),
    TVDenoise(),
)
