"""The benchmark harness on two tiny images with an untrained tiny network and baselines: columns,
counted NFE, budgets, and reruns that agree on every number except timings."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import torch
from conftest import save_tiny_prior

from guidedinv.app.measure import measurement_seed, simulate_measurement
from guidedinv.app.methods import get_method, guided_names, methods_for_kind
from guidedinv.app.request import KIND_OF_TASK, TASKS as PRESETS, load_preset, parse_request
from guidedinv.app.solve import restore
from guidedinv.bench.harness import (
    COLUMNS,
    GUIDED,
    TASKS,
    TIMING_COLUMNS,
    CountingDenoiser,
    centre_crop,
    degrade,
    image_seed,
    list_images,
    method_request,
    plan_runs,
    random_tiny_model,
    run_bench,
    steps_for_budget,
    task_recipe,
)
from guidedinv.bench.report import write_outputs
from guidedinv.errors import InputError
from guidedinv.io import write_image
from guidedinv.noise import NoiseSource
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


def test_tasks_compare_the_registry_methods_of_their_kind():
    from guidedinv.cli.bench import TASK_NAMES

    assert TASK_NAMES == tuple(TASKS)  # the command's help lists them without importing the harness
    assert GUIDED == guided_names()
    for task in TASKS.values():
        assert task.methods == methods_for_kind(task.kind), task.name
        assert parse_request(task_recipe(task)).operator.kind == task.kind
    with pytest.raises(ValueError, match="do not solve"):
        type(TASKS["denoise"])("x", "denoise", (), "", ("wiener",))


def test_budgets_become_steps_by_the_methods_own_rule():
    base = task_recipe(TASKS["inpaint-random"])
    assert method_request(base, "diffpir", 20).steps == "logsnr20"
    assert method_request(base, "dps", 20).steps == "20"
    for method in (m for m in GUIDED if "inpaint" in get_method(m).kinds):
        request = method_request(base, method, None)
        assert steps_for_budget(request, 20) == get_method(method).steps_for_budget(request.settings, 20)
    s = method_request(base, "repaint", 20).settings
    resample = Resampling(s["jump_length"], s["jump_n_sample"])

    def reverse_steps(num: int) -> int:
        path = resampling_path(num, resample)
        return sum(1 for a, b in zip(path, path[1:]) if b < a)

    assert reverse_steps(int(s["steps"])) <= 20 < reverse_steps(int(s["steps"]) + 1)  # the largest grid within the budget
    assert get_method("repaint").cost(s).forward == reverse_steps(int(s["steps"]))
    with pytest.raises(InputError, match="diffpir at a budget of 1"):
        method_request(base, "diffpir", 1)  # a logsnr grid needs two levels
    with pytest.raises(InputError, match="no NFE budget"):
        method_request(base, "biharmonic", 5)


@pytest.fixture(scope="module")
def tiny_prior(tmp_path_factory):
    from guidedinv.defaults import load_prior

    path = tmp_path_factory.mktemp("prior") / "tiny.safetensors"
    save_tiny_prior(path)
    return load_prior(str(path), "cpu", tile=0)


@pytest.mark.parametrize("preset", PRESETS)
def test_steps_for_budget_stays_within_the_budget_when_counted(tiny_prior, preset):
    """Every guided method on each shipped preset (its settings there, warm starts included), run at the
    steps its steps_for_budget gives: the counted forward calls stay within the budget and are its cost."""
    counter = CountingDenoiser(tiny_prior)
    base = load_preset(preset)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    measured = simulate_measurement(parse_request(base), x)
    for name in methods_for_kind(KIND_OF_TASK[preset]):
        method = get_method(name)
        if not method.uses_network:
            continue
        for nfe in (3, 12):
            request = method_request(base, name, nfe)
            counter.reset()
            restore(counter, request, measured.y, mask=measured.mask, seeds=[1])
            cost = method.cost(request.settings)
            assert counter.calls <= nfe, (preset, name, nfe, request.steps)
            assert (counter.calls, counter.grad_calls) == (cost.forward, cost.backward), (preset, name, nfe, request.steps)


def test_measurements_follow_the_one_seeding_convention():
    """degrade() is simulate_measurement: the noise from measurement_seed(image seed), the mask from the seed."""
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    recipe, measured = degrade(TASKS["denoise"], x, seed=5)
    assert recipe["seed"] == 5
    noise = NoiseSource.from_seeds([measurement_seed(5)]).randn((3, 16, 16))
    assert torch.allclose(measured.y, x + 0.05 * noise, atol=1e-6)
    recipe, measured = degrade(TASKS["inpaint-random"], x, seed=5)
    again = simulate_measurement(parse_request(recipe), x)
    assert torch.equal(measured.mask, again.mask) and torch.equal(measured.y, again.y)
    assert not torch.equal(measured.mask, degrade(TASKS["inpaint-random"], x, seed=6)[1].mask)


def test_counting_denoiser_counts_forward_calls_and_backward_passes(tiny):
    counter = CountingDenoiser(tiny)
    x = torch.rand(1, 3, 16, 16)
    base, measured = degrade(TASKS["superres4"], x, seed=1)
    for method, fwd, bwd in (("diffpir", 3, 0), ("dps", 3, 3)):
        counter.reset()
        restore(counter, method_request(base, method, 3), measured.y, seeds=[2])
        assert (counter.calls, counter.grad_calls) == (fwd, bwd)
        assert counter.seconds > 0


def test_unknown_or_inapplicable_names_are_input_errors():
    with pytest.raises(InputError, match="unknown task"):
        plan_runs(["superres3"], None, [5])
    with pytest.raises(InputError, match="unknown method"):
        plan_runs(["superres4"], ["magic"], [5])
    with pytest.raises(InputError, match="apply to none"):
        plan_runs(["superres4"], ["wiener"], [5])
    with pytest.raises(InputError, match="only guided methods have NFE budgets"):
        plan_runs(["denoise"], None, [5], {"tv_denoise": [3]})
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
    assert bad.exit_code == 2 and "operator has no key 'nonsense'" in bad.stderr
