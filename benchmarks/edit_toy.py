"""Class translation on the toy models (issue 14): toy images of class a edited towards class b with
``guidedinv edit``'s engine (the "edit" task, method sdedit), judged by the separate clean classifier
(it never guides). For each strength and guidance (classifier guidance with toy-classifier on
toy-prior, or classifier-free guidance with toy-cond-prior) and scale: the fraction of translations
classified as b, the fraction still classified as a, and the mean RMS distance to the input ([0, 1]
scale). Every cell edits the same images with the same seeds (image i: seed 1000 + i). Prints a
markdown table (the toy card's).

    OMP_NUM_THREADS=1 python benchmarks/edit_toy.py --per-pair 50
"""
from __future__ import annotations

import argparse
import time

import torch

from guidedinv.app import build_request, restore
from guidedinv.toy.data import make_dataset
from guidedinv.toy.evaluate import classify, load_toy

NAMES = ("disc", "cross", "hstripes", "vstripes", "checker")
PAIRS = ((0, 1), (2, 3), (4, 0), (1, 4))


def sources(a: int, n: int, seed: int = 777) -> torch.Tensor:
    """n toy images of class a ((n, 3, 16, 16) in [0, 1]), fresh (not the training set's seed 0)."""
    images, labels = make_dataset(8 * n, seed)
    picked = images[labels == a][:n]
    assert len(picked) == n, f"too few images of class {a}"
    return picked.float() / 255


def translate(toy, guidance: str, scale: float, strength: float, b: int, x: torch.Tensor, steps: str,
              rule: str) -> torch.Tensor:
    sets = [f"methods.sdedit.strength={strength}", f'methods.sdedit.steps="{steps}"', f'methods.sdedit.rule="{rule}"']
    if guidance != "none":
        sets += [f"guidance.class={b}", f"guidance.scale={scale}"]
    if guidance == "classifier":
        sets.append('guidance.classifier="toy-classifier"')
    request = build_request("edit", sets=sets)
    prior = toy.cond_prior if guidance == "cfg" else toy.prior
    clf = toy.classifier if guidance == "classifier" else None
    return restore(prior, request, x, seeds=[1000 + i for i in range(len(x))], classifier=clf)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-pair", type=int, default=50, help="images per (a, b) pair")
    ap.add_argument("--strengths", default="0.2,0.4,0.6,0.8,1.0")
    ap.add_argument("--classifier-scales", default="1,3,10")
    ap.add_argument("--cfg-scales", default="1,3,10")
    ap.add_argument("--steps", default="logsnr20")
    ap.add_argument("--rule", default="ddpm")
    ap.add_argument("--no-unguided", action="store_true", help="skip the unguided rows")
    args = ap.parse_args()
    toy = load_toy()
    strengths = [float(s) for s in args.strengths.split(",")]
    rows = ([] if args.no_unguided else [("none", 0.0)])
    rows += [("classifier", float(s)) for s in args.classifier_scales.split(",") if s]
    rows += [("cfg", float(s)) for s in args.cfg_scales.split(",") if s]
    inputs = {a: sources(a, args.per_pair) for a, _ in PAIRS}
    pairs = ", ".join(f"{NAMES[a]} -> {NAMES[b]}" for a, b in PAIRS)
    print(f"pairs: {pairs}; {args.per_pair} images per pair ({len(PAIRS) * args.per_pair} per cell); rule {args.rule}, "
          f"steps {args.steps}; {torch.get_num_threads()} thread(s)")
    print()
    print("| guidance | scale | strength | target acc. | still source | RMS distance to input | seconds |")
    print("|---|---|---|---|---|---|---|")
    for guidance, scale in rows:
        for strength in strengths:
            start = time.perf_counter()
            hit = stay = 0
            dist = []
            for a, b in PAIRS:
                x = inputs[a]
                out = translate(toy, guidance, scale, strength, b, x, args.steps, args.rule)
                pred = classify(toy.clean_classifier, out * 2 - 1)
                hit += int((pred == b).sum())
                stay += int((pred == a).sum())
                dist += ((out - x) ** 2).mean((1, 2, 3)).sqrt().tolist()
            n = len(PAIRS) * args.per_pair
            print(f"| {guidance} | {scale:g} | {strength:g} | {hit / n:.3f} | {stay / n:.3f} | {sum(dist) / n:.3f} | "
                  f"{time.perf_counter() - start:.1f} |", flush=True)


if __name__ == "__main__":
    main()
