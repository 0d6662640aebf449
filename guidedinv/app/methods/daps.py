"""daps: decoupled annealing posterior sampling (Zhang et al., CVPR 2025). At each annealing level
(``steps``: a grid of the model's timesteps, as for every method) the probability-flow ODE runs
``ode_steps`` network calls down to an x0 estimate, a posterior draw around it (a Gaussian tether of
width r = tether sigma_t times the measurement's likelihood; exact where the operator has a closed
form, perturb-and-MAP through its proximal step otherwise, or the paper's Langevin steps) replaces
it, and fresh noise takes it to the next level. The engine: :mod:`guidedinv.daps` (a path and a step
rule on the one sampler).

Defaults chosen on 2 training crops (64 px, benchmarks/tune_methods.py) at 20 network calls: one
ODE call per level beats two at 20 calls (SR x4 23.6 vs 22.7 dB) and ties at 50; the paper's
r_t = sigma_t (tether 1) capped at r_max = 0.1 (uncapped: 11.6 dB, exact draws that wide put sigma_t
of white noise into the early levels; the paper's 100 Langevin steps of 1e-4 never reach it).
tether 0.5 (r_max 0.2) gives the same PSNR within 0.2 dB but fits the measurement worse (SR x4
residual |A x - y| 1.9 times the noise's, against 1.25 at tether 1: a narrower tether weakens
the pull of the likelihood on the low levels, where the chain moves by about r per level)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...errors import InputError
from .base import Cost, GuidedMethod, Plan, PlanInput, Setting


class DAPS(GuidedMethod):
    name = "daps"
    summary = ("DAPS: per noise level an ODE estimate of x0, an exact posterior draw around it, fresh noise; "
               "a posterior sample, ode_steps calls per level")
    kinds = ("inpaint", "downsample", "blur", "identity")
    stochastic = True  # fresh noise at every level and a posterior draw (exact on the Gaussian tests)
    settings = (
        Setting("ode_steps", "int", 1, "network calls of the ODE from each level down to clean", low=1, high=100),
        Setting("ode", "str", "ddim", "the ODE's solver", choices=("ddim", "dpm++2m")),
        Setting("tether", "float", 1.0, "width of the Gaussian around the ODE's x0, in units of the level's sigma_t",
                low=0.0, low_open=True, high=1e3),
        Setting("r_max", "float", 0.1, "cap on that width (the data's standard deviation, model range; 0: none, "
                "the paper's r_t = sigma_t)", low=0.0, high=1e3),
        Setting("scale", "float", 1.0, "weight of the measurement's likelihood (0: the prior alone)", low=0.0, high=1e3),
        Setting("inner", "str", "exact", "the posterior draw: exact (closed form or perturb-and-MAP) or "
                "langevin (the paper's steps)", choices=("exact", "langevin")),
        Setting("langevin_steps", "int", 100, "langevin: steps per level", low=1, high=10000),
        Setting("lr", "float", 1e-4, "langevin: step size", low=0.0, low_open=True, high=1.0),
        *GuidedMethod.common("logsnr20"),
    )

    def check_request(self, settings: Mapping[str, Any], sigma_y: float, where: str) -> None:
        if settings["inner"] == "langevin" and sigma_y == 0 and settings["scale"] > 0:
            raise InputError(f"{where}.inner = \"langevin\" needs noise.sigma_y > 0 (its step has 1 / sigma_y^2); "
                             "use inner = \"exact\" for noiseless measurements")

    def annealing(self, settings: Mapping[str, Any]) -> Any:
        from ...daps import Annealing

        return Annealing(settings["ode_steps"])

    def plan(self, given: PlanInput) -> Plan:
        from ...daps import DAPSStep

        s = given.settings
        self.check_request(s, given.sigma_y, "methods.daps")
        rule = DAPSStep(given.operator, given.y_model, given.sigma_y, tether=s["tether"], r_max=s["r_max"],
                        scale=s["scale"], inner=s["inner"], langevin_steps=s["langevin_steps"], lr=s["lr"], ode=s["ode"])
        return Plan([], rule, s["steps"], self.annealing(s))

    def _calls(self, settings: Mapping[str, Any], steps: str) -> int:
        from ...schedule import VPSchedule, respace

        schedule = VPSchedule.linear()  # every model here has T = 1000; a logsnr grid is laid on its own schedule
        return self.annealing(settings).calls(respace(steps, schedule.num_steps, schedule), schedule)

    def cost(self, settings: Mapping[str, Any]) -> Cost:
        """levels x ode_steps network calls (a level at timestep t < ode_steps has t + 1)."""
        return Cost(self._calls(settings, self.grid(settings).text))

    def steps_for_budget(self, settings: Mapping[str, Any], nfe: int) -> str:
        """The grid with the most levels whose calls stay within ``nfe`` (at least one level)."""
        grid = self.grid(settings)
        best = grid.with_count(1 if grid.kind != "logsnr" else 2)
        for levels in range(best.count, nfe + 1):
            candidate = grid.with_count(levels)
            if self._calls(settings, candidate.text) > nfe:
                break
            best = candidate
        return best.text


METHOD = DAPS()
