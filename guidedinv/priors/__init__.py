"""Analytic priors with exact denoisers: ground truth for tests, usable anywhere a network is."""
from .gaussian import GaussianPrior
from .mixture import GaussianMixturePrior, MixtureNoisyClassifier

__all__ = ["GaussianPrior", "GaussianMixturePrior", "MixtureNoisyClassifier"]
