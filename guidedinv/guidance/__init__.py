"""Guidance terms: what steers the one reverse loop (see :mod:`guidedinv.guidance.base`)."""
from .base import GuidanceTerm, StepContext
from .blend import MaskedBlend
from .cfg import ClassifierFreeGuidance
from .classifier import ClassifierGuidance
from .ddrm import DDRM
from .dps import DPS
from .exact import ExactLikelihood, gaussian_posterior, operator_matrix
from .ilvr import ILVR
from .measurement import MeasurementTerm
from .pigdm import PiGDM
from .projection import Projection
from .proximal import Proximal
from .replacement import Replacement

__all__ = [
    "GuidanceTerm",
    "StepContext",
    "ClassifierGuidance",
    "ClassifierFreeGuidance",
    "MeasurementTerm",
    "DPS",
    "Projection",
    "Replacement",
    "Proximal",
    "PiGDM",
    "DDRM",
    "MaskedBlend",
    "ILVR",
    "ExactLikelihood",
    "gaussian_posterior",
    "operator_matrix",
]
