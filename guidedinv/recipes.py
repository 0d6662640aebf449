"""Moved to :mod:`guidedinv.app.recipes`; this name stays so that existing scripts keep working."""
from .app.recipes import *  # noqa: F401,F403
from .app.recipes import __all__  # noqa: F401
