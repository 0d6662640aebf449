"""The installed console script: --help, --version and the network-free demo."""
from __future__ import annotations

import re
import subprocess
import sys

import guidedinv


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "guidedinv", *args], capture_output=True, text=True, timeout=120)


def test_version_and_help():
    out = run("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"guidedinv {guidedinv.__version__}"
    helped = run("--help")
    assert helped.returncode == 0 and "Usage" in helped.stdout and "demo" in helped.stdout


def test_demo_reports_guided_fraction():
    out = run("demo", "-n", "400", "--steps", "ddim25", "--component", "2")
    assert out.returncode == 0, out.stderr
    fraction = float(re.search(r"fraction in component 2: ([0-9.]+)", out.stdout).group(1))
    assert fraction >= 0.99
    unguided = run("demo", "-n", "400", "--steps", "ddim25", "--component", "2", "--scale", "0")
    assert float(re.search(r"fraction in component 2: ([0-9.]+)", unguided.stdout).group(1)) < 0.35
