"""Moved to :mod:`guidedinv.app.solve`; this name stays so that existing scripts keep working."""
from .app.solve import *  # noqa: F401,F403
from .app.solve import __all__  # noqa: F401
