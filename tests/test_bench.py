"""The benchmark harness on two tiny images with an untrained tiny network and baselines: columns,
counted NFE, budgets, and reruns that agree on every number except timings."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import torch

from guidedinv.bench.harness import (COLUMNS, TIMING_COLUMNS, CountingDenoiser, centre_crop, degrade, image_seed, list_images,
                             method_recipe, plan_runs, random_tiny_model, run_bench, steps_for_budget, task_recipe, TASKS,
                             write_outputs)
from guidedinv.errors import InputError
from guidedinv.io import write_image
from guidedinv.app.restore import restore
from guidedinv.sampler import Resampling, resampling_path

TASK_LIST = ["superres4", "deblur-gauss", "inpaint-random"]
METHODS = ["diffpir", "dps", "bicubic", "wiener", "biharmonic"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bench") / "tinyset"
    d.mkdir()
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 40), torch.linspace(0, 1, 44), indexing="ij")
    for i in range(2):
        smooth = torch.stack([0.5 + 0.3 * torch.sin(6 * xx + i), yy, 0.5 * (xx + yy)])
        write_image(d / f"img{i}.png", (smooth + 0.05 * torch.rand(3, 40, 44, generator=g)).clamp(0, 1))
    (d / "notes.txt").write_text("not an image")
    return d


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return random_tiny_model(tmp_path_factory.mktemp("model"), torch.device("cpu"))[0]


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_crops_seeds_and_image_lists(folder):
    image = torch.zeros(3, 300, 250)
    crop, box = centre_crop(image, 256)
    assert crop.shape == (3, 256, 248) and box == (22, 1, 256, 248)  # the short side rounded down to a multiple of 8
    assert list_images([folder]) == [("tinyset", folder / "img0.png"), ("tinyset", folder / "img1.png")]
    assert list_images([folder], limit=1) == [("tinyset", folder / "img0.png")]
    assert image_seed("tinyset", "img1.png") == image_seed("tinyset", "img1.png") != image_seed("tinyset", "img0.png")
    with pytest.raises(InputError, match="no such file"):
        list_images([folder / "missing"])


def test_budgets_become_steps_with_that_many_network_calls():
    base = task_recipe(TASKS["inpaint-random"])
    assert steps_for_budget(base, "diffpir", 20) == "logsnr20"
    assert steps_for_budget(base, "dps", 20) == "20"
    steps = int(steps_for_budget(base, "repaint", 20))
    s = base["methods"]["repaint"]
    path = resampling_path(steps, Resampling(s["jump_length"], s["jump_n_sample"]))
    reverse = sum(1 for a, b in zip(path, path[1:]) if b < a)
    assert reverse <= 20
    longer = resampling_path(steps + 1, Resampling(s["jump_length"], s["jump_n_sample"]))
    assert sum(1 for a, b in zip(longer, longer[1:]) if b < a) > 20  # the largest grid within the budget


def test_counting_denoiser_counts_forward_calls_and_backward_passes(tiny):
    counter = CountingDenoiser(tiny)
    x = torch.rand(1, 3, 16, 16)
    base, y, mask, _ = degrade(TASKS["superres4"], x, seed=1)
    for method, fwd, bwd in (("diffpir", 3, 0), ("dps", 3, 3)):
        counter.reset()
        restore(counter, method_recipe(base, method, 3), y, seeds=[2])
        assert (counter.calls, counter.grad_calls) == (fwd, bwd)
        assert counter.seconds > 0


def test_unknown_or_inapplicable_names_are_input_errors():
    with pytest.raises(InputError, match="unknown task"):
        plan_runs(["superres3"], None, [5])
    with pytest.raises(InputError, match="unknown method"):
        plan_runs(["superres4"], ["magic"], [5])
    with pytest.raises(InputError, match="apply to none"):
        plan_runs(["superres4"], ["wiener"], [5])
    assert plan_runs(["denoise"], ["tv_denoise", "ddnm"], [5, 7]) == [("denoise", "ddnm", 5), ("denoise", "ddnm", 7),
                                                                      ("denoise", "tv_denoise", None)]


def test_bench_writes_the_tables_and_reruns_agree(folder, tmp_path):
    kwargs = dict(tasks=TASK_LIST, methods=METHODS, nfes=[2], method_nfe={"dps": [1]}, crop=32, model="random-tiny",
                  device="cpu", use_lpips=False)
    first = run_bench([folder], **kwargs)
    written = write_outputs(first, tmp_path / "a", doc=tmp_path / "docs" / "bench.md")
    second = run_bench([folder], **kwargs)
    write_outputs(second, tmp_path / "b")

    rows = read_csv(tmp_path / "a" / "results.csv")
    assert list(rows[0]) == COLUMNS
    # 2 images x (superres: diffpir, dps, bicubic; deblur: diffpir, dps, wiener; inpaint: diffpir, dps, biharmonic)
    assert len(rows) == 2 * 9
    by = {(r["image"], r["task"], r["method"]): r for r in rows}
    assert by[("img0.png", "superres4", "diffpir")]["nfe"] == "2"
    assert (by[("img0.png", "deblur-gauss", "dps")]["nfe"], by[("img0.png", "deblur-gauss", "dps")]["backward"]) == ("1", "1")
    assert by[("img0.png", "inpaint-random", "biharmonic")]["nfe"] == "0"
    assert by[("img1.png", "superres4", "bicubic")]["crop"] == "4,6,32,32"
    assert all(r["lpips"] == "" for r in rows)  # not asked: reported missing, never a failure
    assert float(by[("img0.png", "superres4", "bicubic")]["psnr"]) > 20

    again = read_csv(tmp_path / "b" / "results.csv")
    strip = lambda rs: [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rs]  # noqa: E731
    assert strip(rows) == strip(again)
    assert all(float(r["seconds"]) > 0 for r in rows)

    summary = (tmp_path / "a" / "summary.md").read_text()
    assert "### superres4" in summary and "| tinyset | dps | 1 | 1 + 1 |" in summary
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["model"]["untrained"] and config["images"][0]["crop"] == [4, 6, 32, 32]
    assert config["tasks"]["deblur-gauss"]["recipe"]["operator"]["boundary"] == "circular"
    doc = (tmp_path / "docs" / "bench.md").read_text()
    assert doc.startswith("# Benchmarks") and "UNTRAINED RANDOM NETWORK" in doc and "### inpaint-random" in doc
    names = {p.name for p in written}
    assert {"results.csv", "summary.csv", "summary.md", "config.json", "recipes.toml"} <= names
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "plots skipped: matplotlib is not installed" in doc
    else:
        assert (tmp_path / "a" / "psnr_vs_nfe.png").is_file() and (tmp_path / "docs" / "bench" / "psnr_vs_time.png").is_file()


def test_bench_command_line(folder, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from guidedinv.cli import app

    monkeypatch.chdir(tmp_path)
    args = ["bench", str(folder), "--limit", "1", "--tasks", "denoise", "--methods", "tv_denoise", "--crop", "24", "--no-lpips",
            "--out", "out", "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "| tinyset | tv_denoise | – | 0 | 1 |" in result.output
    assert len(read_csv(tmp_path / "out" / "results.csv")) == 1
    bad = CliRunner().invoke(app, ["bench", str(folder), "--set", "operator.nonsense=1", "--tasks", "denoise", "-q"])
    assert bad.exit_code == 2 and "no such setting" in bad.stderr
