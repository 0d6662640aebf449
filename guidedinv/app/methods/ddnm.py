"""ddnm: null-space projection (DDNM, Wang, Yu & Zhang, ICLR 2023): x0 <- x0 + A^+ (y - A x0) keeps the
network's null-space content. With noisy measurements (sigma_y > 0) the step itself must carry the
measurement's noise (DDNM+, or DDRM's rule where the operator has an exact SVD), so the method then
steps with the engine's noisy-projection rule built on DDIM(eta); any rule works when sigma_y = 0.

eta is DDIM's: the fraction of the next level's noise drawn fresh is eta sqrt((1 - a/a')/(1 - a)) per
step, not eta itself as in DDNM's and DDRM's code (c1 = sqrt(1 - a') eta; the ``ddrm`` method has that
meaning). DDIM's eta 0.85 was DDNM's number read in the other meaning: 0.68 fresh per step on logsnr20
(0.32 on the '100' grid), where DDNM and DDRM draw 0.85. Default 1 (the DDPM posterior; 0.80 fresh on
logsnr20), measured on 64 px crops, 20 calls, sigma_y 0.01, three images (benchmarks/peers.py,
docs/peers.md): eta 0.5 / 0.85 / 1 give SR x4 23.7 / 24.4 / 24.7 dB, Gaussian deblurring 23.5 / 24.7 /
25.2, random inpainting 17.1 / 18.3 / 19.3, box inpainting 17.0 / 17.3 / 17.5. DDIM's eta cannot draw
more than the DDPM posterior does; a larger fraction (DDRM's eta up to 1) is the ``ddrm`` method."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...errors import InputError
from .base import RULE_NAMES, GuidedMethod, Plan, PlanInput, Setting


class DDNM(GuidedMethod):
    name = "ddnm"
    summary = "null-space projection (DDNM; DDNM+ / DDRM's step with noise): exact consistency with the measurement"
    kinds = ("inpaint", "downsample", "blur", "identity")
    stochastic = True  # unless run with rule = "pnp" (Method.is_stochastic)
    settings = (
        Setting("rule", "str", "ddim", "step rule (with noise.sigma_y > 0 only ddim: the noisy step is DDIM(eta)'s)",
                choices=RULE_NAMES),
        Setting("eta", "float", 1.0, "DDIM's eta (1: the DDPM posterior's fresh noise; not DDRM's fraction)",
                low=0.0, high=1.0),
        Setting("zeta", "float", 0.3, "renoise rule: fraction of fresh noise per step", low=0.0, high=1.0),
        Setting("scale", "float", 1.0, "weight of the projection (1: DDNM)", low=0.0, high=1e3),
        Setting("noise_rule", "str", "svd", "svd: per singular value where the operator has an exact SVD "
                "(DDRM-like); scalar: the paper's eq. 19", choices=("svd", "scalar")),
        *GuidedMethod.common("logsnr50"),
    )

    def check_request(self, settings: Mapping[str, Any], sigma_y: float, where: str) -> None:
        if sigma_y > 0 and settings["rule"] != "ddim":
            raise InputError(f"{where}.rule = {settings['rule']!r}: with noise.sigma_y > 0 DDNM+ steps with DDIM(eta) "
                             "carrying the measurement's noise; use rule = \"ddim\" (its eta), or sigma_y = 0")

    def plan(self, given: PlanInput) -> Plan:
        from ...guidance import Projection

        s = given.settings
        term = Projection(given.operator, given.y_model, given.sigma_y, scale=s["scale"], noise_rule=s["noise_rule"])
        if given.sigma_y > 0:
            self.check_request(s, given.sigma_y, "methods.ddnm")
            from ...rules import NoisyProjectionStep

            rule = NoisyProjectionStep(given.operator, given.sigma_y, eta=s["eta"], scale=s["scale"],
                                       noise_rule=s["noise_rule"])
        else:
            rule = self.rule(s, ("eta", "zeta"))
        return Plan([term], rule, s["steps"])


METHOD = DDNM()
