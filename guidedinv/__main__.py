"""``python -m guidedinv`` runs the command line."""
from .cli import app

app(prog_name="guidedinv")
