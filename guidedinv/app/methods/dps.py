"""dps: diffusion posterior sampling (Chung et al., ICLR 2023): after each step, move the sample
against the gradient of ||y - A x0(x_t)|| through the network, with step size zeta / ||y - A x0||
(their Alg. 1). Works for any differentiable operator; one backward pass per step.

zeta is per unit of a 1000-step schedule (guidedinv.guidance.DPS): the paper's zeta on its 1000
DDPM steps, about 1000 / N times that per step on N steps, so the guidance a run adds does not
shrink with the budget. zeta = 1 (the paper's range is 0.3-1.0) on 64 px crops, SR x4, 100 steps:
zeta 0.3 / 1 / 3 give 22.7 / 24.5 / 24.3 dB (benchmarks/peers.py, three crops)."""
from __future__ import annotations

from .base import RULE_NAMES, GuidedMethod, Plan, PlanInput, Setting


class DPS(GuidedMethod):
    name = "dps"
    summary = "DPS: gradient of the measurement error through the network; any operator, a backward pass per step"
    kinds = ("inpaint", "downsample", "blur", "identity")
    stochastic = True  # unless run with rule = "pnp" (Method.is_stochastic)
    backward_per_step = 1
    settings = (
        Setting("rule", "str", "ddpm", "step rule", choices=RULE_NAMES),
        Setting("eta", "float", 0.0, "ddim rule: DDIM's eta", low=0.0, high=1e3),
        Setting("zeta", "float", 1.0, "step size of the gradient (DPS's zeta, per unit of a 1000-step schedule)",
                low=0.0, high=1e3),
        *GuidedMethod.common("100"),
    )

    def plan(self, given: PlanInput) -> Plan:
        from ...guidance import DPS as DPSTerm

        s = given.settings
        term = DPSTerm(given.operator, given.y_model, given.sigma_y, scale=s["zeta"])
        return Plan([term], self.rule(s, ("eta",)), s["steps"])


METHOD = DPS()
