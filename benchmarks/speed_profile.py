"""Speed profile: time per network evaluation against time per sampler step, for each method.

For each task and method the sampler runs ``--steps`` steps on one image with the network wrapped
(forward calls counted and timed: :class:`guidedinv.bench.harness.CountingDenoiser`) and each guidance term
wrapped (both hooks timed; DPS's backward pass through the network happens inside its hook, so it
shows there). What is left of a step is the loop and the step rule. Prints a markdown table:

    network ms / call   the forward pass alone
    step ms             wall time of the whole run / reverse steps
    guidance ms / step  the terms' hooks (data steps, projections, DPS's gradient)
    loop+rule ms / step the rest: the loop's bookkeeping, the step rule, noise draws
    loop % of network   loop+rule time / network time (the loop's own overhead)

The network is the default prior when this install has it, else a network of the default prior's
training configuration (32 channels, levels 1,2,2,2, 2 res blocks, attention only in the middle
block) with random weights: timing does not depend on the weights. CPU by default; --device cuda
synchronises around every timed piece. Warm starts are left out (pnp runs from noise here): a
classical init is one solve before the loop, not a per-step cost.

    OMP_NUM_THREADS=1 python benchmarks/speed_profile.py [--size 256] [--steps 10] [--device cpu] [--doc docs/speed_profile.md]
"""
from __future__ import annotations

import argparse
import math
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

from guidedinv.app.measure import build_operator, simulate_measurement
from guidedinv.app.methods import get_method
from guidedinv.app.request import Request, apply_overrides, parse_request
from guidedinv.app.solve import plan_method
from guidedinv.bench.harness import TASKS, CountingDenoiser, method_request, task_recipe
from guidedinv.defaults import EMBEDDED, WEIGHTS_DIR, load_prior, pick_device
from guidedinv.guidance.base import GuidanceTerm
from guidedinv.noise import NoiseSource
from guidedinv.rules import make_rule
from guidedinv.sampler import sample


class TimedTerm(GuidanceTerm):
    """A guidance term with both hooks timed (synchronised on CUDA)."""

    def __init__(self, inner: GuidanceTerm, device: torch.device) -> None:
        self.inner, self.device, self.seconds = inner, device, 0.0
        self.needs_grad, self.sigma_window = inner.needs_grad, inner.sigma_window

    def active(self, ctx):  # noqa: ANN001, D102
        return self.inner.active(ctx)

    def _timed(self, hook, ctx, value):  # noqa: ANN001
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        out = hook(ctx, value)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds += time.perf_counter() - start
        return out

    def correct_x0(self, ctx, x0):  # noqa: ANN001, D102
        return self._timed(self.inner.correct_x0, ctx, x0)

    def correct_sample(self, ctx, x_next):  # noqa: ANN001, D102
        return self._timed(self.inner.correct_sample, ctx, x_next)


