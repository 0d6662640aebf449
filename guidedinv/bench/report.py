"""The benchmark's outputs: per-image CSV, means per (dataset, task, method, budget), markdown
tables, PSNR plots and the generated docs page (:func:`write_outputs`)."""
from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..app.methods import get_method
from ..app.recipes import dump_toml
from .harness import COLUMNS, TASKS, BenchResult

__all__ = ["rows_to_csv", "SUMMARY_COLUMNS", "summarise", "markdown_tables", "plot", "write_outputs", "doc_page"]


def _fmt(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if key in ("psnr",):
        return f"{value:.4f}"
    if key in ("ssim", "lpips"):
        return f"{value:.5f}"
    if key in ("consistency", "hf_ratio"):
        return f"{value:.5g}"
    if key == "seconds":
        return f"{value:.3f}"
    if key == "peak_mem_mb":
        return f"{value:.1f}"
    return str(value)


def rows_to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str] = COLUMNS) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_fmt(c, row.get(c)) for c in columns])
    return buffer.getvalue()


SUMMARY_COLUMNS = ["dataset", "task", "method", "nfe_budget", "steps", "images", "nfe", "backward", "psnr", "ssim", "lpips",
                   "hf_ratio", "consistency", "seconds", "peak_mem_mb"]


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Means over images per (dataset, task, method, budget), in run order; peak memory is the max."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["task"], row["method"], row["nfe_budget"]), []).append(row)
    out = []
    for (dataset, task, method, budget), items in groups.items():
        def mean(key: str) -> float | None:
            vals = [r[key] for r in items if r.get(key) is not None and not (isinstance(r[key], float) and math.isnan(r[key]))]
            return sum(vals) / len(vals) if vals else None

        mems = [r["peak_mem_mb"] for r in items if not math.isnan(r["peak_mem_mb"])]
        out.append({"dataset": dataset, "task": task, "method": method, "nfe_budget": budget, "steps": items[0]["steps"],
                    "images": len(items),
                    "nfe": mean("nfe"), "backward": mean("backward"), "psnr": mean("psnr"), "ssim": mean("ssim"),
                    "lpips": mean("lpips"), "hf_ratio": mean("hf_ratio"), "consistency": mean("consistency"), "seconds": mean("seconds"),
                    "peak_mem_mb": max(mems) if mems else float("nan")})
    return out


def _fmt_ratio(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.2f}"


