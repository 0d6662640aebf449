"""Moved to :mod:`guidedinv.app.restore`; this name stays so that existing scripts keep working."""
from .app.restore import *  # noqa: F401,F403
from .app.restore import __all__  # noqa: F401
