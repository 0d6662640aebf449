"""guidedinv: guided diffusion for image editing and inverse problems.

One unconditional denoiser is the prior; guidance terms (classifier, classifier-free, measurement
consistency) steer one reverse sampler. See README.md for the command line and the Python API.

The public names below are imported on first use (PEP 562), so ``import guidedinv`` (and with it
``guidedinv --version`` / ``--help``) does not import torch; ``guidedinv.sample`` or
``from guidedinv import NoiseSource`` import their module then.
"""
from __future__ import annotations

from importlib import import_module as _import_module
from importlib.metadata import PackageNotFoundError as _PackageNotFoundError, version as _version
from types import ModuleType as _ModuleType
from typing import TYPE_CHECKING, Any

try:
    __version__ = _version("guidedinv")
except _PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"

# public name -> the submodule that defines it (tests/test_cli_light.py checks that this, __all__ and the
# TYPE_CHECKING imports below name the same things)
_LAZY = {
    "NULL_LABEL": "denoiser",
    "Denoiser": "denoiser",
    "NetworkDenoiser": "denoiser",
    "Prediction": "denoiser",
    "ClassifierFreeGuidance": "guidance",
    "ClassifierGuidance": "guidance",
    "GuidanceTerm": "guidance",
    "StepContext": "guidance",
    "NoiseSource": "noise",
    "DDIM": "rules",
    "DDPM": "rules",
    "DPMSolverPP2M": "rules",
    "Renoise": "rules",
    "StepRule": "rules",
    "make_rule": "rules",
    "Resampling": "sampler",
    "StepInfo": "sampler",
    "build_path": "sampler",
    "sample": "sampler",
    "VPSchedule": "schedule",
    "respace": "schedule",
}

__all__ = [
    "__version__",
    "NULL_LABEL",
    "Denoiser",
    "NetworkDenoiser",
    "Prediction",
    "ClassifierFreeGuidance",
    "ClassifierGuidance",
    "GuidanceTerm",
    "StepContext",
    "NoiseSource",
    "DDIM",
    "DDPM",
    "DPMSolverPP2M",
    "Renoise",
    "StepRule",
    "make_rule",
    "Resampling",
    "StepInfo",
    "build_path",
    "sample",
    "VPSchedule",
    "respace",
]

if TYPE_CHECKING:  # static analysers and IDEs see the eager imports
    from .denoiser import NULL_LABEL, Denoiser, NetworkDenoiser, Prediction
    from .guidance import ClassifierFreeGuidance, ClassifierGuidance, GuidanceTerm, StepContext
    from .noise import NoiseSource
    from .rules import DDIM, DDPM, DPMSolverPP2M, Renoise, StepRule, make_rule
    from .sampler import Resampling, StepInfo, build_path, sample
    from .schedule import VPSchedule, respace


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access and cache the name in the package."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names (loaded or not), the module's dunders and the submodules imported so far."""
    return sorted(set(__all__) | {n for n, v in globals().items() if n.startswith("__") or isinstance(v, _ModuleType)})
