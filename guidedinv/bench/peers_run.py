"""Peer comparison: deepinv's and diffusers' methods beside ours, same network, crops, measurements.

Protocol (the benchmark's, :mod:`guidedinv.bench.harness`): fixed centre crops, per-image seeds, the task's
measurement simulated once per image and handed to every method (ours and the peers'), NFE counted by
wrapping the one denoiser every method calls. Each peer runs at each budget of ``nfes``; ours (the
method each peer is paired with, :data:`guidedinv.bench.peers.PEERS`) runs at ``ours_nfes`` (default: the
budgets, their halves and doubles), so that "time at equal quality" can be read off our PSNR-vs-time
curve. Seeds are the benchmark's: an image's seed s is our sampler's seed and the seed handed to
each peer, the measurement noise is drawn from ``measurement_seed(s)`` (:mod:`guidedinv.app.measure`).
Ratios, per task and budget, of image means:

    dPSNR @ same NFE   peer PSNR - ours (dB), ours at the same budget
    time @ same NFE    peer seconds / ours seconds at the same budget
    time @ equal PSNR  peer seconds / the seconds ours needs for the peer's PSNR, interpolated
                       linearly between our budgets; ">= r" when our smallest budget already beats
                       the peer (r uses that budget's time), "< r" when no budget of ours reaches it
                       (r uses the largest budget's time)

A peer that cannot run (not installed, an operator it does not support, an import error) is listed
with the reason instead of a number.
"""
from __future__ import annotations

import math
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..app.methods import get_method
from ..app.request import Request, apply_overrides, parse_request
from ..app.solve import restore
from ..errors import InputError
from ..io import read_image
from ..metrics import score
from .harness import (
    TASKS,
    CountingDenoiser,
    _version,
    centre_crop,
    degrade,
    image_seed,
    list_images,
    load_bench_model,
    method_request,
    task_recipe,
)
from .peers import CONVENTIONS, PEERS, PeerUnavailable, diffusers_ddim_sample, load_deepinv, load_diffusers
from .report import rows_to_csv

__all__ = ["PEER_TASKS", "OURS_VARIANTS", "ROW_COLUMNS", "SUMMARY_COLUMNS", "PeerResult", "run_peers", "summarise", "equal_quality_ratio",
           "markdown", "write_outputs"]

PEER_TASKS = ("superres4", "deblur-gauss", "inpaint-random", "inpaint-box")
ROW_COLUMNS = ["dataset", "image", "crop", "task", "method", "library", "vs", "nfe_budget", "steps", "nfe", "backward", "psnr",
               "ssim", "consistency", "seconds", "seed"]
SUMMARY_COLUMNS = ["task", "method", "library", "vs", "nfe_budget", "images", "nfe", "backward", "psnr", "ssim", "consistency",
                   "seconds", "dpsnr_same_nfe", "time_ratio_same_nfe", "time_ratio_equal_psnr"]


@dataclass
class PeerResult:
    rows: list[dict[str, Any]]
    config: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    unavailable: dict[tuple[str, str], str] = field(default_factory=dict)  # (task, peer) -> reason
    loop_check: dict[str, Any] | None = None



# run beside the peers on every task though no peer is paired with it: our best-PSNR method
OURS_ALWAYS = ("pnp",)

# our methods with other settings, by row name: (method, --set assignments, what the row is). The
# "before" rows keep the settings our methods had before issue 15's comparison changed them.
OURS_VARIANTS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "ours-ddnm-eta0.85": ("ddnm", ("methods.ddnm.eta=0.85",), "ddnm before: DDIM's eta 0.85, the default until DDIM's eta 1 "
                          "(0.68 of the next level's noise fresh per step on the logsnr20 grid, DDRM's 0.85 taken as DDIM's)"),
    "ours-dps-zeta0.1": ("dps", ("methods.dps.zeta=0.1",), "dps before: zeta 1 per step (the official code's convention, a "
                         "tenth of its guidance on 100 steps); now zeta is per unit of a 1000-step schedule, and 0.1 on the "
                         "'100' grid is 1.0-1.1 per step"),
    "ours-ddrm-logsnr": ("ddrm", ('methods.ddrm.steps="logsnr50"',), "ddrm (DDRM's eta 0.85, eta_b 1) on the logsnr grid that "
                         "deepinv's DDRM is handed here (its own default grid is uniform)"),
}

