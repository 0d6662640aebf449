"""ddrm: denoising diffusion restoration (DDRM, Kawar et al., NeurIPS 2022): in the operator's SVD basis,
the measured components are blended toward the measurement by their noise level and the null space
steps like DDIM; eta and eta_b are the paper's (eta: the fraction of the next level's noise drawn
fresh, the same on every step; ddnm's eta is DDIM's, whose fraction changes per step). Operators with
an exact SVD only: inpainting, downsampling, the circular (padded) blur, denoising. No gradients."""
from __future__ import annotations

from typing import Any

from ...errors import InputError
from .base import GuidedMethod, Plan, PlanInput, Setting


class DDRM(GuidedMethod):
    name = "ddrm"
    summary = "DDRM: per-singular-value blend toward the measurement (eta, eta_b as in the paper); exact-SVD operators"
    kinds = ("inpaint", "downsample", "blur", "identity")
    stochastic = True  # fresh noise on every step but the last (eta = 0: still x_T's spread)
    settings = (
        Setting("eta", "float", 0.85, "fraction of the next level's noise drawn fresh (DDRM's eta)", low=0.0, high=1.0),
        Setting("eta_b", "float", 1.0, "weight of the measurement where its noise is below the level (DDRM's eta_b)",
                low=0.0, high=1.0),
        *GuidedMethod.common("20"),
    )

    def check_operator(self, operator: Any) -> None:
        """A blur has an exact SVD only where the solver's blur is circular: boundary "padded" (reflect-
        padded, then circular) or "circular"; "reflect" is refused here, before any model loads."""
        if operator.kind == "blur" and operator.boundary not in ("padded", "circular"):
            from . import methods_for_kind

            others = ", ".join(m for m in methods_for_kind("blur") if m != self.name)
            raise InputError(f"operator.boundary = {operator.boundary!r}: DDRM needs an operator with an exact SVD (a blur "
                             f"has one only with boundary \"padded\" or \"circular\"); use --set operator.boundary=\"padded\" "
                             f"or another method: {others}")

    def plan(self, given: PlanInput) -> Plan:
        from ...ddrm_step import DDRMStep
        from ...guidance.ddrm import DDRM as DDRMTerm

        s = given.settings
        rule = DDRMStep(given.operator, given.sigma_y, eta=s["eta"], eta_b=s["eta_b"])
        rule.spectral(given.y_model.new_zeros(given.operator.in_shape(given.y_model.shape)))  # refuse a non-SVD operator now
        return Plan([DDRMTerm(given.operator, given.y_model, given.sigma_y)], rule, s["steps"])


METHOD = DDRM()
