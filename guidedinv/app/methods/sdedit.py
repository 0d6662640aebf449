"""sdedit: SDEdit (Meng et al., ICLR 2022): noise the input to the level its ``strength`` names and
run the reverse sampler from there; a stroke painting or a rough collage comes out as a plausible
image near it. The request's other terms join it: a mask keeps the region outside it (the input
noised to each level, :class:`~guidedinv.guidance.MaskedBlend`; exact on the last step), a
reference steers the low frequencies (ILVR, :class:`~guidedinv.guidance.ILVR`), a class guides
(the request's ``[guidance]``: classifier or classifier-free guidance).

Strength, written once: s in [0, 1] is the position in the model's timestep grid. The input is
noised to t0 = round(s (T - 1)) (T = 1000: s = 0.5 is t0 = 500, alpha_bar = 0.078 on the linear
schedule); s = 0 returns the input unchanged (no network call), s = 1 ignores it (a start from pure
noise). The network calls are the steps actually run: a "logsnrN" grid lays all N steps between t0
and 0 (N calls whatever the strength); a guided-diffusion "N" grid is cut at t0 (about s N calls:
what diffusers' img2img does with strength x steps).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import RULE_NAMES, Cost, GuidedMethod, Plan, PlanInput, Setting


def start_timestep(strength: float, num_timesteps: int = 1000) -> int:
    """t0 of a strength (module docstring): -1 for 0 (the input itself), T - 1 for 1."""
    return -1 if strength <= 0 else int(round(strength * (num_timesteps - 1)))


class SDEdit(GuidedMethod):
    name = "sdedit"
    summary = "SDEdit: noise the input to --strength and sample back (with a mask: edit inside only; ILVR, class guidance)"
    kinds = ("edit",)
    stochastic = True  # from the noised input, unless run with rule = "pnp" (Method.is_stochastic)
    settings = (
        Setting("strength", "float", 0.5, "where the input is noised: fraction of the timestep range (0: the input, "
                "1: pure noise)", low=0.0, high=1.0),
        Setting("rule", "str", "ddpm", "step rule", choices=RULE_NAMES),
        Setting("eta", "float", 0.0, "ddim rule: DDIM's eta", low=0.0, high=1e3),
        Setting("zeta", "float", 0.3, "renoise rule: fraction of fresh noise per step", low=0.0, high=1.0),
        Setting("ilvr", "int", 0, "ILVR low-pass factor N for a reference (0: off)", low=0, high=64),
        Setting("ilvr_sigma_min", "float", 0.0, "ILVR stops below this noise level (model-range sigma; 0: never)",
                low=0.0, high=1e4),
        Setting("steps", "steps", "logsnr20", 'network evaluations below the strength\'s level: "logsnrN" (N calls) or "N"'),
    )

    def plan(self, given: PlanInput) -> Plan:
        from ...guidance import ILVR, MaskedBlend

        s = given.settings
        x_in = given.y_model
        terms: list = []
        mask = given.images.get("mask")
        if mask is not None:
            terms.append(MaskedBlend(mask, x_in))
        reference = given.images.get("reference")
        if reference is not None and s["ilvr"] > 0:
            window = (s["ilvr_sigma_min"], float("inf")) if s["ilvr_sigma_min"] > 0 else None
            terms.append(ILVR(reference, s["ilvr"], sigma_window=window))
        t0 = start_timestep(s["strength"], given.num_timesteps)
        start = None if t0 >= given.num_timesteps - 1 else (x_in, t0)
        return Plan(terms, self.rule(s, ("eta", "zeta")), s["steps"], start=start)

    def cost(self, settings: Mapping[str, Any]) -> Cost:
        if settings["strength"] <= 0:
            return Cost(0)
        return super().cost(settings)


METHOD = SDEdit()
