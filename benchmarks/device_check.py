"""Device check: one prepared run for an accelerator session (issue 15, item 5), under 8 minutes on one GPU.

What it does, in order, and writes as a table (markdown and JSON) under --out:

1. the CUDA tests: every test function in tests/ whose source asks ``torch.cuda.is_available()``
   (found by reading the files, so a new one joins by itself), run with pytest in a subprocess;
2. the ImageNet-256 unconditional ADM (guided-diffusion's 256x256_diffusion_uncond configuration from
   the registry; random weights, all that exists offline; the zero-initialised output layers get small
   random values so gradients are not trivially zero): milliseconds per network call in fp32 / fp16 /
   bf16 (the torso's convolutions in that dtype, as ``--dtype``), at batch 1 and batch 8;
3. the sampler's time per step over the network's: DDIM without terms, and pnp's step with the
   proximal data step of SR x4 (the default restoration), at batch 1 in fp32 and bf16; the overhead is
   step time minus the network call's time from (2);
4. peak memory (torch.cuda.max_memory_allocated, above the weights) of a DPS step (gradient of the
   measurement error through the network) over a forward-only step (DDIM, no_grad path), batch 1 and 4;
5. a check that a network call on the GPU matches the CPU's (fp32, same weights and input).

Run on the device machine with the ``device`` tool (its ``run`` verb), from the repository root:

    run(command="bash benchmarks/device_check.sh", timeout_s=540)

The wrapper sets PYTHONPATH (the device image has torch, numpy, pillow, scikit-image, typer, rich and
safetensors; nothing is installed) and keeps the log: $OUT/device_check.md, device_check.json and
device_check.log come back. About 2-4 minutes on an H100 is expected (not yet measured: no session
has been lent a machine); 540 s leaves room, and the 15-minute device budget a rerun.

On a CPU the whole path runs in seconds with a tiny configuration (an ADM of 32 channels at 16 px,
batch 2, 2 steps, one timed call each; peak memory is CUDA-only and is left out):

    OMP_NUM_THREADS=1 python benchmarks/device_check.py --tiny --no-tests --out /tmp/device_check
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from guidedinv.denoiser import NetworkDenoiser  # noqa: E402
from guidedinv.guidance import DPS, Proximal  # noqa: E402
from guidedinv.models.adm import ADMConfig, build_network  # noqa: E402
from guidedinv.models.registry import lookup  # noqa: E402
from guidedinv.noise import NoiseSource  # noqa: E402
from guidedinv.operators import Downsample  # noqa: E402
from guidedinv.rules import make_rule  # noqa: E402
from guidedinv.sampler import sample  # noqa: E402
from guidedinv.schedule import VPSchedule  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MODEL = "256x256_diffusion_uncond"
TINY = ADMConfig(model_channels=32, num_res_blocks=1, channel_mult=(1, 2), attention_ds=(2,), head_channels=16)


def cuda_tests(tests: Path = ROOT / "tests") -> list[str]:
    """Node ids (tests/FILE.py::NAME) of the test functions whose source calls torch.cuda.is_available()."""
    found = []
    for path in sorted(tests.glob("test_*.py")):
        text = path.read_text(encoding="utf-8")
        if "cuda.is_available" not in text:
            continue
        for node in ast.parse(text).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
                if "cuda.is_available" in (ast.get_source_segment(text, node) or ""):
                    found.append(f"{path.relative_to(ROOT).as_posix()}::{node.name}")
    return found


def run_tests(ids: list[str], timeout: int) -> dict[str, Any]:
    if not ids:
        return {"ids": [], "status": "none found"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *ids]
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    except subprocess.TimeoutExpired:
        return {"ids": ids, "status": f"timed out after {timeout} s"}
    lines = (done.stdout + done.stderr).strip().splitlines()
    return {"ids": ids, "status": "passed" if done.returncode == 0 else f"failed (exit {done.returncode})",
            "summary": lines[-1] if lines else "", "seconds": round(time.perf_counter() - start, 1),
            "tail": lines[-30:] if done.returncode else []}


def build(cfg: ADMConfig, device: torch.device) -> NetworkDenoiser:
    """The network with seeded random weights; zero-initialised layers (ADM's output convs) get small ones."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = build_network(cfg)
        with torch.no_grad():
            for p in net.parameters():
                if p.dim() > 1 and not bool(p.any()):
                    p.normal_(0.0, 1e-2)
    net = net.to(device).eval().requires_grad_(False)
    return NetworkDenoiser(net, VPSchedule.linear(), "eps", learned_sigma=cfg.out_channels == 2 * cfg.in_channels)


def timed(fn: Callable[[], Any], device: torch.device, warmup: int, repeat: int) -> float:
    """Seconds per call of ``fn`` (mean of ``repeat`` after ``warmup``), synchronised on CUDA."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / repeat


def network_rows(den: NetworkDenoiser, size: int, batches: tuple[int, ...], device: torch.device, warmup: int, repeat: int):
    rows = []
    for name, dtype in DTYPES.items():
        den.net.convert_to(dtype)
        for b in batches:
            x = torch.randn(b, 3, size, size, generator=torch.Generator().manual_seed(b)).to(device)
            t = torch.full((b,), 500.0, device=device)
            row: dict[str, Any] = {"dtype": name, "batch": b}
            try:
                with torch.no_grad():
                    s = timed(lambda x=x, t=t: den(x, t), device, warmup, repeat)
                row.update(ms_per_call=round(1e3 * s, 3), ms_per_image=round(1e3 * s / b, 3), images_per_s=round(b / s, 2))
            except (RuntimeError, NotImplementedError) as exc:  # e.g. a dtype this device has no kernels for
                row["error"] = str(exc).splitlines()[0][:120]
            rows.append(row)
    den.net.convert_to(torch.float32)
    return rows


def loop_rows(den: NetworkDenoiser, size: int, steps: int, device: torch.device, network: list[dict[str, Any]]):
    """Time per sampler step (whole run / steps) against one network call at batch 1."""
    op = Downsample(4)
    y = op.A(torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1)).to(device) * 2 - 1)
    rows = []
    for name in ("fp32", "bf16"):
        call = next((r.get("ms_per_call") for r in network if r.get("dtype") == name and r.get("batch") == 1), None)
        den.net.convert_to(DTYPES[name])
        for label, rule, terms in (("ddim, no term", "ddim", []), ("pnp + proximal SR x4", "pnp", [Proximal(op, y, 0.01)])):
            def run(rule=rule, terms=terms):
                return sample(den, (1, 3, size, size), NoiseSource.from_seeds([0]), steps=str(steps), rule=make_rule(rule),
                              terms=terms, device=device)
            try:
                step = 1e3 * timed(run, device, 1, 1) / steps
            except (RuntimeError, NotImplementedError) as exc:
                rows.append({"dtype": name, "sampler": label, "error": str(exc).splitlines()[0][:120]})
                continue
            row = {"dtype": name, "sampler": label, "ms_per_step": round(step, 3), "network_ms_per_call": call}
            if call:
                row.update(loop_ms_per_step=round(step - call, 3), loop_percent_of_network=round(100 * (step - call) / call, 1))
            rows.append(row)
    den.net.convert_to(torch.float32)
    return rows


def memory_rows(den: NetworkDenoiser, size: int, batches: tuple[int, ...], device: torch.device):
    """Peak allocated bytes above the weights: a DPS step against a forward-only step (2 steps each)."""
    op = Downsample(4)
    rows = []
    for name in ("fp32", "bf16"):
        den.net.convert_to(DTYPES[name])
        for b in batches:
            y = op.A(torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(2)).to(device) * 2 - 1)
            row: dict[str, Any] = {"dtype": name, "batch": b}
            for label, rule, terms in (("forward_only", "ddim", []), ("dps", "ddpm", [DPS(op, y, 0.01)])):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(device)
                    base = torch.cuda.memory_allocated(device)
                start = time.perf_counter()
                try:
                    sample(den, (b, 3, size, size), NoiseSource.from_seeds(range(b)), steps="2", rule=make_rule(rule),
                           terms=terms, device=device)
                except (RuntimeError, NotImplementedError) as exc:  # out of memory, a missing kernel
                    row[f"{label}_error"] = str(exc).splitlines()[0][:120]
                    continue
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                    row[f"{label}_peak_mib"] = round((torch.cuda.max_memory_allocated(device) - base) / 2**20, 1)
                row[f"{label}_ms_per_step"] = round(1e3 * (time.perf_counter() - start) / 2, 2)
            if row.get("dps_peak_mib") and row.get("forward_only_peak_mib"):
                row["dps_over_forward"] = round(row["dps_peak_mib"] / row["forward_only_peak_mib"], 2)
            rows.append(row)
    den.net.convert_to(torch.float32)
    return rows


def cpu_agreement(den: NetworkDenoiser, cfg: ADMConfig, device: torch.device, size: int = 64) -> dict[str, Any]:
    """One fp32 call of ``den`` (on the GPU, before any dtype change) against the same network on the CPU."""
    if device.type == "cpu":
        return {"check": "cuda vs cpu network call (fp32)", "status": "skipped (no GPU)"}
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([300.0])
    with torch.no_grad():
        cpu = build(cfg, torch.device("cpu"))(x, t).x0
        gpu = den(x.to(device), t.to(device)).x0.cpu()
    diff = float((cpu - gpu).abs().max())
    return {"check": f"cuda vs cpu network call (fp32, {size} px, cuDNN's TF32 as torch's default)", "max_abs_diff": diff,
            "status": "ok" if diff < 1e-2 else "differs"}


def guarded(section: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """A section's rows, or one row naming its error: one broken section must not lose the others."""
    try:
        return section()
    except Exception as exc:  # noqa: BLE001 - reported in the table, the run goes on
        return [{"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"}]


def markdown(result: dict[str, Any]) -> str:
    def table(rows: list[dict[str, Any]]) -> list[str]:
        if not rows:
            return ["(none)", ""]
        keys = list(dict.fromkeys(k for r in rows for k in r))
        out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        out += ["| " + " | ".join("n/a" if r.get(k) is None else str(r[k]) for k in keys) + " |" for r in rows]
        return [*out, ""]

    env, tests = result["environment"], result["tests"]
    lines = [f"# Device check ({'tiny CPU configuration' if result['tiny'] else MODEL + ', random weights'})", "",
             f"{env['device_name']}; torch {env['torch']}; image {result['size']} px; {result['seconds']} s in all.", "",
             f"## CUDA tests: {tests.get('status')} {tests.get('summary', '')}", "", *[f"- {i}" for i in tests.get("ids", [])], "",
             "## Network call (ms)", "", *table(result["network"]),
             "## Sampler step over the network call", "", *table(result["loop"]),
             "## Peak memory above the weights: DPS step over forward-only step", "", *table(result["memory"]),
             "## Checks", "", *table(result["checks"])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT"), help="folder for device_check.md / .json (default $OUT)")
    parser.add_argument("--tiny", action="store_true", help="a small ADM at 16 px, few calls: the whole path on a CPU in seconds")
    parser.add_argument("--no-tests", action="store_true", help="skip the CUDA tests")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--test-timeout", type=int, default=240, help="seconds for the CUDA tests")
    args = parser.parse_args(argv)
    if not args.out:
        parser.error("give --out DIR (or set $OUT)")
    start = time.perf_counter()
    device = torch.device(args.device)
    cfg = TINY if args.tiny else lookup(MODEL).config
    size = 16 if args.tiny else 256
    big, steps, (warmup, repeat) = (2, 2, (1, 1)) if args.tiny else (8, 20, (3, 10))
    env = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device),
           "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"}
    tests = {"status": "skipped (--no-tests)"} if args.no_tests else run_tests(cuda_tests(), args.test_timeout)
    print(f"CUDA tests: {tests.get('status')} {tests.get('summary', '')}", flush=True)
    den = build(cfg, device)
    checks = guarded(lambda: [cpu_agreement(den, cfg, device)])
    network = guarded(lambda: network_rows(den, size, (1, big), device, warmup, repeat))
    print(json.dumps(network), flush=True)
    loop = guarded(lambda: loop_rows(den, size, steps, device, network))
    print(json.dumps(loop), flush=True)
    memory = guarded(lambda: memory_rows(den, size, (1, 2 if args.tiny else 4), device))
    print(json.dumps(memory), flush=True)
    result = {"tiny": args.tiny, "model": "tiny" if args.tiny else MODEL, "size": size, "environment": env, "tests": tests,
              "network": network, "loop": loop, "memory": memory, "checks": checks}
    result["seconds"] = round(time.perf_counter() - start, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "device_check.json").write_text(json.dumps(result, indent=1))
    text = markdown(result)
    (out / "device_check.md").write_text(text + "\n")
    print(text, flush=True)
    return result


if __name__ == "__main__":
    main()