# what the comparison of issue 15 found (the figures in brackets are the runs' named in the text)
FINDINGS = (
    "deepinv's DDRM leads our ddnm at 20 calls mostly because it draws half the noise it tells the denoiser on a real "
    "SVD (inpainting, SR; see the conventions), which smooths: ours-ddrm-logsnr, the same step with the noise drawn in "
    "full, gives what deepinv's DDRM gives with that noise restored (3 crops: random 19.88 vs 19.86 dB, box 17.65 vs 17.64, "
    "SR 24.86 vs 25.22) and 0.3-1.7 dB less than deepinv's as it is",
    "the rest was ddnm's eta: DDIM's 0.85 draws 0.68 of the next level's noise fresh per step on logsnr20, where DDNM's "
    "and DDRM's code draw 0.85; DDIM's eta 1 (0.80) is now the default (ours-ddnm-eta0.85 is the old one); the uniform "
    "'20' grid is worse than logsnr20 for ddnm on all four tasks (0.3-0.6 dB)",
    "our DPS applied the official code's zeta per step, a value tuned for 1000 steps: on 100 it got a tenth of the "
    "guidance; zeta is now per unit of a 1000-step schedule (1 by default, 0.3 for deblurring), so the run's total "
    "does not depend on the budget. deepinv's 'norm' weight is about weight/2 times the step's beta in our units: its "
    "default 1 is unguided, and the tuned weights (100-3000) are its working range; a larger one diverges on deblurring",
    "box inpainting is where DPS's stronger guidance costs PSNR (ours 15.8 dB, the old per-step zeta 17.4; deepinv's "
    "weight 3000, tuned on random inpainting, 13.6) while SSIM rises (0.67 vs 0.51): the inpaint recipe serves both masks",
)


def _ours_rows(ours: Sequence[str]) -> list[tuple[str, str, tuple[str, ...]]]:
    """(row name, registry method, --set assignments) of ``ours``: method names or OURS_VARIANTS keys."""
    rows = []
    for name in ours:
        if name in OURS_VARIANTS:
            rows.append((name, OURS_VARIANTS[name][0], OURS_VARIANTS[name][1]))
            continue
        try:
            method = get_method(name.removeprefix("ours-"))
        except InputError:
            raise InputError(f"unknown method of ours {name!r}; choose a guided method or one of {', '.join(OURS_VARIANTS)}") from None
        if not method.uses_network:
            raise InputError(f"peers are compared with our guided methods, not {method.name!r}")
        rows.append((f"ours-{method.name}", method.name, ()))
    return rows


def _libraries(names: Sequence[str]) -> tuple[dict[str, Any], dict[str, str], list[str], dict[str, str]]:
    """(modules, reasons they are missing, notes, versions) of the libraries the peers need."""
    modules, missing, notes, versions = {}, {}, [], {}
    for lib, loader in (("deepinv", load_deepinv), ("diffusers", load_diffusers)):
        if not any(PEERS[n].library == lib for n in names):
            continue
        try:
            modules[lib], extra = loader()
            notes += extra
            versions[lib] = getattr(modules[lib], "__version__", "?")
        except PeerUnavailable as exc:
            missing[lib] = str(exc)
    for dist in ("torchvision",):
        if "deepinv" in modules:
            versions[dist] = _version(dist)
    return modules, missing, notes, versions


def _loop_check(diffusers: Any, denoiser: Any, size: int, steps: int, seed: int) -> dict[str, Any]:
    """Unconditional DDIM (eta 0) from one x_T through diffusers' DDIMScheduler and through our sampler."""
    from ..noise import NoiseSource
    from ..rules import DDIM
    from ..sampler import sample

    dev = next((p.device for p in denoiser.parameters()), torch.device("cpu"))
    start = time.perf_counter()
    ours = sample(denoiser, (1, 3, size, size), NoiseSource.from_seeds([seed]), steps=f"ddim{steps}", rule=DDIM(0.0), device=dev)
    ours_s = time.perf_counter() - start
    x_t = NoiseSource.from_seeds([seed]).randn((3, size, size), torch.float32, dev)
    start = time.perf_counter()
    theirs = diffusers_ddim_sample(diffusers, denoiser, x_t, steps)
    theirs_s = time.perf_counter() - start
    return {"steps": steps, "size": size, "max_abs_diff": float((ours - theirs).abs().max()), "ours_seconds": ours_s,
            "diffusers_seconds": theirs_s}


