"""diffpir: DiffPIR (Zhu et al., CVPRW 2023): the proximal data step on x0 inside a sampler that
re-noises by ``zeta`` (its Alg. 1); a posterior-like sample with generated detail."""
from __future__ import annotations

from .base import RULE_NAMES, GuidedMethod, Plan, PlanInput, Setting
from .pnp import PROXIMAL, proximal_term


class DiffPIR(GuidedMethod):
    name = "diffpir"
    summary = "DiffPIR: the same data step inside a sampler that re-noises (zeta); a sample with generated detail"
    kinds = ("inpaint", "downsample", "blur", "identity")
    stochastic = True  # unless run with rule = "pnp" (Method.is_stochastic)
    settings = (
        Setting("rule", "str", "renoise", "step rule", choices=RULE_NAMES),
        Setting("zeta", "float", 0.3, "renoise rule: fraction of fresh noise per step", low=0.0, high=1.0),
        Setting("eta", "float", 0.0, "ddim rule: DDIM's eta", low=0.0, high=1e3),
        *PROXIMAL,
        *GuidedMethod.common("logsnr50"),
    )

    def plan(self, given: PlanInput) -> Plan:
        s = given.settings
        return Plan([proximal_term(given)], self.rule(s, ("eta", "zeta")), s["steps"])


METHOD = DiffPIR()
