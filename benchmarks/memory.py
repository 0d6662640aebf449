"""Peak memory and time against image size, under the default memory budget (guidedinv/memory.py).

A restoration per task and size (default: one pnp step with the embedded prior, through
guidedinv.app's build_request / restore), each in a fresh process so that no size inherits another's
heap; prints one markdown table:

    OMP_NUM_THREADS=2 python benchmarks/memory.py --sizes 0.25,1,4,12,24 --tasks denoise,deblur

Columns: peak = RSS above the start of restore() (guidedinv.bench.instruments.PeakMemory; on CUDA
the device's allocated memory), estimate = guidedinv.memory_estimate.estimate_for (what a request
would be refused on), image = one float32 copy of the 3-channel output, copies = (peak - the chunk's
activations) / image: the image-sized buffers the method holds. The network's part is flat beyond
the budget; only the image-sized buffers grow. A 64x96 restoration first, outside the measurement,
pays the one-time costs (imports, kernels, the network's cost measurement: the warm-up column).

With --calls it instead times ONE network call of the embedded prior per output size (a square
image), user and system CPU time apart, for four settings: the tiles of the image in one call or in
chunks under the budget, with glibc's allocator as it comes (GUIDEDINV_MALLOPT=0) or tuned
(guidedinv.memory.tune_allocator):

    OMP_NUM_THREADS=1 python benchmarks/memory.py --calls 256,512,1024 --threads 1
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

SETTINGS = {  # label: (environment, one call for all tiles)
    "one call, glibc as is": ({"GUIDEDINV_MALLOPT": "0"}, True),
    "chunks, glibc as is": ({"GUIDEDINV_MALLOPT": "0"}, False),
    "one call, mallopt": ({}, True),
    "chunks, mallopt (default)": ({}, False),
}


def size_of(mpx: float) -> tuple[int, int]:
    """Height and width of a 3:2 image of ``mpx`` megapixels, multiples of 8."""
    h = 8 * round(math.sqrt(mpx * 1e6 / 1.5) / 8)
    return h, 8 * round(1.5 * h / 8)


def restoration_row(args: argparse.Namespace) -> dict:
    """One task at one size (run in a child process)."""
    import torch

    from guidedinv.app import build_request, restore, simulate_measurement
    from guidedinv.bench.instruments import CountingDenoiser, PeakMemory
    from guidedinv.defaults import load_prior
    from guidedinv.memory import memory_budget
    from guidedinv.memory_estimate import estimate_for
    from guidedinv.tiling import tile_progress

    torch.set_num_threads(args.threads)
    prior = load_prior(args.model, device=args.device)
    device = next(prior.parameters()).device
    request = build_request(args.row_task, sets=[f'method="{args.method}"', f'methods.{args.method}.steps="{args.steps}"'])
    h, w = size_of(args.row_mpx)
    base = torch.rand(1, 3, h // 16, w // 16, generator=torch.Generator().manual_seed(0))
    clean = torch.nn.functional.interpolate(base, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
    y = simulate_measurement(request, clean).y.to(device)
    del base, clean
    gradient = args.method == "dps"
    estimate = estimate_for(prior, h, w, gradient=gradient)
    with PeakMemory(device) as warm:  # one-time costs outside the table: imports, kernels, the cost measurement
        restore(prior, request, y[..., :64, :96], seeds=[0])
    counting = CountingDenoiser(prior)
    chunks = []
    with tile_progress(lambda done, total: chunks.append((done, total))), PeakMemory(device) as peak:
        start = time.perf_counter()
        restore(counting, request, y, seeds=[0])
        seconds = time.perf_counter() - start
    image = 3 * h * w * 4
    return {"task": args.row_task, "h": h, "w": w, "peak_mb": peak.mb, "estimate_mb": estimate.total / 2**20,
            "image_mb": image / 2**20, "copies": (peak.mb * 2**20 - estimate.network) / image, "seconds": seconds,
            "calls": counting.calls, "tiles": estimate.plan.tiles, "chunk": estimate.plan.chunk,
            "chunks": sum(1 for done, _ in chunks if done > 0), "budget_mb": memory_budget(device) / 2**20, "warm_mb": warm.mb}


def call_row(args: argparse.Namespace) -> dict:
    """One network call at one size (run in a child process)."""
    import torch

    from guidedinv.bench.instruments import PeakMemory
    from guidedinv.defaults import load_prior
    from guidedinv.tiling import Tiling

    torch.set_num_threads(args.threads)
    prior = load_prior(args.model, device="cpu")
    if args.one_call:
        prior.tiling = Tiling(prior.tiling.size, prior.tiling.overlap, max_tiles=10**9, budget=2**50)
    size = args.call_size
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    t = torch.full((1,), 500.0)
    best: dict = {}
    with torch.no_grad():
        prior(x[..., :64, :64], t)  # warm-up: kernels, the cost measurement
        for _ in range(args.repeat):  # timed outside PeakMemory: its malloc_trim would hand the heap back
            before = resource.getrusage(resource.RUSAGE_SELF)
            start = time.perf_counter()
            prior(x, t)
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_SELF)
            row = {"wall": wall, "user": after.ru_utime - before.ru_utime, "sys": after.ru_stime - before.ru_stime,
                   "faults": after.ru_minflt - before.ru_minflt}
            if not best or row["user"] + row["sys"] < best["user"] + best["sys"]:
                best = row
        with PeakMemory("cpu") as peak:
            prior(x, t)
    return {**best, "size": size, "peak_mb": peak.mb, "cpu_us_per_px": 1e6 * (best["user"] + best["sys"]) / size**2}


def child(args: argparse.Namespace, extra: list[str], env: dict[str, str] | None = None) -> dict:
    cmd = [sys.executable, __file__, *extra, "--threads", str(args.threads), "--model", args.model, "--device", args.device,
           "--method", args.method, "--steps", args.steps, "--repeat", str(args.repeat)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0.25,1,4,12,24", help="megapixels (3:2 images)")
    parser.add_argument("--tasks", default="denoise,deblur")
    parser.add_argument("--method", default="pnp")
    parser.add_argument("--steps", default="1", help="the method's steps (one network call per step for pnp)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    parser.add_argument("--calls", default=None, help="sizes in px: time one network call per size and setting instead")
    parser.add_argument("--repeat", type=int, default=2, help="--calls: best of this many calls")
    parser.add_argument("--row-task", help=argparse.SUPPRESS)
    parser.add_argument("--row-mpx", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--call-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--one-call", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row_task:
        return print(json.dumps(restoration_row(args)))
    if args.call_size:
        return print(json.dumps(call_row(args)))
    if args.calls:
        print(f"One network call of the {args.model} prior, {args.threads} thread(s), best of {args.repeat} by CPU time; "
              "us/px = CPU (user + system) time per output pixel\n")
        print("| size | setting | wall s | user s | sys s | us/px | peak MB | minor faults |")
        print("|---|---|---|---|---|---|---|---|")
        for size in (int(s) for s in args.calls.split(",")):
            for label, (env, one) in SETTINGS.items():
                r = child(args, ["--call-size", str(size)] + (["--one-call"] if one else []), env)
                print(f"| {size} | {label} | {r['wall']:.2f} | {r['user']:.2f} | {r['sys']:.2f} | {r['cpu_us_per_px']:.1f} | "
                      f"{r['peak_mb']:.0f} | {r['faults']} |", flush=True)
        return None
    print(f"{args.method}, {args.steps} step(s), {args.model} prior, {args.device}, {args.threads} thread(s), "
          "default memory budget; each row a fresh process\n")
    print("| task | size | Mpx | peak MB | estimate MB | image MB | copies | s | tiles | chunk | budget MB | warm-up MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for mpx in (float(s) for s in args.sizes.split(",")):
        for task in args.tasks.split(","):
            r = child(args, ["--row-task", task, "--row-mpx", str(mpx)])
            print(f"| {r['task']} | {r['w']}x{r['h']} | {r['w'] * r['h'] / 1e6:.2f} | {r['peak_mb']:.0f} | {r['estimate_mb']:.0f} | "
                  f"{r['image_mb']:.0f} | {r['copies']:.1f} | {r['seconds']:.1f} | {r['tiles']} | {r['chunk']} | "
                  f"{r['budget_mb']:.0f} | {r['warm_mb']:.0f} |", flush=True)
    return None


if __name__ == "__main__":
    main()
