"""``python -m guidedinv.toy eval``: the accuracy-vs-scale table of the toy models (TOY_CARD.md).

Prints the command line, the clean classifier's own accuracy on fresh toy images, and a markdown
table of clean-classifier accuracy of generated samples for each guidance method and scale.
"""
from __future__ import annotations

import argparse
import shlex
import sys

import torch

from .data import TOY
from .evaluate import DEFAULT_SCALES, clean_accuracy, load_toy, noisy_accuracy, scale_table


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m guidedinv.toy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("eval", help="accuracy of guided generation against the guidance scale")
    ev.add_argument("--models", default=None, help="folder with toy-*.safetensors (default: the shipped ones)")
    ev.add_argument("--per-class", type=int, default=40, help="samples per class and scale")
    ev.add_argument("--steps", default="25", help="sampler steps (DDIM, eta = 0)")
    ev.add_argument("--seed", type=int, default=1000, help="item i uses seed SEED + i")
    ev.add_argument("--classifier-scales", type=_floats, default=DEFAULT_SCALES["classifier"], help="comma-separated s")
    ev.add_argument("--cfg-scales", type=_floats, default=DEFAULT_SCALES["cfg"], help="comma-separated w")
    ev.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    models = load_toy(args.models)
    print(f"command: python -m guidedinv.toy {shlex.join(sys.argv[1:] if argv is None else argv)}")
    print(f"classes: {', '.join(f'{i} {n}' for i, n in enumerate(TOY.classes))}; {args.per_class} samples per class, "
          f"{args.steps} steps")
    print(f"clean classifier on 1000 fresh toy images (seed 12345): accuracy {clean_accuracy(models.clean_classifier, 1000):.3f}")
    noisy = ", ".join(f"t={t}: {noisy_accuracy(models.classifier, models.prior.schedule, t):.3f}" for t in (0, 250, 500, 750, 900))
    print(f"noisy classifier on 500 fresh images noised to timestep t ({models.prior.schedule.name} schedule): {noisy}")
    print()
    scales = {"none": (0.0,), "classifier": args.classifier_scales, "cfg": args.cfg_scales}
    print(scale_table(models, scales, per_class=args.per_class, steps=args.steps, seed=args.seed))


if __name__ == "__main__":
    main()
