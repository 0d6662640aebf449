"""The output folder: its lock and its recipe.

``OUT/recipe.toml`` holds the resolved recipe of the results in it, so a rerun with a different
recipe is refused instead of mixing results (unless forced).

:class:`FolderLock`: one batch at a time per output folder. Two processes on one folder would both
redo every item and remove each other's temporary files, so a run holds an OS file lock (``flock``)
on ``OUT/.guidedinv-batch.lock`` from before it reads the folder until it ends; a second process is
refused at once, naming the first from the sidecar ``OUT/.guidedinv-batch.lock.json`` (pid, host,
start time, command). The OS drops the lock when its process dies, however it dies, so a lock is
never stale; a sidecar left by a killed run is replaced with a one-line note. The ranks of one job
share it: under torchrun (a process group) rank 0 holds it for all; ranks without a process group
(WORLD_SIZE and RANK only) hold it shared, each with its own ``.guidedinv-batch.rank-R.lock``, so
they exclude a single-process run and the same rank of another job, not each other. A process only
ever removes its own lock files, while it holds them.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import InputError
from ...io import TEMP_SUFFIX, atomic_write_bytes
from ..recipes import dump_toml

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock (said in a note when a run starts)
    fcntl = None  # type: ignore[assignment]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["RECIPE_NAME", "LOCK_NAME", "canonical", "claim_folder", "FolderLock"]

RECIPE_NAME = "recipe.toml"
LOCK_NAME = ".guidedinv-batch.lock"


def canonical(recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe as it reads back from TOML (the form compared and hashed)."""
    return tomllib.loads(dump_toml(recipe))


def _differences(have: Any, want: Any, prefix: str = "") -> list[str]:
    if isinstance(have, dict) and isinstance(want, dict):
        keys = sorted(set(have) | set(want))
        return [d for k in keys for d in _differences(have.get(k), want.get(k), f"{prefix}{k}.")]
    return [] if have == want else [f"{prefix.rstrip('.')}: {have!r} -> {want!r}"]


def claim_folder(out_dir: Path, recipe: dict[str, Any], force: bool, writer: bool = True) -> None:
    """Write ``recipe.toml`` into ``out_dir``; refuse a folder made with another recipe unless ``force``.

    writer: whether this process writes the file (rank 0; every rank checks).
    """
    path, text = out_dir / RECIPE_NAME, dump_toml(recipe)
    wanted = tomllib.loads(text)
    if path.exists():
        try:
            have: Any = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            have = None
        if have == wanted:
            return
        if not force:
            diff = "; ".join(_differences(have, wanted)[:4]) if isinstance(have, dict) else "unreadable recipe.toml"
            raise InputError(f"{out_dir} holds results of a different recipe ({diff}); use another --out folder, "
                             "or --force to replace its recipe.toml and redo the items made with the old one")
    if writer:
        atomic_write_bytes(path, text.encode())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # another user's process (or a pid we cannot ask about): assume it runs
    return True


def _sidecar(lock: Path) -> Path:
    return lock.with_name(lock.name + ".json")


