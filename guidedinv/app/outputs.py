"""Output safety, checked before any work: every path a command will write is compared with every
path it reads (after resolving symbolic links, and by device and inode, so a hard link to an input
is caught too), with the other outputs, and checked for its suffix and writability. A clash is one
InputError naming both flags; nothing has been written when it is raised."""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

__all__ = ["Read", "Write", "check_paths", "check_disjoint"]


@dataclass(frozen=True)
class Read:
    """A file the command reads: ``label`` is how the user named it (e.g. "IMAGE", "--mask")."""

    label: str
    path: Path


@dataclass(frozen=True)
class Write:
    """A file the command writes; ``suffixes``: the accepted endings (lower case, with the dot)."""

    label: str
    path: Path
    suffixes: tuple[str, ...] = ()
    folder: bool = False  # an output folder (batch), not a file


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _same(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    ia, ib = _identity(a), _identity(b)
    return ia is not None and ia == ib


def _writable(w: Write) -> None:
    path = w.path
    if w.folder:
        if path.exists() and not path.is_dir():
            raise InputError(f"{w.label} {path}: exists and is not a folder")
        parent = path if path.exists() else next((p for p in path.resolve().parents if p.exists()), Path("/"))
    else:
        if w.suffixes and path.suffix.lower() not in w.suffixes:
            raise InputError(f"{w.label} {path}: the file name must end in {' or '.join(w.suffixes)}")
        if path.is_dir():
            raise InputError(f"{w.label} {path}: is a folder; give a file name")
        if path.exists() and not path.stat().st_mode & 0o222:  # mode bits, not access(): root may write anything
            raise InputError(f"{w.label} {path}: the file is read-only (chmod u+w it, or choose another name)")
        parent = path.resolve().parent
        if not parent.exists():
            blocker = next((p for p in parent.parents if p.exists()), None)
            if blocker is not None and not blocker.is_dir():
                raise InputError(f"{w.label} {path}: {blocker} is a file, not a folder")
            parent = blocker or Path("/")
        elif not parent.is_dir():
            raise InputError(f"{w.label} {path}: {parent} is a file, not a folder")
    if not parent.is_dir():
        raise InputError(f"{w.label} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK) or not parent.stat().st_mode & 0o222:
        raise InputError(f"{w.label} {path}: the folder {parent} is not writable")


def check_paths(reads: Iterable[Read], writes: Sequence[Write]) -> None:
    """InputError unless every write is writable, distinct from every read and from the other writes."""
    reads = [r for r in reads if r.path is not None]
    for i, w in enumerate(writes):
        _writable(w)
        for r in reads:
            if w.folder:  # a batch folder: its per-item outputs are checked against the inputs by the runner
                continue
            if _same(w.path, r.path):
                raise InputError(f"{w.label} {w.path} is also {r.label} (a file this command reads); choose another "
                                 "output name")
        for other in writes[:i]:
            if not other.folder and not w.folder and _same(w.path, other.path):
                raise InputError(f"{w.label} {w.path} and {other.label} {other.path} are the same file; give them "
                                 "different names")


def check_disjoint(reads: Iterable[Read], writes: Iterable[Write], hint: str) -> None:
    """InputError if any write is the same file as any read (by resolved path, or by device and inode
    for files that exist): linear in the number of paths, for batches of many items."""
    by_path: dict[Path, Read] = {}
    by_inode: dict[tuple[int, int], Read] = {}
    for r in reads:
        if r.path is None:
            continue
        by_path.setdefault(r.path.resolve(), r)
        ident = _identity(r.path)
        if ident is not None:
            by_inode.setdefault(ident, r)
    for w in writes:
        r = by_path.get(w.path.resolve())
        if r is None:
            ident = _identity(w.path)
            r = by_inode.get(ident) if ident is not None else None
        if r is not None:
            raise InputError(f"{w.label} {w.path} is also {r.label} {r.path} (a file this command reads); {hint}")
