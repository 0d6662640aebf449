"""``guidedinv batch --samples N --save-samples [--uncertainty]``: per item the mean as its output,
its samples as ID.sample-K.png beside it (the restore commands' naming), listed in the report; an
item is done only with all its files; refusals (a deterministic method, fewer than 2 samples, an
output name that clashes) are one line, exit 2, before any model loads, with nothing written.

Tiny: a tiny untrained prior, 10x12 inputs super-resolved x2 by DDNM in 3 steps, whole images."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import save_tiny_prior
from PIL import Image

from guidedinv.app.batch.items import Item
from guidedinv.app.batch.names import check_outputs
from guidedinv.cli import run
from guidedinv.errors import InputError
from guidedinv.io import read_image

FAST = ["--model", "tiny.safetensors", "--tile", "0", "--set", "operator.scale=2", "--set", 'method="ddnm"',
        "--set", 'methods.ddnm.steps="logsnr3"']


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("batch_samples")
    save_tiny_prior(d / "tiny.safetensors")
    rng = np.random.default_rng(0)
    for name in ("in/a.png", "in/sub/c.png"):
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(d / name)
    Image.fromarray(rng.integers(0, 65536, (10, 12), dtype=np.uint16)).save(d / "in" / "g16.png")  # grey, 16 bits
    return d


def batch(monkeypatch, capsys, work: Path, *args: str) -> tuple[int, str, str]:
    monkeypatch.chdir(work)
    monkeypatch.setattr(sys, "argv", ["guidedinv", "batch", "superres", *FAST, *args])
    with pytest.raises(SystemExit) as stop:
        run()
    out = capsys.readouterr()
    return int(stop.value.code or 0), out.out, out.err


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im).astype(np.int64)


def records(folder: Path) -> dict[str, dict]:
    return {r["id"]: r for r in json.loads((folder / "report.json").read_text())["items"]}


def test_samples_are_saved_beside_each_mean_listed_and_resumed(work, monkeypatch, capsys):
    n = 3
    code, out, err = batch(monkeypatch, capsys, work, "in", "-o", "out", "--samples", str(n), "--save-samples", "--uncertainty")
    assert code == 0, err
    assert "3 restored, 0 already done, 0 failed of 3 items" in out
    folder = work / "out"
    recs = records(folder)
    for item_id, stem, shape, levels in (("a.png", "a", (20, 24, 3), 255), ("sub/c.png", "sub/c", (20, 24, 3), 255),
                                         ("g16.png", "g16", (20, 24), 65535)):
        rec = recs[item_id]
        names = [f"{stem}.sample-{k}.png" for k in range(n)]
        assert rec["status"] == "done" and rec["sample_files"] == names and rec["uncertainty"] == f"{stem}.std.png"
        assert not (folder / f"{stem}.sample-{n}.png").exists()
        mean, samples = pixels(folder / rec["output"]), np.stack([pixels(folder / name) for name in names])
        assert mean.shape == samples.shape[1:] == shape  # the output's channels and bit depth, as restore writes them
        assert samples.std(0).max() > levels / 25  # the samples differ: the mean below is not one image written n times
        # The mean is taken of the float samples and then rounded to 8 bits (off by at most 1/2 level), each
        # saved sample is rounded too (its mean is off by at most 1/2 level): at most 1 level apart, 1/255
        # (1/65535 for a 16-bit input).
        assert np.abs(n * mean - samples.sum(0)).max() <= n
        assert read_image(folder / names[0]).bit_depth == read_image(folder / rec["output"]).bit_depth == (8 if levels == 255 else 16)
        meta = read_image(folder / names[1]).metadata
        assert meta["guidedinv:sample"] == "1" and meta["guidedinv:samples"] == str(n) and meta["guidedinv:item"] == item_id
    # sample 0 is the one-sample result: the same batch without --samples writes it as the output
    code, _, err = batch(monkeypatch, capsys, work, "in", "-o", "one", "-q")
    assert code == 0, err
    assert np.array_equal(pixels(work / "one" / "a.png"), pixels(folder / "a.sample-0.png"))

    # resumed: an item is done only with all its samples; the one missing one is redone, identically
    before = {p: p.read_bytes() for p in folder.rglob("*.png")}
    (folder / "sub" / "c.sample-2.png").unlink()
    code, out, err = batch(monkeypatch, capsys, work, "in", "-o", "out", "--samples", str(n), "--save-samples", "--uncertainty")
    assert code == 0, err
    assert "1 restored, 2 already done, 0 failed of 3 items" in out
    assert {p: p.read_bytes() for p in folder.rglob("*.png")} == before
    recs = records(folder)
    assert recs["a.png"]["status"] == "skipped" and recs["sub/c.png"]["status"] == "done"
    assert recs["a.png"]["sample_files"] == [f"a.sample-{k}.png" for k in range(n)]


@pytest.mark.parametrize("args, needle", [
    (["--set", 'method="pnp"', "--samples", "3", "--save-samples"],
     "--samples 3: samples = 3: method pnp is deterministic (no posterior spread)"),
    (["--save-samples"], "--save-samples needs --samples N with N >= 2 (the spread of one sample is unknown)"),
    (["--samples", "1", "--save-samples"], "--save-samples needs --samples N with N >= 2"),
])
def test_samples_of_one_or_of_a_deterministic_method_are_refused_up_front(work, monkeypatch, capsys, args, needle):
    code, out, err = batch(monkeypatch, capsys, work, "in", "-o", "refused", *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and needle in err, err
    assert not (work / "refused").exists()


def test_a_sample_name_that_is_another_output_or_an_input_is_refused_up_front(work, monkeypatch, capsys):
    (work / "clash.csv").write_text("input,output\nin/a.png,x.png\nin/sub/c.png,X.Sample-1.png\n")
    code, out, err = batch(monkeypatch, capsys, work, "--manifest", "clash.csv", "-o", "clash", "--samples", "2", "--save-samples")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "the sample 1 of item x.png would be X.Sample-1.png, the output of item X.Sample-1.png" in err
    assert not (work / "clash").exists()

    kept = work / "kept"  # an input inside the output folder, where an item's sample 0 would go
    kept.mkdir()
    (kept / "y.sample-0.png").write_bytes((work / "in" / "a.png").read_bytes())
    (work / "inside.csv").write_text("input,output\nkept/y.sample-0.png,y.png\n")
    code, out, err = batch(monkeypatch, capsys, work, "--manifest", "inside.csv", "-o", "kept", "--samples", "2", "--save-samples")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "sample 0 of item y.png" in err and "is also the input of item y.png" in err
    assert sorted(p.name for p in kept.iterdir()) == ["y.sample-0.png"]
    assert (kept / "y.sample-0.png").read_bytes() == (work / "in" / "a.png").read_bytes()


def test_only_the_samples_written_and_the_map_asked_for_clash(tmp_path):
    items = [Item("a", tmp_path / "a.png", "a.png"), Item("b", tmp_path / "b.png", "a.sample-2.png"),
             Item("c", tmp_path / "c.png", "a.sample-01.png"), Item("d", tmp_path / "d.png", "a.STD.png")]
    check_outputs(items[:3], tmp_path / "out", [], uncertainty=True, samples=2)  # sample 2 and "01" are not written
    with pytest.raises(InputError, match=r"^the sample 2 of item a would be a.sample-2.png, the output of item b;"):
        check_outputs(items[:3], tmp_path / "out", [], samples=3)
    check_outputs([items[0], items[3]], tmp_path / "out", [], samples=3)  # no map asked for
    with pytest.raises(InputError, match=r"^the uncertainty map of item a would be a.STD.png, the output of item d;"):
        check_outputs([items[0], items[3]], tmp_path / "out", [], uncertainty=True)