def run_peers(
    paths: Sequence[Path],
    *,
    tasks: Sequence[str] = PEER_TASKS,
    peers: Sequence[str] | None = None,
    nfes: Sequence[int] = (20,),
    ours_nfes: Sequence[int] | None = None,
    limit: int | None = None,
    crop: int = 64,
    model: str = "default",
    device: str = "cpu",
    seed: int = 0,
    loop_check: bool = True,
    log: Callable[[str], None] | None = None,
    ours: Sequence[str] | None = None,
    budgets: dict[str, Sequence[int]] | None = None,
) -> PeerResult:
    """Every (image, task, peer, budget) and (image, task, method of ours, our budget) once.

    ours: our methods (registry names) and OURS_VARIANTS keys to run (default: the peers' paired
    methods and OURS_ALWAYS); budgets: row name (a peer, "ours-METHOD" or a variant key) -> its
    budgets, instead of ``nfes`` (peers) or ``ours_nfes`` (ours)."""
    from .. import __version__

    log = log or (lambda _msg: None)
    names = list(peers or PEERS)
    bad = [n for n in names if n not in PEERS]
    if bad:
        raise InputError(f"unknown peer(s) {', '.join(bad)}; choose from {', '.join(PEERS)}")
    ours_rows = _ours_rows(ours if ours is not None else [*dict.fromkeys(PEERS[n].ours for n in names), *OURS_ALWAYS])
    budgets = {k: [int(n) for n in v] for k, v in (budgets or {}).items()}
    rows_known = set(names) | {r[0] for r in ours_rows}
    if any(k not in rows_known for k in budgets):
        raise InputError(f"budgets for {', '.join(k for k in budgets if k not in rows_known)}: not run; the rows are "
                         f"{', '.join(sorted(rows_known))}")
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise InputError(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    if any(int(n) < 2 for v in (nfes, *budgets.values()) for n in v):
        raise InputError(f"NFE budgets must be >= 2, got {list(nfes)} {budgets}")
    ours_nfes = sorted(set(ours_nfes or [m for n in nfes for m in (max(2, n // 2), n, 2 * n)]))
    modules, missing, notes, versions = _libraries(names)
    dev = torch.device(device)
    with tempfile.TemporaryDirectory() as tmp:
        denoiser, model_info = load_bench_model(model, dev, Path(tmp))
    counter = CountingDenoiser(denoiser)
    with torch.no_grad():
        counter(torch.zeros(1, 3, 16, 16, device=dev), torch.zeros(1, device=dev))  # warm-up: allocations
    if model_info.get("untrained"):
        notes.append("UNTRAINED RANDOM NETWORK: the quality numbers are meaningless")
    recipes = {t: task_recipe(TASKS[t], seed=seed) for t in tasks}
    sigmas = {t: parse_request(recipes[t], f"task {t}").sigma_y for t in tasks}
    requests: dict[tuple[str, str, tuple[str, ...], int], Request] = {}

    def ours_request(task: str, method: str, sets: tuple[str, ...], nfe: int) -> Request:
        """Our method's request on the task at a budget: parsed once per (task, method, sets, budget)."""
        key = (task, method, sets, nfe)
        if key not in requests:
            requests[key] = method_request(apply_overrides(recipes[task], list(sets)), method, nfe)
        return requests[key]

    images = list_images(paths, limit)
    rows: list[dict[str, Any]] = []
    unavailable: dict[tuple[str, str], str] = {}

    def timed(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
        counter.reset()
        start = time.perf_counter()
        out = fn()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return out.detach().cpu(), time.perf_counter() - start

    for dataset, path in images:
        x, box = centre_crop(read_image(path).image, crop)
        s = image_seed(dataset, path.name, seed)
        common = {"dataset": dataset, "image": path.name, "crop": "{},{},{},{}".format(*box), "seed": s}
        for task in tasks:
            _, measured = degrade(recipes[task], x[None], seed=s)
            y, mask, op, clean = measured.y, measured.mask, measured.operator, measured.clean
            sigma_y = sigmas[task]

            def record(method: str, library: str, vs: str, budget: int, steps: str, out: torch.Tensor, seconds: float) -> None:
                metrics = score(out, clean, op, y, use_lpips=False)[0]
                metrics.pop("lpips", None)
                rows.append({**common, "task": task, "method": method, "library": library, "vs": vs, "nfe_budget": budget,
                             "steps": steps, "nfe": counter.calls, "backward": counter.grad_calls, **metrics, "seconds": seconds})
                log(f"{dataset}/{path.name} {task} {method} nfe={counter.calls}+{counter.grad_calls}: "
                    f"{metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.3f}, {seconds:.1f} s")

            for name in names:
                peer = PEERS[name]
                if not isinstance(op, peer.operators):
                    unavailable[(task, name)] = f"{peer.library}'s method does not apply to {type(op).__name__}"
                    continue
                if peer.library in missing:
                    unavailable[(task, name)] = missing[peer.library]
                    continue
                for n in budgets.get(name, nfes):
                    try:
                        out, seconds = timed(lambda: peer.run(modules[peer.library], counter, op, y.to(dev), sigma_y, n, s))
                    except PeerUnavailable as exc:
                        unavailable[(task, name)] = str(exc)
                        log(f"{task} {name}: cannot run: {exc}")
                        break
                    record(name, peer.library, peer.ours, n, str(n), out, seconds)
            for row, method, sets in ours_rows:
                if recipes[task]["operator"]["kind"] not in get_method(method).kinds:
                    unavailable[(task, row)] = f"{method} does not solve {recipes[task]['operator']['kind']}"
                    continue
                for n in budgets.get(row, ours_nfes):
                    request = ours_request(task, method, sets, n)
                    out, seconds = timed(lambda: restore(counter, request, y, mask=mask, seeds=[s]))
                    record(row, "guidedinv", "", n, str(request.steps), out, seconds)
    check = None
    if loop_check and "diffusers" in modules:
        check = _loop_check(modules["diffusers"], denoiser, crop, 20, seed)
    config = {
        "versions": {"guidedinv": __version__, "torch": torch.__version__, "python": platform.python_version(), **versions},
        "machine": {"platform": platform.platform(), "device": str(dev), "torch_threads": torch.get_num_threads()},
        "model": model_info, "crop": crop, "nfes": list(nfes), "ours_nfes": ours_nfes, "seed": seed, "tasks": list(tasks),
        "peers": {n: PEERS[n].about for n in names}, "images": [f"{d}/{p.name}" for d, p in images],
        "ours": {r: OURS_VARIANTS[r][2] if r in OURS_VARIANTS else f"{m}, the registry's settings for the task"
                 for r, m, _ in ours_rows},
        "budgets": budgets,
    }
    return PeerResult(rows, config, notes, unavailable, check)


# -- summaries and ratios ------------------------------------------------------------------------------
def _mean(items: Sequence[dict[str, Any]], key: str) -> float:
    vals = [r[key] for r in items if r.get(key) is not None]
    return sum(vals) / len(vals) if vals else math.nan


def equal_quality_ratio(peer_psnr: float, peer_seconds: float, curve: Sequence[tuple[float, float]]) -> tuple[str, float]:
    """(relation, ratio): peer seconds / the seconds ours needs to reach ``peer_psnr`` along ``curve``
    ((seconds, psnr) of our budgets, in budget order). relation is "=" (interpolated), ">=" (our
    smallest budget already reaches it) or "<" (no budget of ours reaches it)."""
    if not curve:
        return "", math.nan
    if curve[0][1] >= peer_psnr:
        return ">=", peer_seconds / curve[0][0]
    for (s0, p0), (s1, p1) in zip(curve, curve[1:]):
        if p0 < peer_psnr <= p1:
            seconds = s0 + (s1 - s0) * (peer_psnr - p0) / (p1 - p0)
            return "=", peer_seconds / seconds
    return "<", peer_seconds / curve[-1][0]


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Image means per (task, method, budget), with each peer's ratios against its paired method of ours."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["method"], r["nfe_budget"]), []).append(r)
    out = []
    for (task, method, budget), items in groups.items():
        out.append({"task": task, "method": method, "library": items[0]["library"], "vs": items[0]["vs"], "nfe_budget": budget,
                    "images": len(items), **{k: _mean(items, k) for k in ("nfe", "backward", "psnr", "ssim", "consistency", "seconds")},
                    "dpsnr_same_nfe": None, "time_ratio_same_nfe": None, "time_ratio_equal_psnr": None})
    index = {(r["task"], r["method"], r["nfe_budget"]): r for r in out}
    for r in out:
        if not r["vs"]:
            continue
        ours = f"ours-{r['vs']}"
        same = index.get((r["task"], ours, r["nfe_budget"]))
        if same is not None:
            r["dpsnr_same_nfe"] = r["psnr"] - same["psnr"]
            r["time_ratio_same_nfe"] = r["seconds"] / same["seconds"]
        curve = [(o["seconds"], o["psnr"]) for o in sorted((o for o in out if o["task"] == r["task"] and o["method"] == ours),
                                                           key=lambda o: o["nfe_budget"])]
        rel, ratio = equal_quality_ratio(r["psnr"], r["seconds"], curve)
        r["time_ratio_equal_psnr"] = None if not rel else (rel if rel != "=" else "") + f"{ratio:.3g}"
    order = {m: i for i, m in enumerate(dict.fromkeys(r["method"] for r in rows))}
    return sorted(out, key=lambda r: (list(dict.fromkeys(x["task"] for x in rows)).index(r["task"]),
                                      r["method"].startswith("ours-"), order[r["method"]], r["nfe_budget"]))


def _num(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return value if isinstance(value, str) else format(value, fmt)


def markdown(result: PeerResult) -> str:
    """The conventions header, the notes, one table per task, the loop check."""
    cfg = result.config
    v = cfg["versions"]
    lines = ["# Peer comparison: the same network, crops, measurements and NFE", "",
             f"Model `{cfg['model'].get('source')}` ({cfg['model'].get('parameters', 0) / 1e6:.2f}M parameters); "
             f"{len(cfg['images'])} image(s), centre crops of {cfg['crop']} px: {', '.join(cfg['images'])}; "
             f"peers at NFE {', '.join(map(str, cfg['nfes']))}, ours at {', '.join(map(str, cfg['ours_nfes']))}; "
             f"{cfg['machine']['device']}, {cfg['machine']['torch_threads']} torch thread(s).", "",
             "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()), "", "Conventions (converted explicitly):", ""]
    lines += [f"- {c}" for c in CONVENTIONS]
    lines += ["", "Peers:", ""] + [f"- `{n}`: {about}" for n, about in cfg["peers"].items()]
    lines += ["", "Ours:", ""] + [f"- `{n}`: {about}" for n, about in cfg.get("ours", {}).items()]
    lines += ["", "Findings (issue 15):", ""] + [f"- {f}" for f in FINDINGS]
    if cfg.get("budgets"):
        lines += ["", "Budgets: " + "; ".join(f"`{n}` at {', '.join(map(str, v))}" for n, v in cfg["budgets"].items())
                  + f"; other peers at {', '.join(map(str, cfg['nfes']))}, other rows of ours at "
                  f"{', '.join(map(str, cfg['ours_nfes']))}."]
    if result.notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in result.notes]
    if result.unavailable:
        lines += ["", "Not run:", ""] + [f"- `{p}` on {t}: {why}" for (t, p), why in result.unavailable.items()]
    summary = summarise(result.rows)
    for task in dict.fromkeys(r["task"] for r in summary):
        lines += ["", f"### {task}: {TASKS[task].about}", "",
                  "| method | vs ours | budget | NFE (fwd + bwd) | PSNR (dB) | SSIM | ‖Ax−y‖/‖y‖ | s / image | ΔPSNR @ same NFE | "
                  "time ratio @ same NFE | time ratio @ equal PSNR |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in (r for r in summary if r["task"] == task):
            nfe = f"{r['nfe']:.0f}" + (f" + {r['backward']:.0f}" if r["backward"] else "")
            lines.append(f"| {r['method']} | {('ours-' + r['vs']) if r['vs'] else '–'} | {r['nfe_budget']} | {nfe} | "
                         f"{r['psnr']:.2f} | {r['ssim']:.3f} | "
                         f"{r['consistency']:.3g} | {r['seconds']:.2f} | {_num(r['dpsnr_same_nfe'], '+.2f')} | "
                         f"{_num(r['time_ratio_same_nfe'], '.2f')} | {_num(r['time_ratio_equal_psnr'], '')} |")
    if result.loop_check:
        c = result.loop_check
        lines += ["", f"Loop check: unconditional DDIM (eta 0, {c['steps']} steps, {c['size']} px, one x_T) through diffusers' "
                  f"DDIMScheduler and through our sampler: max |difference| {c['max_abs_diff']:.2e} (model range); "
                  f"{c['diffusers_seconds']:.2f} s vs {c['ours_seconds']:.2f} s."]
    lines += ["", "Ratios: ΔPSNR = peer − ours at the same budget; time ratios = peer seconds / ours (< 1: the peer is faster); "
              "'@ equal PSNR' interpolates our PSNR-vs-time over our budgets ('>=': our smallest budget already reaches the "
              "peer's PSNR; '<': none of our budgets does).", ""]
    return "\n".join(lines)


def write_outputs(result: PeerResult, out: Path) -> list[Path]:
    """results.csv (per image), summary.csv (means and ratios) and summary.md in ``out``."""
    from ..io import atomic_write_bytes

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"results.csv": rows_to_csv(result.rows, ROW_COLUMNS), "summary.csv": rows_to_csv(summarise(result.rows), SUMMARY_COLUMNS),
             "summary.md": markdown(result)}
    for name, text in files.items():
        atomic_write_bytes(out / name, text.encode())
    return [out / n for n in files]
