"""pnp: plug-and-play half-quadratic splitting on the diffusion grid (DPIR, Zhang et al. 2021):
DiffPIR's proximal data step (Zhu et al. 2023) after every denoising, then x' = sqrt(a') x0 with no
sampling noise. One deterministic estimate with the best PSNR; not a posterior sample."""
from __future__ import annotations

from .base import GuidedMethod, Plan, PlanInput, Setting

# DiffPIR's data step, shared with the diffpir method: x0 <- argmin ||y - A x||^2 / (2 sigma_y^2) + rho/2 ||x - x0||^2
PROXIMAL = (
    Setting("lam", "float", 1.0, "weight of the prior in the proximal step (this package's lambda: DiffPIR's x 4)",
            low=0.0, low_open=True, high=1e6),
    Setting("scale", "float", 1.0, "strength of the data step (0: the prior alone)", low=0.0, high=1e3),
)


def proximal_term(given: PlanInput):
    from ...guidance import Proximal

    s = given.settings
    return Proximal(given.operator, given.y_model, given.sigma_y, lam=s["lam"], scale=s["scale"])


class PlugAndPlay(GuidedMethod):
    name = "pnp"
    summary = "plug-and-play (DPIR-style): denoise, then DiffPIR's proximal data step, no sampling noise; best PSNR"
    kinds = ("inpaint", "downsample", "blur", "identity")
    stochastic = False  # its pnp rule forgets x_t: every seed gives one estimate
    settings = (*PROXIMAL, *GuidedMethod.common("logsnr20"))

    def plan(self, given: PlanInput) -> Plan:
        from ...rules import make_rule

        return Plan([proximal_term(given)], make_rule("pnp"), given.settings["steps"])


METHOD = PlugAndPlay()
