"""Usage mistakes that click catches (a bad option value, a missing argument, an unknown option or
command) are one line ``guidedinv: error: ...`` with exit 2, like every other user error; ``--help``
is unchanged; Ctrl-C in any command is ``guidedinv: interrupted`` and exit 130."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import save_tiny_prior
from PIL import Image

from guidedinv.cli import run

USAGE = {
    "seed-not-a-number": (["denoise", "x.png", "--seed", "abc"], "invalid value for '--seed' ('abc'): ", "guidedinv denoise --help"),
    "seed-expression": (["denoise", "x.png", "--seed", "2**70"], "invalid value for '--seed' ('2**70'): ", "guidedinv denoise"),
    "seed-equals-float": (["denoise", "x.png", "--seed=1e3"], "invalid value for '--seed' ('1e3'): ", "guidedinv denoise"),
    "batch-size-zero": (["batch", "denoise", "x.png", "-o", "out", "-b", "0"], "0", "--batch-size"),
    "batch-size-word": (["batch", "denoise", "x.png", "-o", "out", "-bx"], "invalid value for '--batch-size' / '-b' ('x')",
                        "guidedinv batch --help"),
    "missing-argument": (["denoise"], "missing argument 'image'", "guidedinv denoise --help"),
    "missing-option-value": (["denoise", "x.png", "--seed"], "option '--seed' requires an argument", "--seed"),
    "unknown-option": (["denoise", "x.png", "--bogus"], "no such option: --bogus", "guidedinv denoise --help"),
    "unknown-group-option": (["--bogus"], "no such option: --bogus", "guidedinv --help"),
    "unknown-command": (["bogus"], "no such command 'bogus'", "guidedinv --help"),
    "extra-argument": (["denoise", "x.png", "y.png"], "got unexpected extra argument(s) (y.png)", "guidedinv denoise --help"),
    "nested-missing": (["models", "download"], "missing argument 'name'", "guidedinv models download --help"),
    "nested-bad-value": (["train", "prior", "--batch", "abc"], "invalid value for '--batch' ('abc')", "guidedinv train prior --help"),
    "float-option": (["demo", "--scale", "big"], "invalid value for '--scale' ('big')", "guidedinv demo --help"),
}


def _run(monkeypatch, capsys, args: list[str]) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["guidedinv", *args])
    with pytest.raises(SystemExit) as stop:
        run()
    out, err = capsys.readouterr()
    return stop.value.code, out, err


@pytest.mark.parametrize("case", USAGE)
def test_usage_errors_are_one_line_exit_2(tmp_path, monkeypatch, capsys, case):
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    args, phrase, hint = USAGE[case]
    code, out, err = _run(monkeypatch, capsys, args)
    assert code == 2, err
    assert err.startswith("guidedinv: error: ") and err.count("\n") == 1, err
    assert phrase in err and hint in err, err
    assert "Usage:" not in err and "╭" not in err and "Traceback" not in err and out == ""
    assert not (tmp_path / "out").exists()


def test_control_characters_in_messages_are_escaped(tmp_path, monkeypatch, capsys):
    """A file name with a newline still gives one line (the error quotes it escaped)."""
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(monkeypatch, capsys, ["denoise", "a\nb.png"])
    assert code == 2 and err.count("\n") == 1 and "a\\nb.png" in err, err


def test_help_is_unchanged(monkeypatch, capsys):
    code, out, err = _run(monkeypatch, capsys, ["denoise", "--help"])
    assert code == 0 and "Usage: guidedinv denoise [OPTIONS]" in out and "--seed" in out and err == ""
    code, out, err = _run(monkeypatch, capsys, [])  # a bare command prints its help, not an error line
    assert "Usage: guidedinv [OPTIONS] COMMAND" in out + err and "guidedinv: error" not in out + err


def test_interrupt_inside_any_command_is_one_line_exit_130(monkeypatch, capsys):
    import guidedinv.demo

    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(guidedinv.demo, "mixture_demo", interrupted)
    code, out, err = _run(monkeypatch, capsys, ["demo"])
    assert (code, out, err) == (130, "", "guidedinv: interrupted\n")


def _visible(text: str) -> list[str]:
    """Lines of terminal output without colour codes, cursor moves and carriage-return redraws."""
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    return [part.strip() for line in plain.split("\n") for part in line.split("\r") if part.strip()]


def test_ctrl_c_during_a_restore(tmp_path):
    """SIGINT to a real process once its progress bar shows: one line, exit 130, no output file, no traceback."""
    save_tiny_prior(tmp_path / "tiny.safetensors")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    # TTY_COMPATIBLE: rich draws the bar on a pipe, so the test sees when sampling starts
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TTY_COMPATIBLE": "1", "COLUMNS": "100"}
    cmd = [sys.executable, "-m", "guidedinv", "denoise", "x.png", "--model", "tiny.safetensors",
           "--set", 'methods.pnp.steps="1000"', "-o", "out.png"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: proc.stderr.read1(4096), b"")), daemon=True)
    reader.start()
    deadline = time.time() + 120
    while b"sampling" not in b"".join(chunks) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, b"".join(chunks).decode(errors="replace")
    time.sleep(0.3)  # a few steps in
    proc.send_signal(signal.SIGINT)
    try:
        out = proc.stdout.read()
        proc.wait(timeout=60)
    finally:
        proc.kill()
    reader.join(10)
    err = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 130, err
    assert _visible(err)[-1] == "guidedinv: interrupted", err
    assert "Traceback" not in err and out == b""
    assert not (tmp_path / "out.png").exists() and not (tmp_path / "out.recipe.toml").exists()
