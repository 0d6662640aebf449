"""The batch report: one record per item, kept in ``OUT/report.json`` (written atomically).

A record: ``id``, ``status`` (pending, done, skipped, failed), ``error`` (one line, failed only),
``input``, ``output`` (relative to the output folder), ``seed``, ``seconds`` (restoration time, the
batch's wall time shared equally by its items), ``psnr`` / ``ssim`` (where a reference exists),
``consistency`` (||A x - y|| / ||y||), ``rank`` and ``finished_at`` (Unix time); with posterior
samples, when asked for, ``uncertainty`` (the map's name) and ``mean_std`` (its mean), and
``sample_files`` (the saved samples' names, sample 0 first), all relative to the output folder.

With several processes each rank writes ``OUT/report.parts/rank-R.json`` as its items finish and
the parts are merged into report.json: for every item of the run, the record with the latest
``finished_at`` wins, so stale parts of an earlier run never hide newer results.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ... import __version__
from ...io import atomic_write_bytes

__all__ = ["REPORT_NAME", "PARTS_DIR", "STATUSES", "new_record", "read_records", "latest", "write_report",
           "write_part", "part_paths", "summarise"]

REPORT_NAME = "report.json"
PARTS_DIR = "report.parts"
STATUSES = ("pending", "done", "skipped", "failed")


def new_record(item_id: str, status: str, **fields: Any) -> dict[str, Any]:
    """A report record; ``finished_at`` is now unless given."""
    assert status in STATUSES, status
    return {"id": item_id, "status": status, "error": None, **fields, "finished_at": fields.get("finished_at", time.time())}


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when it is missing or unreadable (it is rebuilt then)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def part_paths(out_dir: Path) -> list[Path]:
    return sorted((out_dir / PARTS_DIR).glob("rank-*.json"))


def read_records(out_dir: Path) -> dict[str, dict[str, Any]]:
    """The newest record of every item found in report.json and the rank parts."""
    sources = [out_dir / REPORT_NAME, *part_paths(out_dir)]
    return latest(rec for path in sources for rec in ((_read_json(path) or {}).get("items") or []))


def latest(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """id -> the record with the latest ``finished_at`` (pending records never replace others)."""
    out: dict[str, dict[str, Any]] = {}
    for rec in records:
        if not isinstance(rec, Mapping) or not isinstance(rec.get("id"), str):
            continue
        old = out.get(rec["id"])
        newer = old is None or (rec.get("status") != "pending" and
                                (old.get("status") == "pending" or rec.get("finished_at", 0) >= old.get("finished_at", 0)))
        if newer:
            out[rec["id"]] = dict(rec)
    return out


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def summarise(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts per status and the mean metrics over the items that have them."""
    records = list(records)
    out: dict[str, Any] = {s: sum(r.get("status") == s for r in records) for s in STATUSES}
    out["total"] = len(records)
    for key in ("psnr", "ssim", "consistency"):
        out[f"mean_{key}"] = _mean([r.get(key) for r in records if r.get("status") in ("done", "skipped")])
    return out


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: such numbers are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _dump(data: Mapping[str, Any]) -> bytes:
    return (json.dumps(_finite(data), indent=1, allow_nan=False, default=str) + "\n").encode()


def write_report(out_dir: Path, ids: Iterable[str], records: Mapping[str, Mapping[str, Any]],
                 header: Mapping[str, Any]) -> dict[str, Any]:
    """Write report.json for the run's items ``ids`` (in order); an item without a record is pending."""
    items = [dict(records.get(i) or new_record(i, "pending", finished_at=0)) for i in ids]
    report = {"tool": f"guidedinv {__version__}", **header, "updated_at": time.time(), "summary": summarise(items),
              "items": items}
    atomic_write_bytes(out_dir / REPORT_NAME, _dump(report))
    return report


def write_part(out_dir: Path, rank: int, world: int, records: Iterable[Mapping[str, Any]], finished: bool) -> Path:
    """This rank's records, for the merge into report.json."""
    path = out_dir / PARTS_DIR / f"rank-{rank:05d}.json"
    atomic_write_bytes(path, _dump({"rank": rank, "world_size": world, "finished": finished,
                                    "updated_at": time.time(), "items": list(records)}))
    return path
