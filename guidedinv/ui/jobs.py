"""The page's jobs: one worker thread runs them one at a time from a queue, so two browser tabs are
queued, never mixed; each job has its own folder under the server's temporary folder, and only the
last ``keep`` finished jobs are kept (memory and disk stay bounded).

A job runs as the commands run theirs (:func:`guidedinv.app.job.run_job`, editing included), with a
per-step callback for the progress, then writes what they write (:func:`guidedinv.app.job.write_job_outputs`):
the result PNG and its recipe, the mask as used, the labelled comparison picture and, when asked, the
trajectory GIF; with N >= 2 posterior samples the result is their mean and the uncertainty map their
per-pixel spread. The loaded prior is kept for the next job (one at a time).
"""
from __future__ import annotations

import itertools
import queue
import secrets
import shutil
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import GuidedinvError
from .form import FILES, Prepared, display

__all__ = ["Job", "JobQueue"]


@dataclass
class Job:
    """One submitted form. ``state``: queued -> running -> done | failed; ``error`` is one line."""

    id: str
    number: int
    folder: Path
    prepared: Prepared
    state: str = "queued"
    step: int = 0
    total: int = 0
    error: str | None = None
    files: list[str] = field(default_factory=list)  # the FILES keys written
    started: float | None = None
    finished: float | None = None
    seconds: float | None = None

    def status(self, position: int) -> dict[str, Any]:
        request = self.prepared.request
        return {"id": self.id, "state": self.state, "position": position, "step": self.step, "total": self.total,
                "error": self.error, "files": {k: f"/api/jobs/{self.id}/{FILES[k]}" for k in self.files},
                "method": request.method, "steps": request.steps, "seed": request.seed, "samples": request.samples,
                "seconds": self.seconds,
                "size": [int(self.prepared.data.width), int(self.prepared.data.height)]}


class JobQueue:
    """Jobs in submission order, run by one worker thread (``start=False``: call :meth:`start` later)."""

    def __init__(self, root: Path, device: str = "auto", keep: int = 16, start: bool = True) -> None:
        self.root, self.device, self.keep = Path(root), device, keep
        self._jobs: dict[str, Job] = {}
        self._pending: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._prior: tuple[tuple, Any] | None = None
        self._thread = threading.Thread(target=self._work, name="guidedinv-ui-worker", daemon=True)
        if start:
            self.start()

    def start(self) -> None:
        if not self._thread.is_alive():
            self._thread.start()

    def new_folder(self) -> tuple[str, int, Path]:
        """A fresh job id, its number and its (new, empty) folder under the root."""
        number = next(self._numbers)
        job_id = f"{number}-{secrets.token_hex(6)}"
        folder = self.root / f"job-{job_id}"
        folder.mkdir(parents=True)
        return job_id, number, folder

    def submit(self, job_id: str, number: int, folder: Path, prepared: Prepared) -> Job:
        job = Job(job_id, number, folder, prepared)
        with self._lock:
            self._jobs[job_id] = job
        self._pending.put(job)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def waiting(self) -> int:
        """How many jobs wait to run (the running one not counted)."""
        with self._lock:
            return sum(1 for j in self._jobs.values() if j.state == "queued")

    def position(self, job: Job) -> int:
        """0 when running or finished, else how many jobs run before it (the running one included)."""
        if job.state != "queued":
            return 0
        with self._lock:
            return sum(1 for j in self._jobs.values() if j.number < job.number and j.state in ("queued", "running"))

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker after the job it runs (queued jobs are dropped)."""
        self._pending.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- the worker -------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            job = self._pending.get()
            if job is None:
                return
            job.state, job.started = "running", time.time()
            try:
                self._run(job)
                job.state = "done"
            except GuidedinvError as exc:
                job.error, job.state = display(str(exc), job.folder, job.prepared.names), "failed"
            except Exception as exc:  # a bug must not stop the server: the page shows one line, the log the rest
                traceback.print_exc(file=sys.stderr)
                job.error, job.state = f"internal error ({type(exc).__name__}): {exc}", "failed"
            job.finished = time.time()
            job.seconds = round(job.finished - job.started, 2)
            self._forget_old()

    def _forget_old(self) -> None:
        with self._lock:
            finished = sorted((j for j in self._jobs.values() if j.state in ("done", "failed")), key=lambda j: j.number)
            for old in finished[: max(0, len(finished) - self.keep)]:
                del self._jobs[old.id]
                shutil.rmtree(old.folder, ignore_errors=True)

    def _load_models(self, request: Any) -> tuple[Any, Any]:
        classifier = request.guidance.classifier if request.guidance is not None else None
        key = (request.model, request.tile, request.model_flags, classifier, self.device)
        if self._prior is None or self._prior[0] != key:
            from ..app.job import load_models

            self._prior = None  # the old one freed before the new one loads
            self._prior = (key, load_models(request, self.device, "fp32"))
        return self._prior[1]

    def _run(self, job: Job) -> None:
        from ..app.job import run_job, write_job_outputs
        from ..app.recipes import dump_toml

        p, request = job.prepared, job.prepared.request
        denoiser, classifier = self._load_models(request) if request.uses_network else (None, None)

        def callback(info: Any) -> None:
            job.step, job.total = info.index + 1, info.num_steps

        result = run_job(p.job, denoiser, classifier, callback)
        # the recipe names an uploaded kernel or edit mask by its file name, not by its place in the temporary folder
        written = write_job_outputs(p.job, result, display(dump_toml(request.recipe), job.folder, p.names))
        job.files += [key for key, name in FILES.items() if job.folder / name in written]
