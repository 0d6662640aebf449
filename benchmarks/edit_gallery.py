"""Regenerate the editing gallery, docs/editing.md and docs/editing/*.png, from sample_images/ only
(photos we may redistribute): a stroke painting made realistic (SDEdit), an object removed with a
mask (strength 1 inside the mask), an ILVR generation from a reference. Every picture is made by
the ``guidedinv edit`` command printed under it (run here as a subprocess, so the page shows exactly
what ran); the results' recipes are kept in runs/edit-gallery/.

    OMP_NUM_THREADS=1 python benchmarks/edit_gallery.py
"""
from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "editing"
WORK = ROOT / "runs" / "edit-gallery"
sys.path.insert(0, str(ROOT / "benchmarks"))

from edit_photos import stroke_painting  # noqa: E402  (the same stroke simulation as the benchmark)

from guidedinv.io import read_image, write_image  # noqa: E402

PAGE = """# Editing gallery

Made by `python benchmarks/edit_gallery.py` from `sample_images/` only, with the embedded default
prior (a 2.6 M-parameter network trained on a CPU: expect plausible textures and colours, not
photographic detail). Each picture is the `--compare` output of the command under it (left: the
input, right: the result). Wall times on the machine that made the page ({threads}).

{sections}
"""

MEASURED = "\n## Measurements"  # this part of the page (edit_photos.py's table and notes) is kept as it is


def run(args: list[str]) -> tuple[str, float]:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "guidedinv", *args], check=True, cwd=ROOT)
    shown = "guidedinv " + " ".join(shlex.quote(a) for a in args)
    return shown.replace(str(WORK.relative_to(ROOT)) + "/", ""), time.perf_counter() - start


def main() -> None:
    DOCS.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    sections = []

    # 1. a stroke painting made realistic
    photo = read_image(ROOT / "sample_images" / "chelsea.png").image
    write_image(DOCS / "chelsea_strokes.png", stroke_painting(photo, median=11, colours=6))
    for strength in ("0.5", "0.7"):
        name = f"strokes_s{strength.replace('.', '')}.png"
        cmd, sec = run(["edit", "docs/editing/chelsea_strokes.png", "--strength", strength, "--seed", "1",
                        "-o", f"{WORK.relative_to(ROOT)}/strokes_{strength}.png", "--compare", f"docs/editing/{name}", "-q"])
        sections.append((f"Stroke painting to photo, strength {strength}", name, cmd, sec))

    # 2. an object removed: the mask covers it; strength 1 regenerates inside from noise, outside kept exactly
    cmd, sec = run(["edit", "sample_images/astronaut.png", "--mask", "sample_images/astronaut_mask.png", "--strength", "1",
                    "--seed", "0", "-o", f"{WORK.relative_to(ROOT)}/removed.png", "--compare", "docs/editing/removed.png", "-q"])
    sections.append(("Object removed with a mask (white = edit), strength 1", "removed.png", cmd, sec))

    # 3. ILVR: a new image with the reference's coarse structure (low-pass: downsample by 8 and back)
    for n in ("8", "16"):
        name = f"ilvr{n}.png"
        cmd, sec = run(["edit", "sample_images/coffee.png", "--reference", "sample_images/coffee.png", "--ilvr", n,
                        "--strength", "1", "--seed", "2", "-o", f"{WORK.relative_to(ROOT)}/ilvr{n}.png",
                        "--compare", f"docs/editing/{name}", "-q"])
        sections.append((f"ILVR from a reference, N = {n} (strength 1: the input is pure noise)", name, cmd, sec))

    import torch

    text = "\n".join(f"## {title}\n\n![{title}](editing/{name})\n\n    {cmd}\n\n({sec:.0f} s)\n"
                     for title, name, cmd, sec in sections)
    text = ("The stroke painting `docs/editing/chelsea_strokes.png` is `sample_images/chelsea.png` through "
            "`benchmarks/edit_photos.py`'s stroke simulation (median filter 11 px, 6 colours).\n\n" + text)
    page = ROOT / "docs" / "editing.md"
    old = page.read_text() if page.is_file() else ""
    kept = old[old.index(MEASURED):] if MEASURED in old else ""
    page.write_text(PAGE.format(threads=f"{torch.get_num_threads()} CPU thread(s)",
                                                          sections=text).rstrip() + "\n" + kept)
    print(f"wrote docs/editing.md and {len(sections)} pictures in docs/editing/")


if __name__ == "__main__":
    main()
