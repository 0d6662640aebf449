"""guidedinv.app.evaluate called directly (as a script would), and the ``guidedinv eval`` shell's light imports."""
from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from guidedinv.app.evaluate import Pair, format_table, mean_scores, pair_images, score_pairs, scores_csv, write_csv, write_json
from guidedinv.errors import InputError

ROOT = Path(__file__).resolve().parent.parent


def _save(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


@pytest.fixture()
def folders(tmp_path) -> Path:
    rng = np.random.default_rng(1)
    ref = rng.integers(20, 200, (16, 20, 3))
    _save(tmp_path / "refs" / "a.png", ref)
    _save(tmp_path / "refs" / "b.png", rng.integers(0, 256, (16, 20)))
    _save(tmp_path / "refs" / "c.png", rng.integers(0, 256, (16, 20)))
    _save(tmp_path / "outs" / "a.pnp.png", ref + 5)
    _save(tmp_path / "outs" / "b.png", rng.integers(0, 256, (16, 20, 3)))  # colour against a grey reference
    _save(tmp_path / "outs" / "z.png", rng.integers(0, 256, (16, 20)))
    _save(tmp_path / "outs" / ".hidden.png", rng.integers(0, 256, (16, 20)))  # never listed
    return tmp_path


def test_pair_score_and_write(folders):
    pairing = pair_images(folders / "outs", folders / "refs")
    assert [(p.output.name, p.reference.name) for p in pairing.pairs] == [("a.pnp.png", "a.png"), ("b.png", "b.png")]
    assert [Path(p).name for p in pairing.unpaired_outputs] == ["z.png"]
    assert [Path(p).name for p in pairing.unpaired_references] == ["c.png"]
    pairs, lone_outputs, lone_refs = pairing  # a tuple too

    rows = score_pairs(pairs)
    assert rows[0]["psnr"] == pytest.approx(10 * math.log10(1 / (5 / 255) ** 2), abs=1e-4)
    assert rows[0]["width"] == 20 and rows[0]["height"] == 16 and 0 < rows[1]["ssim"] < 1
    assert "lpips" not in rows[0]
    assert mean_scores(rows)["psnr"] == pytest.approx((rows[0]["psnr"] + rows[1]["psnr"]) / 2)
    assert format_table(rows).splitlines()[-1].startswith("mean of 2")

    write_csv(folders / "s.csv", rows)
    lines = list(csv.DictReader((folders / "s.csv").read_text().splitlines()))
    assert [r["output"] for r in lines][-1] == "mean" and float(lines[-1]["psnr"]) == pytest.approx(mean_scores(rows)["psnr"])
    assert (folders / "s.csv").read_bytes() == scores_csv(rows)
    write_json(folders / "s.json", rows, lone_outputs, lone_refs)
    data = json.loads((folders / "s.json").read_text())
    assert data["mean"]["count"] == 2 and [Path(p).name for p in data["unpaired_references"]] == ["c.png"]


def test_identical_images_and_two_named_files(folders):
    a = folders / "refs" / "a.png"
    pairing = pair_images(a, str(folders / "outs" / "z.png"))  # two files: one pair, whatever the names
    assert pairing.pairs == [Pair(folders / "refs" / "a.png", folders / "outs" / "z.png")]
    rows = score_pairs([Pair(a, a)], lpips=True)
    assert math.isinf(rows[0]["psnr"]) and "lpips" in rows[0]  # None when LPIPS cannot run offline
    write_json(folders / "same.json", rows)
    assert json.loads((folders / "same.json").read_text())["pairs"][0]["psnr"] is None  # strict JSON: inf is null


def test_bad_input_is_an_input_error(folders):
    with pytest.raises(InputError, match="no such file"):
        pair_images(folders / "missing", folders / "refs")
    small = _save(folders / "small.png", np.zeros((8, 20), np.uint8))
    with pytest.raises(InputError, match="its reference's size"):
        score_pairs([Pair(small, folders / "refs" / "b.png")])


def test_the_eval_shell_imports_no_torch():
    """cli/eval.py's own top-level imports are light: loaded under bare stand-ins for the guidedinv
    and guidedinv.cli packages (so neither __init__ runs), it must not pull torch in."""
    probe = f"""
import sys, types
for name, path in (("guidedinv", {str(ROOT / "guidedinv")!r}), ("guidedinv.cli", {str(ROOT / "guidedinv" / "cli")!r})):
    stub = types.ModuleType(name)
    stub.__path__ = [path]
    sys.modules[name] = stub
from guidedinv.cli.eval import eval_command
assert callable(eval_command)
print("torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False", "import guidedinv.cli.eval pulled in torch"
