"""repaint: RePaint (Lugmayr et al., CVPR 2022): replace the known pixels with the measurement noised
to the next level after every step, with resampling jumps (jump_length steps forward, repeated
jump_n_sample times) so the generated region harmonises with the known one. Inpainting only."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import RULE_NAMES, Cost, GuidedMethod, Plan, PlanInput, Setting


class RePaint(GuidedMethod):
    name = "repaint"
    summary = "RePaint: replace the known pixels at every step, with resampling jumps (inpainting only)"
    kinds = ("inpaint",)
    stochastic = True  # unless run with rule = "pnp" (Method.is_stochastic)
    settings = (
        Setting("rule", "str", "ddpm", "step rule", choices=RULE_NAMES),
        Setting("eta", "float", 0.0, "ddim rule: DDIM's eta", low=0.0, high=1e3),
        Setting("zeta", "float", 0.3, "renoise rule: fraction of fresh noise per step", low=0.0, high=1.0),
        Setting("scale", "float", 1.0, "weight of the replacement (1: replace)", low=0.0, high=1.0),
        Setting("jump_length", "int", 5, "steps per resampling jump", low=1, high=1000),
        Setting("jump_n_sample", "int", 3, "times each jump is taken (1: no resampling)", low=1, high=100),
        Setting("steps", "steps", "50", "network evaluations before resampling: \"N\", \"ddimN\" or \"logsnrN\""),
    )

    def resampling(self, s: Mapping[str, Any]) -> Any:
        from ...sampler import Resampling

        return Resampling(s["jump_length"], s["jump_n_sample"])

    def plan(self, given: PlanInput) -> Plan:
        from ...guidance import Replacement

        s = given.settings
        term = Replacement(given.operator, given.y_model, given.sigma_y, scale=s["scale"])
        return Plan([term], self.rule(s, ("eta", "zeta")), s["steps"], self.resampling(s))

    def _forward_calls(self, s: Mapping[str, Any], count: int) -> int:
        from ...sampler import resampling_path

        path = resampling_path(count, self.resampling(s))
        return sum(1 for a, b in zip(path, path[1:]) if b < a)

    def cost(self, settings: Mapping[str, Any]) -> Cost:
        return Cost(self._forward_calls(settings, self.grid(settings).count))

    def steps_for_budget(self, settings: Mapping[str, Any], nfe: int) -> str:
        """The largest grid whose resampling path stays within ``nfe`` forward calls."""
        best = 1
        for num in range(1, nfe + 1):
            if self._forward_calls(settings, num) <= nfe:
                best = num
        return self.grid(settings).with_count(best).text


METHOD = RePaint()
