"""Finding image files: the one list of image suffixes and the one folder listing.

Every command that takes a folder of images (batch, eval, bench, training) finds them here, so an
image that one of them sees is an image for all of them. A file counts when its suffix
(case-insensitive) is one that :func:`guidedinv.io.read_image` reads and no part of its path below
the folder starts with a dot (hidden files and everything in hidden folders are skipped).
"""
from __future__ import annotations

import os
from pathlib import Path, PurePath

__all__ = ["IMAGE_SUFFIXES", "is_image_file", "list_images"]

# the suffixes of the formats read_image accepts (PPM covers Netpbm's .pbm / .pgm / .pnm)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif", ".ppm", ".pgm", ".pbm", ".pnm")


def _visible_image_name(relative: PurePath) -> bool:
    return relative.suffix.lower() in IMAGE_SUFFIXES and not any(p.startswith(".") for p in relative.parts)


def is_image_file(path: str | Path, root: str | Path | None = None) -> bool:
    """Whether ``path`` is a file that :func:`list_images` would list: an image suffix and, in its
    path relative to ``root`` (its name alone when root is None), no part that starts with a dot."""
    path = Path(path)
    relative = path.relative_to(root) if root is not None else PurePath(path.name)
    return _visible_image_name(relative) and path.is_file()


def list_images(folder: str | Path, recursive: bool = False) -> list[Path]:
    """The image files in ``folder`` (and, with ``recursive``, in its sub-folders but not in hidden
    ones), sorted by path so every run and every process sees one order. Symbolic links to files
    count; links to folders are not followed. An empty list when there are none; a missing folder
    is the caller's to report (NotADirectoryError / FileNotFoundError from here)."""
    folder = Path(folder)
    if not recursive:
        return sorted(p for p in folder.iterdir() if _visible_image_name(PurePath(p.name)) and p.is_file())
    if not folder.is_dir():
        raise (NotADirectoryError if folder.exists() else FileNotFoundError)(f"{folder}: not a folder")
    found = []
    for top, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # prune: never walk into hidden folders
        found += [Path(top, f) for f in files if _visible_image_name(PurePath(f)) and Path(top, f).is_file()]
    return sorted(found)
