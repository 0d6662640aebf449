"""pigdm: pseudoinverse-guided diffusion (PiGDM, Song et al., ICLR 2023): DDIM(eta) steps, each
followed by the vector-Jacobian product of A^T (r_t^2 A A^T + sigma_y^2 I)^{-1} (y - A x0) through the
network (its Algorithm 1); the inverse through the operator's closed forms. Any operator; one
backward pass per step."""
from __future__ import annotations

from .base import GuidedMethod, Plan, PlanInput, Setting


class PiGDM(GuidedMethod):
    name = "pigdm"
    summary = "PiGDM: pseudo-inverse guidance through the network inside DDIM; any operator, a backward pass per step"
    kinds = ("inpaint", "downsample", "blur", "identity")
    stochastic = True  # DDIM keeps x_T's spread (eta = 0 included) and adds fresh noise for eta > 0
    backward_per_step = 1
    settings = (
        Setting("eta", "float", 0.2, "DDIM's eta (InverseBench's 0.2)", low=0.0, high=1.0),
        Setting("scale", "float", 1.0, "weight of the guidance (1: RED-diff's sqrt(alpha_bar_t alpha_bar_next))", low=0.0, high=1e3),
        *GuidedMethod.common("100"),
    )

    def plan(self, given: PlanInput) -> Plan:
        from ...guidance.pigdm import PiGDM as PiGDMTerm
        from ...rules import DDIM

        s = given.settings
        term = PiGDMTerm(given.operator, given.y_model, given.sigma_y, scale=s["scale"])
        return Plan([term], DDIM(s["eta"]), s["steps"])


METHOD = PiGDM()
