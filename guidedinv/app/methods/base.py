"""What a method is: a name, the operator kinds it solves, its settings (with defaults, types and
ranges), how it turns a request into guidance terms + a step rule + a grid, and what a step budget
costs in network calls. Every method (guided or classical) is one object of a subclass of
:class:`Method` in one file of this package; :mod:`guidedinv.app.methods` lists them. The command
line's help, recipe validation, the benchmark's method lists, budget-to-steps conversion and the
batch runner read these objects; nothing else branches on a method's name.

Light on purpose: importing this module (and every method file) imports neither torch nor numpy,
so ``guidedinv --help`` stays fast; the engine is imported inside :meth:`GuidedMethod.plan`.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...errors import InputError
from ..steps import Steps, parse_steps

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ...operators import LinearOperator

__all__ = ["Setting", "Method", "GuidedMethod", "ClassicalMethod", "Plan", "PlanInput", "Cost", "RULE_NAMES",
           "TASK_OF_KIND"]

RULE_NAMES = ("ddpm", "ddpm-large", "ddpm-learned", "ddim", "dpm++2m", "renoise", "pnp")
TASK_OF_KIND = {"downsample": "superres", "blur": "deblur", "inpaint": "inpaint", "identity": "denoise", "edit": "edit"}


@dataclass(frozen=True)
class Setting:
    """One setting of a method: its type ("float", "int", "str", "steps"), its default (None: no
    default, the setting is optional and absent), an inclusive range or a list of choices, and help."""

    name: str
    type: str
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None
    low_open: bool = False  # the range excludes ``low``

    def accepted(self) -> str:
        if self.type == "steps":
            return "a grid like \"50\", \"ddim25\", \"10,10,10\" or \"logsnr20\""
        if self.choices is not None:
            return "one of " + ", ".join(self.options())
        def num(v: float) -> str:
            return str(int(v)) if self.type == "int" else f"{v:g}"

        lo = "" if self.low is None else (f"> {num(self.low)}" if self.low_open else f">= {num(self.low)}")
        hi = "" if self.high is None else f"<= {num(self.high)}"
        what = {"float": "a number", "int": "a whole number", "str": "text"}[self.type]
        return " ".join(x for x in (what, lo, "and" if lo and hi else "", hi) if x)

    def options(self) -> tuple[str, ...]:
        return self.choices() if callable(self.choices) else tuple(self.choices or ())

    def check(self, value: Any, where: str) -> Any:
        """The value, typed, or an InputError naming ``where`` (what the user typed) and what is accepted."""
        bad = InputError(f"{where} = {value!r}: expected {self.accepted()}")
        if self.type == "steps":
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise bad
            return parse_steps(value, where).text
        if self.type == "str":
            if not isinstance(value, str):
                raise bad
            if self.choices is not None and value not in self.options():
                raise bad
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if self.type == "int":
            if isinstance(value, float):
                if not value.is_integer():
                    raise bad
                value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise bad
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise bad
        if self.high is not None and value > self.high:
            raise bad
        return value


@dataclass(frozen=True)
class Cost:
    """Network calls of one run: forward evaluations and backward passes through the network."""

    forward: int
    backward: int = 0


@dataclass
class Plan:
    """What the sampler needs: guidance terms, step rule, grid and RePaint-style resampling; ``start``:
    (image in model range, timestep) to start from that image noised to that timestep (SDEdit), or
    (image, -1) for "the image itself, no step"; None: pure noise, or the method's warm start."""

    terms: list
    rule: Any
    steps: str
    resample: Any = None
    start: tuple[Any, int] | None = None


@dataclass
class PlanInput:
    """What a method plans from: the operator on the solver's grid, the measurement in model range,
    its noise (sigma_y, [0, 1] scale), the method's validated settings, the model's number of
    timesteps, and the request's other images (editing: "mask" edit weights (B, 1, H, W) in [0, 1],
    "reference" in model range), padded like the measurement."""

    operator: LinearOperator
    y_model: torch.Tensor
    sigma_y: float
    settings: Mapping[str, Any]
    num_timesteps: int = 1000
    images: Mapping[str, Any] = field(default_factory=dict)


