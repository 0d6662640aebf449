"""``guidedinv eval`` through a subprocess: PSNR against a hand-computed value, the pairing rule on
folders, the CSV and JSON files, and bad input as one line with exit code 2."""
from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
OFFSET = 10  # grey levels added to every sample of the shifted output


def _save(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    ref = rng.integers(20, 200, (24, 32, 3))  # room for the offset: nothing clips
    _save(d / "refs" / "foo.png", ref)
    _save(d / "refs" / "bar.png", rng.integers(0, 256, (24, 32, 3)))
    _save(d / "refs" / "sub" / "baz.png", rng.integers(0, 256, (16, 16)))
    _save(d / "refs" / "lonely.png", rng.integers(0, 256, (16, 16)))
    _save(d / "outs" / "foo.superres.png", ref + OFFSET)  # pairs with foo.png by its first dot part
    _save(d / "outs" / "bar.png", rng.integers(0, 256, (24, 32, 3)))  # exact stem
    _save(d / "outs" / "sub" / "baz.ddnm.x4.png", rng.integers(0, 256, (16, 16)))  # relative path, parts dropped
    _save(d / "outs" / "unmatched.png", rng.integers(0, 256, (16, 16)))
    _save(d / "wrong_size.png", rng.integers(0, 256, (12, 32, 3)))
    return d


def cli(work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "guidedinv", "eval", *args], cwd=work, env=ENV, capture_output=True,
                          text=True, timeout=300)


def test_psnr_of_a_constant_offset_is_the_hand_computed_value(work):
    done = cli(work, "outs/foo.superres.png", "refs/foo.png", "--json", "one.json")
    assert done.returncode == 0, done.stderr
    expected = 10 * math.log10(1 / (OFFSET / 255) ** 2)  # MSE = (10/255)^2 on every sample: 28.13 dB
    row = json.loads((work / "one.json").read_text())["pairs"][0]
    assert row["psnr"] == pytest.approx(expected, abs=1e-4)
    assert 0.9 < row["ssim"] < 1  # a pure brightness shift: structure and contrast intact, luminance not
    assert f"{expected:.2f}" in done.stdout and "mean of 1" in done.stdout


def test_folders_pair_by_stem_and_report_the_unpaired(work):
    done = cli(work, "outs", "refs", "--csv", "all.csv", "--json", "all.json")
    assert done.returncode == 0, done.stderr
    data = json.loads((work / "all.json").read_text())
    pairs = {Path(p["output"]).as_posix(): Path(p["reference"]).as_posix() for p in data["pairs"]}
    assert pairs == {"outs/bar.png": "refs/bar.png", "outs/foo.superres.png": "refs/foo.png",
                     "outs/sub/baz.ddnm.x4.png": "refs/sub/baz.png"}
    assert [Path(p).name for p in data["unpaired_outputs"]] == ["unmatched.png"]
    assert [Path(p).name for p in data["unpaired_references"]] == ["lonely.png"]
    assert data["mean"]["count"] == 3
    assert data["mean"]["psnr"] == pytest.approx(sum(p["psnr"] for p in data["pairs"]) / 3)
    assert "unmatched.png" in done.stderr and "lonely.png" in done.stderr
    rows = list(csv.DictReader((work / "all.csv").read_text().splitlines()))
    assert [r["output"] for r in rows][-1] == "mean" and len(rows) == 4
    assert float(rows[-1]["ssim"]) == pytest.approx(data["mean"]["ssim"])
    assert "mean of 3" in done.stdout
    strict = cli(work, "outs", "refs", "--strict")
    assert strict.returncode == 2 and strict.stderr.count("\n") == 1 and "unmatched.png" in strict.stderr


@pytest.mark.parametrize(
    "args, words",
    [
        (["wrong_size.png", "refs/foo.png"], ["wrong_size.png is 32x12", "refs/foo.png is 32x24"]),
        (["missing.png", "refs"], ["OUTPUTS missing.png", "no such file"]),
        (["outs", "no_refs"], ["REFERENCES no_refs", "no such file"]),
        (["outs/unmatched.png", "refs"], ["no output in outs/unmatched.png pairs with a reference"]),
    ],
    ids=["size-mismatch", "missing-output", "missing-references", "nothing-pairs"],
)
def test_bad_input_is_one_line_and_exit_code_2(work, args, words):
    done = cli(work, *args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("guidedinv: error: ") and done.stderr.count("\n") == 1, done.stderr
    for word in words:
        assert word in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_eval_never_writes_over_a_scored_image(tmp_path, monkeypatch, capsys):
    import sys

    from PIL import Image

    from guidedinv.cli import run

    Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / "a.png")
    Image.new("RGB", (8, 8), (12, 20, 30)).save(tmp_path / "b.png")
    (tmp_path / "ab.csv").symlink_to(tmp_path / "b.png")
    for args, needle in ((["--csv", "ab.csv"], "is also a scored image"), (["--json", "a.csv"], "must end in .json")):
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(sys, "argv", ["guidedinv", "eval", "a.png", "b.png", *args])
        before = (tmp_path / "b.png").read_bytes()
        try:
            run()
            code = 0
        except SystemExit as stop:
            code = stop.code
        err = capsys.readouterr().err
        assert code == 2 and needle in err, err
        assert (tmp_path / "b.png").read_bytes() == before and not (tmp_path / "a.csv").exists()
