"""Guidance terms: what steers the one reverse loop (see :mod:`guidedinv.guidance.base`)."""
from .base import GuidanceTerm, StepContext
from .cfg import ClassifierFreeGuidance
from .classifier import ClassifierGuidance

__all__ = ["GuidanceTerm", "StepContext", "ClassifierGuidance", "ClassifierFreeGuidance"]
