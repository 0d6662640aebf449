"""The registry of methods: every guided and classical method, one object each (see :mod:`.base`).

Adding a method is one file in this folder that defines ``METHOD`` (a :class:`~.base.Method`) and
one entry in ``_ALL`` below; the command line, recipes, benchmark and batch runner pick it up.
"""
from __future__ import annotations

from ...errors import InputError
from . import classical, daps, ddnm, ddrm, diffpir, dps, pigdm, pnp, repaint, sdedit
from .base import ClassicalMethod, Cost, GuidedMethod, Method, Plan, PlanInput, Setting

__all__ = ["METHODS", "get_method", "method_names", "guided_names", "classical_names", "methods_for_kind", "Method",
           "GuidedMethod", "ClassicalMethod", "Setting", "Plan", "PlanInput", "Cost"]

_ALL: tuple[Method, ...] = (
    pnp.METHOD,
    diffpir.METHOD,
    ddnm.METHOD,
    repaint.METHOD,
    dps.METHOD,
    pigdm.METHOD,
    ddrm.METHOD,
    daps.METHOD,
    sdedit.METHOD,
    *classical.METHODS,
)
METHODS: dict[str, Method] = {m.name: m for m in _ALL}


def get_method(name: str) -> Method:
    """The method called ``name``; an InputError listing the known ones otherwise."""
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        raise InputError(f"unknown method {name!r}; choose from {', '.join(METHODS)}") from None


def method_names() -> tuple[str, ...]:
    return tuple(METHODS)


def guided_names() -> tuple[str, ...]:
    return tuple(n for n, m in METHODS.items() if m.uses_network)


def classical_names() -> tuple[str, ...]:
    return tuple(n for n, m in METHODS.items() if not m.uses_network)


def methods_for_kind(kind: str) -> tuple[str, ...]:
    """The methods that solve an operator kind (inpaint, downsample, blur, identity)."""
    return tuple(n for n, m in METHODS.items() if kind in m.kinds)