def _read_holder(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None


def _who(holder: dict[str, Any]) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    rank = f", rank {holder['rank']} of {holder['world']}" if holder.get("world", 1) > 1 else ""
    return f"pid {holder['pid']} on {holder.get('host', '?')}, started {started}{rank}"


class FolderLock:
    """The lock of one batch run on ``out_dir`` (module docstring); a context manager.

    rank, world: this process's place among the job's processes; grouped: they share a process
    group (only rank 0 locks; the others learn the outcome from ``agree``, a function that sums an
    int over the ranks). note: where a one-line note goes (a replaced sidecar, no locking possible).
    """

    def __init__(self, out_dir: Path, rank: int = 0, world: int = 1, grouped: bool = False,
                 agree: Callable[[int], int] | None = None, note: Callable[[str], None] | None = None):
        self.out_dir, self.rank, self.world, self.grouped = Path(out_dir), rank, world, grouped
        self.agree, self.note = agree, note or (lambda message: None)
        self.held: list[tuple[int, Path, bool]] = []  # (fd, lock file, ours to remove with its sidecar)

    # ---- the OS lock
    def _flock(self, path: Path, exclusive: bool) -> int | None:
        """An open descriptor holding ``path``'s lock, or None when another process holds it."""
        for _ in range(100):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as e:
                raise InputError(f"--out {self.out_dir}: cannot create its lock file {path.name} ({e.strerror or e})") from None
            try:
                fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            except OSError as e:  # e.g. a network file system without locks
                os.close(fd)
                self.note(f"cannot lock {self.out_dir} ({e.strerror or e}); another batch on this folder would not be stopped")
                return -1
            try:  # the holder before us removes the file as it lets go: make sure we hold the file that is there now
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)
        raise InputError(f"--out {self.out_dir}: its lock file {path.name} keeps being replaced; is another batch starting?")

    def _refuse(self) -> InputError:
        holders: list[dict[str, Any]] = []
        for _ in range(20):  # the holder writes its sidecar just after it takes the lock
            found = [_read_holder(p) for p in [_sidecar(self.out_dir / LOCK_NAME), *self.out_dir.glob(".guidedinv-batch.rank-*.lock.json")]]
            holders = [h for h in found if h and (h.get("host") != socket.gethostname() or _alive(h["pid"]))]
            if holders:
                break
            time.sleep(0.05)
        who = _who(holders[0]) + (f"; and {len(holders) - 1} more" if len(holders) > 1 else "") if holders else "its pid not written yet"
        return InputError(f"{self.out_dir} is in use by another guidedinv batch ({who}); wait for it to end, or use another --out")

    def _claim(self, fd: int, path: Path) -> None:
        """Write our sidecar beside the lock we hold; note a sidecar left by a process that died holding it."""
        side = _sidecar(path)
        old = _read_holder(side)
        if old and old.get("pid") != os.getpid():
            here = old.get("host") == socket.gethostname()
            gone = "which is no longer running" if here and not _alive(old["pid"]) else "which no longer holds it"
            self.note(f"took over the lock of {self.out_dir} left by {_who(old)}, {gone}")
        for tmp in path.parent.glob(f".{side.name}.*{TEMP_SUFFIX}"):  # a killed holder's half-written sidecar
            tmp.unlink(missing_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "rank": self.rank,
              "world": self.world, "command": " ".join(["guidedinv", *sys.argv[1:]])}
        atomic_write_bytes(side, (json.dumps(me) + "\n").encode())
        self.held.append((fd, path, True))

    # ---- taking and giving back
    def acquire(self) -> FolderLock:
        if fcntl is None:  # pragma: no cover
            self.note(f"no file locking on this system: another batch on {self.out_dir} would not be stopped")
            return self
        main = self.out_dir / LOCK_NAME
        if self.grouped and self.world > 1:  # rank 0 locks for the job; every rank learns whether it could
            fd = self._flock(main, exclusive=True) if self.rank == 0 else -1
            refused = 0 if fd is not None else 1
            if (self.agree(refused) if self.agree is not None else refused):
                if self.rank == 0:
                    raise self._refuse()
                raise InputError(f"{self.out_dir} is in use by another guidedinv batch (rank 0 says who); "
                                 "wait for it to end, or use another --out")
            if self.rank == 0 and fd is not None and fd >= 0:
                self._claim(fd, main)
            return self
        if self.world > 1:  # ranks without a process group: shared among themselves, exclusive per rank
            fd = self._flock(main, exclusive=False)
            if fd is None:
                raise self._refuse()
            if fd >= 0:
                self.held.append((fd, main, False))
            own = self.out_dir / f".guidedinv-batch.rank-{self.rank:05d}.lock"
            fd = self._flock(own, exclusive=True)
            if fd is None:
                self.release()
                raise self._refuse()
            if fd >= 0:
                self._claim(fd, own)
            return self
        fd = self._flock(main, exclusive=True)
        if fd is None:
            raise self._refuse()
        if fd >= 0:
            self._claim(fd, main)
        return self

    def release(self) -> None:
        """Remove our sidecars and lock files (still holding them), then let go."""
        while self.held:
            fd, path, ours = self.held.pop()
            try:
                if ours:
                    _sidecar(path).unlink(missing_ok=True)
                    path.unlink(missing_ok=True)
            finally:
                os.close(fd)  # closing the descriptor releases the lock

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
