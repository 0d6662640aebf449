"""User-facing errors. The command line prints ``str(error)`` as one line and exits non-zero;
the Python API raises them as ordinary exceptions. Messages name the bad input and what would be
accepted."""
from __future__ import annotations

__all__ = ["GuidedinvError", "InputError", "ModelError", "DownloadError"]


class GuidedinvError(ValueError):
    """Base class of every error caused by what the user gave us (not by a bug)."""

    exit_code = 2


class InputError(GuidedinvError):
    """A bad image, mask, kernel, option value or recipe."""

    exit_code = 2


class ModelError(GuidedinvError):
    """A checkpoint that cannot be loaded: unknown layout, corrupt file, unsafe pickle, unknown name."""

    exit_code = 3


class DownloadError(GuidedinvError):
    """A download that failed or could not be verified (offline, size or checksum mismatch)."""

    exit_code = 4
