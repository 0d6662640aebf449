"""The application layer above the engine: presets (package data), requests (parsed and checked
once), the registry of methods, measurements, restoration, batch and evaluation.

    from guidedinv.app import build_request, restore
    request = build_request("superres", sets=['methods.pnp.steps="logsnr20"'])
    highs = restore(prior, request, lows)

Names are imported on first use, so ``import guidedinv.app.methods`` (what the command line's help
reads) does not import torch.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

_NAMES = {
    "Request": "request", "build_request": "request", "parse_request": "request", "load_preset": "request",
    "apply_overrides": "request", "TASKS": "request",
    "METHODS": "methods", "get_method": "methods",
    "restore": "solve", "build_operator": "measure", "simulate_measurement": "measure",
    "Posterior": "posterior",
}
__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module 'guidedinv.app' has no attribute {name!r}")
    return getattr(import_module(f".{_NAMES[name]}", __name__), name)


def __dir__() -> list[str]:
    return __all__
