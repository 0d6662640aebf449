"""The batch runner: items in, restored PNGs and a report out; resumable, atomic, one bad item never
stops the rest.

Flow per process: lock the output folder (one batch at a time: :class:`.folder.FolderLock`), check
that it holds no results of another recipe, take this rank's share, skip items whose output is
already complete, load the model if anything is left (before the folder's ``recipe.toml`` and
``report.json`` are written, so a model that does not load leaves nothing behind), read the rest
one by one and group them by padded shape (and SR factor), restore each full group in one
:func:`guidedinv.app.solve.restore` call, write each output atomically, and update the report
after every group.

Why the results equal one-at-a-time runs: every item is padded on its own exactly as ``restore``
would pad it alone, its mask is its own (restore takes one per image), and its noise comes from its
own seed (the sampler's per-item streams), so a group is only a way of sharing network calls.
An output counts as complete when it reads back as an image and its ``guidedinv:run-key`` text
(a hash of the recipe, the item's seed, scale and mask) matches the present run.

Posterior samples (the recipe's ``samples`` > 1): each output is the mean of the item's samples
(:mod:`guidedinv.app.posterior`); with ``uncertainty`` the per-pixel standard deviation goes beside
it as ``ID.std.png`` (a colour map with a scale bar, :mod:`guidedinv.io.colormap`) and the report
records its name and mean; with ``save_samples`` each sample goes beside it as ``ID.sample-K.png``
(no alpha, the output's bit depth, as ``restore --save-samples`` writes them) and the report lists
them (``sample_files``). These files carry the output's run-key, and an item counts as complete only
when every file asked for is there with it: asking for the map or the samples of a finished folder
redoes its items (the output comes out the same: it depends on the item's seed only).
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ...denoiser import Denoiser
from ...errors import GuidedinvError, InputError
from ...io import TEMP_SUFFIX, read_image, write_image
from ..posterior import Posterior, check_sample_flags
from ..recipes import dump_toml
from ..solve import restore, size_multiple
from .folder import RECIPE_NAME, FolderLock, canonical, claim_folder
from .items import Item, item_seed, measurement_seed
from .measure import Prepared, check_recipe, pad, prepare
from .metrics import consistency, quality
from .names import check_outputs, extra_names, sample_outputs, std_output
from .report import PARTS_DIR, REPORT_NAME, new_record, part_paths, read_records, write_part, write_report
from .scaleout import Ranks

__all__ = ["BatchProgress", "BatchResult", "run_batch"]


class BatchProgress:
    """Hooks the runner calls as it goes; the command line draws a progress bar with them."""

    def start(self, total: int) -> None: ...
    def advance(self, count: int) -> None: ...
    def step(self, index: int, num_steps: int) -> None: ...
    def failed(self, item_id: str, message: str) -> None: ...
    def note(self, message: str) -> None: ...


@dataclass
class BatchResult:
    """Counts over all ranks (this rank's alone when the ranks run without a process group)."""

    done: int
    skipped: int
    failed: int
    report: Path

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def _message(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, GuidedinvError) else f"{type(exc).__name__}: {exc}"
    return (text.strip().splitlines() or [type(exc).__name__])[0]


class _Runner:
    def __init__(self, items: Sequence[Item], recipe: dict[str, Any], prior: Denoiser | Callable[[], Denoiser],
                 out_dir: Path, batch_size: int, simulate: bool, ranks: Ranks, progress: BatchProgress, uncertainty: bool = False,
                 save_samples: bool = False):
        self.items, self.recipe, self.out_dir, self.uncertainty = list(items), recipe, out_dir, uncertainty
        self.saved = int(recipe.get("samples", 1)) if save_samples else 0  # samples written per item
        self.batch_size, self.simulate, self.ranks, self.progress = batch_size, simulate, ranks, progress
        self._prior, self._denoiser = prior, None
        self.records: dict[str, dict[str, Any]] = {}
        self.canonical = canonical(recipe)

    # ---- the model, loaded only when some item needs it
    def denoiser(self) -> Denoiser:
        if self._denoiser is None:
            self._denoiser = self._prior if isinstance(self._prior, Denoiser) else self._prior()
        return self._denoiser

    # ---- per-item facts
    def seed(self, item: Item) -> int:
        return item_seed(item, int(self.recipe.get("seed", 0)))

    def run_key(self, item: Item) -> str:
        facts = {"recipe": self.canonical, "seed": self.seed(item), "scale": item.scale,
                 "mask": None if item.mask is None else str(item.mask.resolve())}
        return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:32]

    def output(self, item: Item) -> Path:
        return self.out_dir / item.output

    def complete(self, item: Item) -> bool:
        for path in (self.output(item), *self.extras(item)):
            if not path.is_file():
                return False
            try:
                if read_image(path).metadata.get("guidedinv:run-key") != self.run_key(item):
                    return False
            except InputError:
                return False
        return True

    def extras(self, item: Item) -> list[Path]:
        """The item's files besides its output: its uncertainty map and samples, when asked for."""
        return [self.out_dir / name for name in extra_names(item, self.uncertainty, self.saved)]

    def prepare(self, item: Item) -> Prepared:
        return prepare(item, self.recipe, self.seed(item), self.simulate)

    # ---- records
    def base(self, item: Item) -> dict[str, Any]:
        rec = {"input": str(item.input), "output": item.output, "seed": self.seed(item), "rank": self.ranks.rank,
               "run_key": self.run_key(item)}
        if self.simulate:
            rec["measurement_seed"] = measurement_seed(self.seed(item))
        return rec

    def fail(self, item: Item, exc: BaseException) -> None:
        message = _message(exc)
        self.records[item.id] = new_record(item.id, "failed", **self.base(item), error=message)
        self.progress.failed(item.id, message)

    def evaluate(self, p: Prepared, x: torch.Tensor) -> dict[str, Any]:
        levels = 2**p.bit_depth - 1
        x = (x.double() * levels).round() / levels  # what the file holds
        scores: dict[str, Any] = quality(x, p.reference) if p.reference is not None else {"psnr": None, "ssim": None}
        scores["consistency"] = consistency(p.operator, x, p.y[0])
        return scores

    def skip(self, item: Item, previous: dict[str, Any] | None) -> None:
        keep = ("seconds", "psnr", "ssim", "consistency", *(("mean_std",) if self.uncertainty else ()))
        if previous and previous.get("run_key") == self.run_key(item) and previous.get("status") in ("done", "skipped"):
            scores = {k: previous.get(k) for k in keep}
        else:  # e.g. killed between writing the output and the report: score the file on disk
            try:
                p = self.prepare(item)
                scores = {"seconds": None, **self.evaluate(p, read_image(self.output(item)).image)}
            except Exception as exc:  # noqa: BLE001 - the output is fine; only its scores are missing
                scores = {"seconds": None, "note": f"no scores: {_message(exc)}"}
        scores.update(self.listed(item))  # the files this run asked for, whatever an earlier run's record says
        self.records[item.id] = new_record(item.id, "skipped", **self.base(item), **scores)

    def listed(self, item: Item) -> dict[str, Any]:
        """The report's names of the item's extra files (its map's mean is known only from a record)."""
        names: dict[str, Any] = {"uncertainty": std_output(Path(), item).as_posix()} if self.uncertainty else {}
        if self.saved:
            names["sample_files"] = [path.as_posix() for path in sample_outputs(Path(), item, self.saved)]
        return names

    # ---- restoring
    def finish(self, p: Prepared, x: torch.Tensor, seconds: float, std: torch.Tensor | None = None,
               samples: torch.Tensor | None = None) -> None:
        x = p.crop.scaled(p.factor)(x).detach().float().cpu()
        alpha = p.alpha
        if alpha is not None and alpha.shape[-2:] != x.shape[-2:]:
            alpha = F.interpolate(alpha[None], size=x.shape[-2:], mode="bicubic", align_corners=False)[0].clamp(0, 1)
        meta = {"guidedinv:task": str(p.recipe.get("task")), "guidedinv:model": str(p.recipe.get("model")),
                "guidedinv:method": p.recipe["method"], "guidedinv:steps": str(p.request.steps or 0),
                "guidedinv:seed": str(p.seed), "guidedinv:recipe": dump_toml(p.request.recipe), "guidedinv:item": p.item.id,
                "guidedinv:run-key": self.run_key(p.item)}
        extra = self.listed(p.item)  # the map and samples are written before the output
        if std is not None:  # (H, W) on the padded grid
            from ...io.colormap import write_colour_map

            std = p.crop.scaled(p.factor)(std).detach().double().cpu()
            write_colour_map(std_output(self.out_dir, p.item), std, {**meta, "guidedinv:samples": str(p.request.samples)})
            extra["mean_std"] = round(float(std.mean()), 6)
        if samples is not None:  # (N, C, H, W) on the padded grid
            samples = p.crop.scaled(p.factor)(samples).detach().float().cpu()
            for k, (path, sample) in enumerate(zip(sample_outputs(self.out_dir, p.item, self.saved), samples, strict=True)):
                write_image(path, sample.clamp(0, 1), metadata={**meta, "guidedinv:samples": str(p.request.samples),
                                                                 "guidedinv:sample": str(k)}, bit_depth=p.bit_depth)
        write_image(self.output(p.item), x, alpha=alpha, metadata=meta, bit_depth=p.bit_depth)
        self.records[p.item.id] = new_record(p.item.id, "done", **self.base(p.item), seconds=round(seconds, 4),
                                             **self.evaluate(p, x), **extra)

    def run_group(self, group: list[Prepared]) -> None:
        denoiser = self.denoiser()
        start = time.perf_counter()
        masks = None if group[0].mask_pad is None else torch.stack([p.mask_pad for p in group])
        try:
            x = restore(denoiser, group[0].request, torch.cat([p.y_pad for p in group]), mask=masks, seeds=[p.seed for p in group],
                        callback=lambda info: self.progress.step(info.index, info.num_steps), keep_samples=self.saved > 0)
        except Exception as exc:  # noqa: BLE001 - one bad item must not stop the batch
            if len(group) > 1:  # find the culprit: the others still succeed on their own
                for p in group:
                    self.run_group([p])
                return
            self.fail(group[0].item, exc)
            self.progress.advance(1)
            self.save()
            return
        seconds = (time.perf_counter() - start) / len(group)
        std = x.uncertainty() if isinstance(x, Posterior) and self.uncertainty else None
        kept = x.samples if isinstance(x, Posterior) and self.saved else None
        x = x.mean if isinstance(x, Posterior) else x
        for i, p in enumerate(group):
            try:
                self.finish(p, x[i], seconds, None if std is None else std[i], None if kept is None else kept[i])
            except Exception as exc:  # noqa: BLE001
                self.fail(p.item, exc)
        self.progress.advance(len(group))
        self.save()

    # ---- the report
    def header(self) -> dict[str, Any]:
        return {"recipe": RECIPE_NAME, "task": self.recipe.get("task"), "model": str(self.recipe.get("model")),
                "simulate": self.simulate, "world_size": self.ranks.world}

    def save(self, finished: bool = False) -> None:
        if self.ranks.world == 1:
            write_report(self.out_dir, [i.id for i in self.items], self.records, self.header())
        else:
            write_part(self.out_dir, self.ranks.rank, self.ranks.world, self.records.values(), finished)

    def merge(self) -> None:
        """Combine the ranks' parts into report.json (module docstring of scaleout for who does it)."""
        ids = [i.id for i in self.items]
        if self.ranks.grouped:
            self.ranks.barrier()
            if self.ranks.rank == 0:
                write_report(self.out_dir, ids, read_records(self.out_dir), self.header())
                for part in part_paths(self.out_dir):
                    part.unlink(missing_ok=True)
                try:
                    (self.out_dir / PARTS_DIR).rmdir()
                except OSError:
                    pass  # not empty (something else is in it) or already gone
            self.ranks.barrier()
            return
        for _ in range(10):  # rewrite until no part changed meanwhile: the last rank to end sees them all
            seen = {p: p.stat().st_mtime_ns for p in part_paths(self.out_dir)}
            write_report(self.out_dir, ids, read_records(self.out_dir), self.header())
            if seen == {p: p.stat().st_mtime_ns for p in part_paths(self.out_dir)}:
                break

    def clean_temporaries(self, mine: list[Item]) -> None:
        """Remove the temporary files a killed run of this rank left beside its own outputs."""
        names = [path for i in mine for path in (self.output(i), *self.extras(i))]
        names.append(self.out_dir / PARTS_DIR / f"rank-{self.ranks.rank:05d}.json")
        if self.ranks.world == 1:
            names.append(self.out_dir / REPORT_NAME)
        for path in names:
            for tmp in path.parent.glob(f".{path.name}.*{TEMP_SUFFIX}"):
                tmp.unlink(missing_ok=True)

    def run(self, claim: Callable[[], None]) -> tuple[int, int, int]:
        """Restore this rank's share; ``claim`` writes the folder's recipe (called once the model has loaded)."""
        mine = self.ranks.share(self.items)
        self.clean_temporaries(mine)
        previous = read_records(self.out_dir)
        todo = []
        for item in mine:
            if self.complete(item):
                self.skip(item, previous.get(item.id))
            else:
                todo.append(item)
        if todo:
            self.denoiser()  # a model that does not load is fatal (exit 3), not a failure of each item; nothing written yet
        claim()
        self.progress.start(len(todo))
        try:
            self.save()
            groups: dict[tuple, list[Prepared]] = {}
            for item in todo:
                try:
                    p = pad(self.prepare(item), size_multiple(self.denoiser()))
                except Exception as exc:  # noqa: BLE001 - a bad item is reported and skipped
                    self.fail(item, exc)
                    self.progress.advance(1)
                    continue
                group = groups.setdefault(p.key, [])
                group.append(p)
                if len(group) >= self.batch_size:
                    self.run_group(groups.pop(p.key))
            for group in groups.values():
                self.run_group(group)
        finally:
            self.save(finished=True)
        counts = [sum(r["status"] == s for r in self.records.values()) for s in ("done", "skipped", "failed")]
        return counts[0], counts[1], counts[2]


