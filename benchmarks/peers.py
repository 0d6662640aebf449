"""Peer comparison: deepinv's DPS, DiffPIR, DDRM and diffusers' DDIM, RePaint with OUR network, beside ours.

Same crops, the same simulated measurement per image, the same NFE budgets, NFE counted on the one
denoiser every method calls; prints the conventions each adapter converts, a markdown table per task
with PSNR, SSIM, NFE, seconds per image and the ratios against our paired method (guidedinv/bench_peers.py
explains them), and writes results.csv, summary.csv and summary.md. Needs the optional extra:

    pip install -e '.[peers]'
    OMP_NUM_THREADS=1 python benchmarks/peers.py [IMAGES...] [--crop 64] [--nfe 20] [--ours-nfe 10,20,40]
        [--tasks superres4,deblur-gauss,inpaint-random,inpaint-box] [--peers deepinv-dps,...] [--ours ddnm,pnp,...]
        [--budget NAME=N[,N...] ...] [--out runs/peers] [--doc docs/peers.md]

--ours names our methods and the variants of guidedinv.bench.peers_run.OURS_VARIANTS (e.g. the settings a
method had before a change); --budget gives one row name (a peer, ours-METHOD, a variant) its own budgets.

A peer that cannot be imported or run is listed with the reason (the error line), never skipped silently.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from guidedinv.bench.peers_run import OURS_VARIANTS, PEER_TASKS, run_peers, write_outputs
from guidedinv.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_IMAGES = [ROOT / "sample_images" / name for name in ("astronaut.png", "chelsea.png", "coffee.png")]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _budgets(items: list[str]) -> dict[str, list[int]]:
    out = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not name.strip():
            raise InputError(f"--budget {item!r}: expected NAME=N[,N...], e.g. deepinv-dps=100")
        try:
            out[name.strip()] = _ints(values)
        except ValueError:
            raise InputError(f"--budget {item!r}: the budgets must be whole numbers, e.g. deepinv-dps=100") from None
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", type=Path, default=DEFAULT_IMAGES,
                        help="image files or folders (default: three sample_images photos)")
    parser.add_argument("--tasks", default=",".join(PEER_TASKS), help="benchmark task names (guidedinv.bench.harness.TASKS)")
    parser.add_argument("--peers", default="all", help="comma-separated peer names, or 'all'")
    parser.add_argument("--nfe", default="20", help="network-evaluation budgets of the peers")
    parser.add_argument("--ours-nfe", default="", help="budgets of ours (default: the peers' budgets, halves and doubles)")
    parser.add_argument("--ours", default="", help="our methods and variants to run (default: the peers' paired methods "
                        f"and pnp); variants: {', '.join(OURS_VARIANTS)}")
    parser.add_argument("--budget", action="append", default=[], metavar="NAME=N[,N]",
                        help="budgets of one row (a peer, ours-METHOD or a variant), repeatable")
    parser.add_argument("--limit", type=int, default=0, help="first N images of each folder (0: all)")
    parser.add_argument("--crop", type=int, default=64, help="side of the centred square crop")
    parser.add_argument("--model", default="default", help="prior: default | registry name | file | random-tiny")
    parser.add_argument("--device", default="cpu", help="cpu | cuda (the peers' adapters are tested on the CPU)")
    parser.add_argument("--seed", type=int, default=0, help="added to every image's own seed")
    parser.add_argument("--no-loop-check", action="store_true", help="skip the DDIM loop check (diffusers vs ours)")
    parser.add_argument("--out", type=Path, default=Path("runs/peers"), help="folder for results.csv, summary.csv, summary.md")
    parser.add_argument("--doc", type=Path, default=None, help="also write the page (with this command line) here, e.g. docs/peers.md")
    parser.add_argument("--quiet", "-q", action="store_true", help="no per-run progress lines")
    args = parser.parse_args(argv)
    log = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    try:
        budgets = _budgets(args.budget)
        result = run_peers(args.images, tasks=[t for t in args.tasks.split(",") if t],
                           peers=None if args.peers == "all" else [p for p in args.peers.split(",") if p],
                           nfes=_ints(args.nfe), ours_nfes=_ints(args.ours_nfe) or None, limit=args.limit or None,
                           crop=args.crop, model=args.model, device=args.device, seed=args.seed,
                           loop_check=not args.no_loop_check, log=log,
                           ours=[o for o in args.ours.split(",") if o] or None, budgets=budgets)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    written = write_outputs(result, args.out)
    if args.doc is not None:
        command = "OMP_NUM_THREADS=1 python benchmarks/peers.py " + shlex.join(sys.argv[1:] if argv is None else argv)
        args.doc.parent.mkdir(parents=True, exist_ok=True)
        text = (args.out / "summary.md").read_text().split("\n", 1)
        args.doc.write_text(f"{text[0]}\n\nGenerated by (rerun to refresh; timings vary with the machine's load):\n\n"
                            f"```\n{command.strip()}\n```\n{text[1]}")
        written.append(args.doc)
    print((args.out / "summary.md").read_text())
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
