"""The README's Python examples, executed as written: every ```python block of README.md, in order,
in one namespace (a later block uses what an earlier one made), from a temporary folder that holds a
link to the repository's sample_images (the examples read sample_images/... and write into the
current folder). Change the README and this test runs the new text.

Only the prior is swapped: ``guidedinv.defaults.load_prior`` returns the tiny test prior (its schedule
and wrapper, loaded from its file) with a seeded per-pixel network in place of its UNet. The embedded
prior takes about a minute for these examples on a CPU and even the tiny UNet ~6 s per network call
at 240x320; the examples' sampler, terms, operators, recipes and file I/O run unchanged.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
from conftest import save_tiny_prior

import guidedinv.defaults as defaults

REPO = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def readme_blocks() -> list[tuple[int, str]]:
    """(first line number, code) of each ```python block of README.md."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in FENCE.finditer(text)]


class PerPixel(torch.nn.Module):
    """A stand-in network: net(x, t) -> a seeded 1x1 convolution of x (any image size, instant)."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(x)


def test_the_readme_python_examples_run_as_written(tmp_path, monkeypatch):
    blocks = readme_blocks()
    assert len(blocks) >= 2, "README.md should hold the Python API examples in ```python blocks"
    tiny = tmp_path / "tiny.safetensors"
    save_tiny_prior(tiny)
    load = defaults.load_prior

    def stand_in(model: str = "default", device="auto", dtype=None):
        prior = load(str(tiny), "cpu", dtype)
        prior.net = PerPixel()
        return prior

    monkeypatch.setattr(defaults, "load_prior", stand_in)
    work = tmp_path / "cwd"
    work.mkdir()
    (work / "sample_images").symlink_to(REPO / "sample_images", target_is_directory=True)
    monkeypatch.chdir(work)

    namespace: dict = {"__name__": "readme_example"}
    for line, code in blocks:  # line numbers in tracebacks are the README's own
        exec(compile("\n" * (line - 1) + code, str(REPO / "README.md"), "exec"), namespace)

    # the first example: coffee_x4.png (80x60) restored x4 and written to the current folder
    assert tuple(namespace["highs"].shape) == (1, 3, 240, 320)
    assert 0 <= float(namespace["highs"].min()) and float(namespace["highs"].max()) <= 1
    from PIL import Image

    with Image.open(work / "coffee_x4.restored.png") as im:
        assert im.size == (320, 240)
    # the second: the same measurement through the sampler and a proximal term assembled by hand
    assert tuple(namespace["x"].shape) == (1, 3, 240, 320) and bool(torch.isfinite(namespace["x"]).all())
