"""The noise-range rule: a prior trained for noise up to ``max_sigma`` (a plug-and-play Gaussian
denoiser, guidedinv.models.pnp: FFDNet 75/255, DRUNet 50/255, DnCNN-B 55/255 on [0, 1], twice that
on the model's range) never sees a sample noisier than that.

A method that would start above it (from pure noise, a warm start noised above it, an edit strength
whose level is above it) is refused with a line saying why and what to use, or, where the task's
preset says how, starts from a classical estimate noised inside the range: a preset's
``[pnp_prior.methods.NAME]`` table holds the settings method NAME takes with such a prior (e.g.
``init = "lanczos"``, ``start_sigma = 0.35``). They apply over the preset's ``[methods.NAME]``
and under the command's options and ``--set`` items (:func:`prior_section_first`, used by
``build_request``); a recipe parsed on its own (``parse_request``: the benchmark, a ``--task``
file) applies its section over its ``[methods.NAME]``. The resolved recipe holds the merged
settings, not the section, so it reproduces the run.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InputError
from .methods import METHODS, get_method

__all__ = ["SECTION", "prior_range", "with_prior_section", "prior_section_first", "check_noise_range", "in_range",
           "check_prior_range"]

SECTION = "pnp_prior"
TOP_T = 999  # the timestep a start from pure noise begins at (the linear schedule every such prior uses)


def prior_range(model: str) -> float | None:
    """The model-range noise level the prior ``model`` was trained up to; None: a diffusion model."""
    from ..defaults import EMBEDDED

    if model in EMBEDDED:
        return None
    from ..models.pnp import noise_range

    return noise_range(model)


def _section(recipe: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The recipe's ``[pnp_prior.methods.NAME]`` tables, each checked against the method's settings."""
    table = recipe.get(SECTION, {})
    if not isinstance(table, dict) or set(table) - {"methods"} or not isinstance(table.get("methods", {}), dict):
        raise InputError(f"{SECTION} = {table!r}: expected [{SECTION}.methods.NAME] tables of method settings")
    for name, settings in table.get("methods", {}).items():
        if name not in METHODS or not isinstance(settings, dict):
            raise InputError(f"{SECTION}.methods.{name}: expected a table of settings of a known method ({', '.join(METHODS)})")
        METHODS[name].check_settings(settings, f"{SECTION}.methods.{name}")
    return table.get("methods", {})


def with_prior_section(recipe: Any) -> Any:
    """``recipe`` with its section merged over its methods tables (and dropped) when its model has a
    limited noise range; as it is otherwise (the section checked)."""
    if not isinstance(recipe, Mapping) or SECTION not in recipe:
        return recipe
    section = _section(recipe)
    model = recipe.get("model", "default")
    if not isinstance(model, str) or prior_range(model) is None:
        return recipe
    out = copy.deepcopy({k: v for k, v in recipe.items() if k != SECTION})
    methods = out.setdefault("methods", {})
    for name, settings in section.items():
        methods[name] = {**(methods.get(name) or {}), **settings}
    return out


def prior_section_first(recipe: dict[str, Any], assignments: Sequence[str]) -> dict[str, Any]:
    """For ``build_request``: the preset merged with its section when the model the ``assignments``
    end with has a limited range, so that the options and ``--set`` items still override it."""
    from .request import apply_overrides

    try:
        model = str(apply_overrides(recipe, assignments).get("model", "default"))
    except InputError:
        return recipe  # the layered parse names the bad assignment
    return dict(with_prior_section({**recipe, "model": model}), model=recipe.get("model", "default"))


def _schedule() -> Any:
    from ..schedule import VPSchedule

    return VPSchedule.linear()


def _start(method: str, settings: Mapping[str, Any]) -> tuple[float, str]:
    """The model-range level a method starts from, and how the user sets it."""
    if method == "sdedit":
        strength = float(settings.get("strength", 0.0))
        return _schedule().sigma(round(strength * TOP_T)) if strength > 0 else 0.0, f"methods.{method}.strength"
    if settings.get("init") not in (None, "none"):
        return float(settings["start_sigma"]), f"methods.{method}.start_sigma"
    return _schedule().sigma(TOP_T), "pure noise"


def check_noise_range(model: str, method: str, settings: Mapping[str, Any], kind: str, limit: float | None = None) -> None:
    """An InputError when ``method`` with ``settings`` would start above the noise range of ``model``."""
    limit = prior_range(model) if limit is None else limit
    if limit is None or not get_method(method).uses_network:
        return
    level, how = _start(method, settings)
    if level <= limit * (1 + 1e-6):
        return
    what = f"{model} is a Gaussian denoiser trained for noise up to sigma {limit:.3g} on the model range " \
           f"({limit * 255 / 2:.0f}/255 on [0, 1])"
    if method == "sdedit":
        schedule = _schedule()
        top = max(t for t in range(TOP_T + 1) if schedule.sigma(t) <= limit) / TOP_T
        raise InputError(f"{how} = {settings.get('strength')}: {what}; use a strength <= {math.floor(top * 1000) / 1000:g} "
                         "or a diffusion model")
    if how == "pure noise":
        classical = [n for n, m in METHODS.items() if not m.uses_network and kind in m.kinds]
        raise InputError(f"method {method!r} starts from pure noise (sigma {level:.0f}), but {what}; start it from a "
                         f"classical estimate inside that range: --set methods.{method}.init=\"{classical[0]}\" "
                         f"--set methods.{method}.start_sigma={math.floor(limit * 0.9 * 100) / 100:g}")
    raise InputError(f"{how} = {level:g} is above that range: {what}; use a start_sigma <= {math.floor(limit * 1000) / 1000:g}")


def in_range(request: Any) -> Any:
    """``request`` (a Request) when its method starts inside its model's noise range; an InputError
    otherwise. ``build_request`` checks its final request (not each layer), restore() every request."""
    check_noise_range(request.model, request.method, request.settings, request.operator.kind)
    return request


def check_prior_range(request: Any, denoiser: Any) -> None:
    """restore()'s check, for every caller (the benchmark, the Python API): an InputError when the
    request's method starts above its model's range or above ``denoiser.max_sigma`` (a prior loaded
    apart from the request)."""
    in_range(request)
    limit = getattr(denoiser, "max_sigma", None)
    if limit is not None:
        check_noise_range(f"the prior (max_sigma {limit:.3g})", request.method, request.settings, request.operator.kind,
                          limit)