def the_model(device: torch.device, work: Path):
    if (WEIGHTS_DIR / EMBEDDED["default"]).is_file():
        return load_prior("default", device), "default prior"
    from guidedinv.models.adm import ADMConfig, build_network
    from guidedinv.training import export_safetensors

    cfg = ADMConfig(model_channels=32, num_res_blocks=2, channel_mult=(1, 2, 2, 2), attention_ds=(), out_channels=3,
                    head_channels=None, num_heads=1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = build_network(cfg)
    path = export_safetensors(net, cfg, work / "arch.safetensors", schedule="linear", prediction="v", kind="prior")
    return load_prior(str(path), device), "random weights, default prior's architecture"


def profile(counter: CountingDenoiser, request: Request, size: int, device: torch.device, budget: int | None) -> dict:
    """One run of the request's method (``budget`` None), or of the unguided sampler (DDIM on a
    "logsnrN" grid of ``budget`` steps, no terms) on the request's measurement."""
    hw = (size, size)
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(1, 3, size // 8, size // 8, generator=g), size=hw, mode="bicubic").clamp(0, 1)
    measured = simulate_measurement(request, x)  # the request's seed (0): mask 0, noise measurement_seed(0)
    y_model = measured.operator.to_model_range(measured.y).to(device)
    operator = measured.operator if measured.mask is None else build_operator(request, hw, measured.mask.to(device))
    if budget is not None:
        terms, rule, steps, resample = [], make_rule("ddim"), f"logsnr{budget}", None
    else:
        plan = plan_method(request, operator, y_model)
        terms, rule, steps, resample = [TimedTerm(t, device) for t in plan.terms], plan.rule, plan.steps, plan.resample
    counter.reset()
    reverse = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    sample(counter, (1, 3, *hw), NoiseSource.from_seeds([request.seed]), steps=steps, rule=rule, terms=terms, resample=resample,
           callback=lambda info: reverse.append(info.index), device=device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    total = time.perf_counter() - start
    guidance = sum(t.seconds for t in terms)
    n = len(reverse)
    rest = total - counter.seconds - guidance
    return {"steps": n, "nfe": counter.calls, "backward": counter.grad_calls, "net_ms": 1000 * counter.seconds / max(counter.calls, 1),
            "step_ms": 1000 * total / n, "guidance_ms": 1000 * guidance / n, "loop_ms": 1000 * rest / n,
            "loop_pct": 100 * rest / counter.seconds if counter.seconds else math.nan}


def _from_noise(request: Request) -> Request:
    """The request without its warm start: a classical init is a one-off solve before the loop, not a
    per-step cost, and would otherwise be spread over the steps as loop time."""
    recipe = request.recipe
    table = {k: v for k, v in recipe["methods"][request.method].items() if k not in ("init", "start_sigma")}
    return parse_request({**recipe, "methods": {request.method: table}}, f"{request.method} from noise")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--steps", type=int, default=10, help="network-evaluation budget per run")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--tasks", default="superres4,deblur-gauss,inpaint-random", help="benchmark task names")
    parser.add_argument("--reflect-steps", type=int, default=2,
                        help="also time DiffPIR on deblur-gauss with the recipe's reflect boundary at this many steps "
                             "(0: skip): its data step is then a conjugate-gradient solve (DDNM's pseudo-inverse too, "
                             "slower still, so it is left out)")
    parser.add_argument("--reflect-size", type=int, default=64,
                        help="image side for the reflect rows (each CG solve takes minutes at 256 on one CPU thread)")
    parser.add_argument("--doc", type=Path, default=None, help="also write the table to this markdown page")
    args = parser.parse_args()
    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    torch.set_num_threads(1) if args.device == "cpu" else None
    device = pick_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        denoiser, what = the_model(device, Path(tmp))
    counter = CountingDenoiser(denoiser)
    with torch.no_grad():
        counter(torch.zeros(1, 3, args.size, args.size, device=device), torch.full((1,), 500.0, device=device))  # warm-up
    params = sum(p.numel() for p in denoiser.parameters()) / 1e6
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    say(f"Speed profile: {args.size}x{args.size}, budget {args.steps} network calls per run, {device} ({dev_name}), "
          f"{torch.get_num_threads()} thread(s), torch {torch.__version__}; network: {what}, {params:.2f}M parameters\n")
    say("| task | method | steps | NFE (fwd + bwd) | network ms / call | step ms | guidance ms / step | loop+rule ms / step "
          "| loop % of network |\n|---|---|---|---|---|---|---|---|---|")
    runs = []  # (task label, method label, request, image side, budget of the unguided run or None)
    for task in args.tasks.split(","):
        base = task_recipe(TASKS[task])
        runs.append((task, "unguided", parse_request(base), args.size, args.steps))
        runs += [(task, m, _from_noise(method_request(base, m, args.steps)), args.size, None)
                 for m in TASKS[task].methods if get_method(m).uses_network]
    if args.reflect_steps:
        reflect = apply_overrides(task_recipe(TASKS["deblur-gauss"]), ['operator.boundary="reflect"'])
        label = f"deblur-gauss, reflect, {args.reflect_size}x{args.reflect_size}"
        runs += [(label, "unguided", parse_request(reflect), args.reflect_size, args.reflect_steps),
                 (label, "diffpir", method_request(reflect, "diffpir", args.reflect_steps), args.reflect_size, None)]
    for task, method, request, size, budget in runs:
        r = profile(counter, request, size, device, budget)
        nfe = f"{r['nfe']}" + (f" + {r['backward']}" if r["backward"] else "")
        say(f"| {task} | {method} | {r['steps']} | {nfe} | {r['net_ms']:.1f} | {r['step_ms']:.1f} | {r['guidance_ms']:.1f} | "
              f"{r['loop_ms']:.1f} | {r['loop_pct']:.1f} |")
    if args.doc is not None:
        command = "OMP_NUM_THREADS=1 python benchmarks/speed_profile.py " + shlex.join(sys.argv[1:])
        about = (__doc__ or "").split("\n\n")[1:4]
        args.doc.parent.mkdir(parents=True, exist_ok=True)
        args.doc.write_text("# Speed profile\n\nGenerated by this command (do not edit by hand; rerun it to refresh):\n\n"
                            f"```\n{command}\n```\n\n" + "\n\n".join(about) + "\n\n" + "\n".join(lines) + "\n")
        print(f"wrote {args.doc}")


if __name__ == "__main__":
    main()
