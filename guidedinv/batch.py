"""Moved to :mod:`guidedinv.app.batch`; this name stays so that existing scripts keep working."""
from .app.batch import *  # noqa: F401,F403
from .app.batch import __all__  # noqa: F401