def run_batch(
    items: Sequence[Item],
    recipe: dict[str, Any],
    prior: Denoiser | Callable[[], Denoiser],
    out_dir: str | Path,
    *,
    batch_size: int = 4,
    simulate: bool = False,
    force: bool = False,
    ranks: Ranks | None = None,
    progress: BatchProgress | None = None,
    reads: Sequence[Path] = (),
    uncertainty: bool = False,
    save_samples: bool = False,
) -> BatchResult:
    """Restore ``items`` (sorted by id) with ``recipe`` into ``out_dir``; see the module docstring.

    prior: the denoiser, or a function that loads it (called only when some item needs restoring).
    batch_size: items per network call (items of the same padded shape). simulate: inputs are clean
    images; the measurement is simulated with the recipe's operator and noise (seeded per item) and
    the clean image is the reference. force: accept a folder made with a different recipe.
    ranks: this process's share (default: a single process). uncertainty: with the recipe's samples
    > 1, also write each item's per-pixel standard deviation map; save_samples: its samples too (module
    docstring). Raises InputError for a folder made with another recipe, a bad recipe, either of these
    with fewer than 2 samples, an output name that clashes (:mod:`.names`), or a folder another batch
    is working in (locked for the whole run); item problems are recorded in the report instead.
    """
    if batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")
    ranks = ranks or Ranks()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir}: exists and is not a folder")
    checked = check_recipe(recipe)
    check_sample_flags(checked.samples, uncertainty, save_samples)
    recipe = {**checked.recipe, "batch": {"simulate": bool(simulate)}}  # resolved: every setting written
    check_outputs(items, out_dir, reads, uncertainty, checked.samples if save_samples else 0)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"--out {out_dir}: cannot create the folder ({e.strerror or e})") from None
    progress = progress or BatchProgress()
    lock = FolderLock(out_dir, ranks.rank, ranks.world, ranks.grouped, agree=ranks.total, note=progress.note)
    with lock:
        claim_folder(out_dir, recipe, force, writer=False)  # refuse another recipe's folder before any work
        runner = _Runner(items, recipe, prior, out_dir, batch_size, simulate, ranks, progress, uncertainty, save_samples)
        try:
            done, skipped, failed = runner.run(lambda: claim_folder(out_dir, recipe, force, writer=ranks.rank == 0))
        except BaseException:
            if ranks.world > 1 and not ranks.grouped:  # a process group is torn down by its launcher instead
                runner.merge()
            raise
        if ranks.world > 1:
            runner.merge()
    return BatchResult(ranks.total(done), ranks.total(skipped), ranks.total(failed), out_dir / REPORT_NAME)