class Method:
    """Base of every method. Subclasses set the class attributes and implement their hooks."""

    name: str = ""
    summary: str = ""  # one line for --help and the README's methods table
    kinds: tuple[str, ...] = ()  # operator kinds it solves: inpaint, downsample, blur, identity
    settings: tuple[Setting, ...] = ()
    uses_network: bool = True
    # a sampler of the posterior: a run draws a sample whose spread over seeds is a posterior's (then
    # ``--samples N`` maps the uncertainty) rather than one estimate the seed barely touches; each
    # guided method declares it, a classical one never samples. Read it through :meth:`is_stochastic`.
    stochastic: bool = False

    def setting(self, name: str) -> Setting | None:
        return next((s for s in self.settings if s.name == name), None)

    def defaults(self) -> dict[str, Any]:
        return {s.name: s.default for s in self.settings if s.default is not None}

    def check_kind(self, kind: str) -> None:
        if kind not in self.kinds:
            tasks = " and ".join(TASK_OF_KIND[k] for k in self.kinds)
            raise InputError(f"method {self.name!r} works for {tasks} only, not {TASK_OF_KIND.get(kind, kind)}")

    def check_settings(self, given: Mapping[str, Any], where: str) -> dict[str, Any]:
        """Defaults overlaid with ``given`` (a recipe's ``[methods.NAME]`` table), every value checked."""
        out = self.defaults()
        for key, value in given.items():
            spec = self.setting(key)
            if spec is None:
                known = ", ".join(s.name for s in self.settings) or "none"
                raise InputError(f"{where}.{key}: method {self.name!r} has no setting {key!r} (its settings: {known})")
            out[key] = spec.check(value, f"{where}.{key}")
        self.check_combination(out, where)
        return out

    def check_combination(self, settings: dict[str, Any], where: str) -> None:
        """Constraints between settings (a subclass's); settings are already typed."""

    def check_operator(self, operator: Any) -> None:
        """Constraints on the forward model beyond its kind (a subclass's), given the request's checked
        :class:`guidedinv.app.operator_spec.OperatorSpec`; checked up front, before any model loads."""

    def check_request(self, settings: Mapping[str, Any], sigma_y: float, where: str) -> None:
        """Constraints between the settings and the measurement (a subclass's), checked up front."""

    def cost(self, settings: Mapping[str, Any]) -> Cost:
        return Cost(0, 0)

    def is_stochastic(self, settings: Mapping[str, Any]) -> bool:
        """Whether a run with these settings samples the posterior: the method's ``stochastic``, but
        for the one setting that changes it, the step rule ``settings["rule"]``. Every rule but "pnp"
        keeps the spread of its start (x_T ~ N(0, I), or the warm start's noise) and, but for ddim
        with eta = 0 and dpm++2m, adds fresh noise per step; the deterministic rules still draw
        samples, the probability-flow ODE maps x_T's spread onto the posterior's (exact on the
        Gaussian tests). The "pnp" rule forgets x_t (x' = sqrt(a') x0), so every seed gives one
        estimate. No other setting matters (eta = 0 included: x_T's spread remains)."""
        return self.stochastic and settings.get("rule") != "pnp"


class GuidedMethod(Method):
    """A method that runs the sampler: its settings always include ``steps`` and a warm start
    (``init``: a classical method's estimate, noised to ``start_sigma``, model range)."""

    backward_per_step = 0  # backward passes through the network per forward call (DPS: 1)

    @staticmethod
    def common(steps: str, init: str | None = None) -> tuple[Setting, ...]:
        def starts() -> tuple[str, ...]:
            from . import classical_names  # the registry, complete by the time a recipe is checked

            return ("none", *classical_names())

        return (
            Setting("steps", "steps", steps, "network evaluations: \"N\", \"ddimN\", \"N1,N2,...\" or \"logsnrN\""),
            Setting("init", "str", init, "a classical method's estimate to start from (\"none\": pure noise)",
                    choices=starts),
            Setting("start_sigma", "float", 0.5 if init else None, "noise level of the warm start (model range, like sigma_t)",
                    low=0.0, low_open=True, high=1e3),
        )

    def check_combination(self, settings: dict[str, Any], where: str) -> None:
        init = settings.get("init")
        if init == "none":  # the warm start switched off takes its level with it (a preset's start_sigma)
            settings.pop("start_sigma", None)
        elif "start_sigma" in settings and init is None:
            raise InputError(f"{where}.start_sigma needs {where}.init, a classical method to start from")
        if init not in (None, "none"):
            settings.setdefault("start_sigma", 0.5)

    def check_warm_start(self, settings: Mapping[str, Any], kind: str, where: str) -> None:
        init = settings.get("init")
        if init in (None, "none"):
            return
        from . import get_method

        method = get_method(init)
        if kind not in method.kinds:
            from . import classical_names

            usable = [n for n in classical_names() if kind in get_method(n).kinds]
            raise InputError(f"{where}.init = {init!r} does not solve {TASK_OF_KIND.get(kind, kind)}; choose from "
                             f"{', '.join(usable)} or \"none\"")

    def plan(self, given: PlanInput) -> Plan:
        raise NotImplementedError

    def grid(self, settings: Mapping[str, Any]) -> Steps:
        return parse_steps(settings["steps"])

    def cost(self, settings: Mapping[str, Any]) -> Cost:
        forward = self.grid(settings).count
        return Cost(forward, forward * self.backward_per_step)

    def steps_for_budget(self, settings: Mapping[str, Any], nfe: int) -> str:
        """The steps string of the same grid kind whose run makes ``nfe`` network forward calls."""
        return self.grid(settings).with_count(nfe).text

    @staticmethod
    def rule(settings: Mapping[str, Any], options: Sequence[str] = ()) -> Any:
        """The step rule ``settings["rule"]`` built with the options it takes among ``options``
        (e.g. ("eta",): DDIM's eta; ("zeta",): the renoise rule's zeta)."""
        from ...rules import make_rule

        name = settings["rule"]
        takes = {"ddim": "eta", "renoise": "zeta"}.get(name)
        kwargs = {takes: settings[takes]} if takes in options and takes in settings else {}
        try:
            return make_rule(name, **kwargs)
        except ValueError as exc:
            raise InputError(f"rule {name!r}: {exc}") from None


class ClassicalMethod(Method):
    """A classical baseline (no network, no randomness): :meth:`solve` maps one measurement to one
    estimate with :mod:`guidedinv.baselines`."""

    uses_network = False

    def solver(self, settings: Mapping[str, Any], operator: Any, sigma_y: float) -> Callable:
        """f(y (h, w, C) float64, fill mask (H, W) bool or None) -> x (H, W, C)."""
        raise NotImplementedError