def markdown_tables(summary: Sequence[dict[str, Any]]) -> str:
    """One table per task; the best mean PSNR per dataset in bold."""
    lines: list[str] = []
    for task in dict.fromkeys(r["task"] for r in summary):
        items = [r for r in summary if r["task"] == task]
        best = {d: max((r["psnr"] for r in items if r["dataset"] == d), default=None) for d in {r["dataset"] for r in items}}
        lines += [f"### {task}: {TASKS[task].about}" if task in TASKS else f"### {task}", "",
                  "| dataset | method | steps | NFE (fwd + bwd) | images | PSNR (dB) | SSIM | LPIPS | detail ratio "
                  "| ‖Ax−y‖/‖y‖ | s / image | peak MB |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in items:
            nfe = "0" if not r["nfe"] else f"{r['nfe']:.0f}" + (f" + {r['backward']:.0f}" if r["backward"] else "")
            psnr_txt = f"{r['psnr']:.2f}"
            if best[r["dataset"]] is not None and r["psnr"] == best[r["dataset"]]:
                psnr_txt = f"**{psnr_txt}**"
            lp = "–" if r["lpips"] is None else f"{r['lpips']:.3f}"
            lines.append(f"| {r['dataset']} | {r['method']} | {r['steps'] or '–'} | {nfe} | {r['images']} | {psnr_txt} | "
                         f"{r['ssim']:.3f} | {lp} | {_fmt_ratio(r.get('hf_ratio'))} | "
                         f"{r['consistency']:.3g} | {r['seconds']:.2f} | {r['peak_mem_mb']:.0f} |")
        lines.append("")
    return "\n".join(lines)


def plot(summary: Sequence[dict[str, Any]], folder: Path) -> tuple[list[Path], str | None]:
    """PSNR against NFE and against seconds per image, one panel per task, means over all images.
    Returns (files written, None) or ([], why not) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [], "plots skipped: matplotlib is not installed (pip install matplotlib to get them)"
    overall: dict[tuple, list[dict[str, Any]]] = {}
    for r in summary:
        overall.setdefault((r["task"], r["method"], r["nfe_budget"]), []).append(r)
    agg = [{"task": t, "method": m, "nfe_budget": n, "nfe": sum(i["nfe"] + i["backward"] for i in v) / len(v),
            "psnr": sum(i["psnr"] * i["images"] for i in v) / sum(i["images"] for i in v),
            "seconds": sum(i["seconds"] * i["images"] for i in v) / sum(i["images"] for i in v)}
           for (t, m, n), v in overall.items()]
    tasks = list(dict.fromkeys(r["task"] for r in agg))
    files = []
    for kind, xkey, xlabel in (("nfe", "nfe", "network evaluations (forward + backward)"), ("time", "seconds", "seconds per image")):
        cols = min(3, len(tasks))
        rows_n = math.ceil(len(tasks) / cols)
        fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3.4 * rows_n), squeeze=False)
        for ax, task in zip(axes.flat, tasks):
            for method in dict.fromkeys(r["method"] for r in agg if r["task"] == task):
                pts = sorted((r[xkey], r["psnr"]) for r in agg if r["task"] == task and r["method"] == method)
                if not get_method(method).uses_network and kind == "nfe":
                    ax.axhline(pts[0][1], linestyle="--", linewidth=1, label=method, color=f"C{len(ax.lines) % 10}")
                else:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method)
            ax.set_title(task)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("PSNR (dB)")
            if kind == "time":
                ax.set_xscale("log")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(tasks):]:
            ax.axis("off")
        fig.tight_layout()
        path = Path(folder) / f"psnr_vs_{kind}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=90, metadata={"Software": None})
        plt.close(fig)
        files.append(path)
    return files, None


def write_outputs(result: BenchResult, out: Path, doc: Path | None = None) -> list[Path]:
    """results.csv, summary.csv, summary.md, config.json and the plots in ``out``; the doc page too."""
    from ..io import atomic_write_bytes

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(result.rows)
    tables = markdown_tables(summary)
    written = []
    for name, text in (("results.csv", rows_to_csv(result.rows)), ("summary.csv", rows_to_csv(summary, SUMMARY_COLUMNS)),
                       ("summary.md", tables), ("config.json", json.dumps(result.config, indent=2, default=str) + "\n"),
                       ("recipes.toml", "".join(f"# task {t}\n{dump_toml(v['recipe'])}\n" for t, v in result.config["tasks"].items()))):
        atomic_write_bytes(out / name, text.encode())
        written.append(out / name)
    plots, why = plot(summary, out)
    written += plots
    notes = list(result.notes) + ([why] if why else [])
    if doc is not None:
        doc = Path(doc)
        doc_plots = plot(summary, doc.parent / doc.stem)[0] if plots else []
        atomic_write_bytes(doc, doc_page(result, tables, notes, [p.relative_to(doc.parent) for p in doc_plots]).encode())
        written += [doc, *doc_plots]
    return written


def doc_page(result: BenchResult, tables: str, notes: Sequence[str], plots: Sequence[Path]) -> str:
    """The markdown page of docs/benchmarks.md: the command first, then what ran and the tables."""
    cfg = result.config
    model = cfg["model"]
    images = cfg["images"]
    by_set: dict[str, list[str]] = {}
    for rec in images:
        by_set.setdefault(rec["dataset"], []).append(f"{rec['image']} [{', '.join(map(str, rec['crop']))}]")
    lines = [
        "# Benchmarks",
        "",
        "Generated by this command (do not edit by hand; rerun it to refresh):",
        "",
        "```",
        str(cfg.get("command") or "(run from Python)"),
        "```",
        "",
    ]
    if model.get("untrained"):
        lines += ["> **UNTRAINED RANDOM NETWORK.** These tables were made with a seeded, untrained tiny network",
                  "> (`--model random-tiny`) because the default prior's weights are not in this install yet. The guided",
                  "> methods' PSNR/SSIM are meaningless here; the classical baselines, NFE counts and the harness are real.",
                  ""]
    m = cfg["machine"]
    lines += [
        f"- Model: `{model.get('source')}`" + (f", {model['parameters'] / 1e6:.2f}M parameters" if model.get("parameters") else "")
        + (f", file sha256 `{model['sha256'][:16]}…`" if model.get("sha256") else "")
        + (f", network evaluated on {model['tiling']} (guidedinv/tiling.py)" if model.get("tiling") else ""),
        f"- Machine: {m['device']}, {m['processor']}, {m['torch_threads']} torch thread(s); torch {cfg['versions']['torch']}, "
        f"scikit-image {cfg['versions']['scikit-image']}, guidedinv {cfg['versions']['guidedinv']}",
        f"- Images: centre crops of {cfg['protocol']['crop']} px (box = top, left, height, width) — "
        + "; ".join(f"{d}: {', '.join(v)}" for d, v in by_set.items()),
        "- Seeds: an image's seed s = crc32(\"dataset/file\") + seed is its runs' seed: the sampler's, random masks' "
        "and (derived, guidedinv.app.measure.measurement_seed) the measurement noise's; reruns give identical numbers "
        "except seconds and memory.",
        "- NFE = network forward calls, counted; DPS adds one backward pass per step (shown as fwd + bwd). "
        "RePaint's budget includes its resampling jumps. Baselines make none.",
        "- Peak MB: CPU resident-set growth during the call (approximate) or CUDA max allocated.",
        "",
    ]
    for note in notes:
        if not note.startswith("UNTRAINED"):  # said above, in bold
            lines.append(f"- Note: {note}")
    lines += ["", "Protocol details, the methods' settings and how to rerun: `guidedinv bench --help`, "
              "guidedinv/bench/harness.py, guidedinv/app/methods/, guidedinv/baselines.py, guidedinv/metrics.py.", "",
              "## Results (means over images)", "", tables]
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.as_posix()})" for p in plots] + [""]
    lines += ["## Resolved task recipes", ""]
    for task, v in cfg["tasks"].items():
        lines += [f"`{task}`: {v['about']}", "", "```toml", dump_toml(v["recipe"]).rstrip(), "```", ""]
    return "\n".join(lines)
