"""guidedinv: guided diffusion for image editing and inverse problems.

One unconditional denoiser is the prior; guidance terms (classifier, classifier-free, measurement
consistency) steer one reverse sampler. See README.md for the command line and the Python API.
"""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("guidedinv")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"

from .denoiser import NULL_LABEL, Denoiser, NetworkDenoiser, Prediction
from .guidance import ClassifierFreeGuidance, ClassifierGuidance, GuidanceTerm, StepContext
from .noise import NoiseSource
from .rules import DDIM, DDPM, DPMSolverPP2M, Renoise, StepRule, make_rule
from .sampler import Resampling, StepInfo, build_path, sample
from .schedule import VPSchedule, respace

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
