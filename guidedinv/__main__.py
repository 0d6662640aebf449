"""``python -m guidedinv`` runs the command line."""
from .cli import run

run()
