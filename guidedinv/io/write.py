"""Writing images: a [0, 1] tensor (C, H, W) -> a PNG with text metadata, written atomically.

Every output is a PNG: 8-bit by default, 16-bit on request (Pillow cannot write 16-bit colour, so
this file has its own small encoder, used for every depth so there is one code path). Metadata
(tool version, model, recipe, seed, ...) goes into tEXt chunks, or iTXt (UTF-8) for values that
Latin-1 cannot hold. Files are written to a hidden temporary file in the destination folder and
renamed over the target (``os.replace``), so a killed process leaves either the old file, the
new file, or a stray ``.NAME.*.guidedinv-tmp`` file, never a half-written output.
"""
from __future__ import annotations

import os
import secrets
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..errors import InputError

__all__ = ["write_image", "encode_png", "atomic_write_bytes", "TEMP_SUFFIX"]

TEMP_SUFFIX = ".guidedinv-tmp"
_COLOUR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # samples per pixel -> PNG colour type (grey, grey+alpha, RGB, RGBA)


def write_image(path: str | Path, image: torch.Tensor, alpha: torch.Tensor | None = None,
                metadata: Mapping[str, str] | None = None, bit_depth: int = 8,
                icc_profile: bytes | None = None) -> Path:
    """Write ``image`` (C, H, W), C = 1 or 3, values in [0, 1], as a PNG at ``path``, atomically.

    alpha: (1, H, W) or (H, W) in [0, 1], e.g. ``ImageData.alpha`` of the input, put back as the
    PNG's alpha channel. metadata: text entries; "Software" defaults to "guidedinv VERSION".
    bit_depth: 8 or 16 (samples are round(x * (2^bits - 1)), so reading back is exact).
    icc_profile: e.g. ``ImageData.icc_profile``, stored as-is. Returns the path written.
    Raises InputError for a name that is not .png or a folder that cannot be written.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError(f"{path}: outputs are PNG files; give a name ending in .png")
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    text = {"Software": f"guidedinv {__version__}", **(metadata or {})}
    atomic_write_bytes(path, encode_png(_quantise(image, alpha, bit_depth), text, icc_profile))
    return path


def _quantise(image: torch.Tensor, alpha: torch.Tensor | None, bit_depth: int) -> np.ndarray:
    """(C, H, W) [0, 1] image (+ alpha) -> (H, W, S) uint8 or uint16 samples."""
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"image must be (C, H, W) with C = 1 or 3, got shape {tuple(image.shape)}")
    planes = [image]
    if alpha is not None:
        alpha = alpha if alpha.dim() == 3 else alpha.unsqueeze(0)
        if alpha.shape != (1, *image.shape[1:]):
            raise ValueError(f"alpha must be (1, H, W) = (1, {image.shape[1]}, {image.shape[2]}), got {tuple(alpha.shape)}")
        planes.append(alpha)
    x = torch.cat([p.detach().to("cpu", torch.float64) for p in planes])
    if not torch.isfinite(x).all():
        raise ValueError("image to write contains NaN or infinite values")
    lo, hi = x.min().item(), x.max().item()
    if lo < 0 or hi > 1:
        raise ValueError(f"image to write must lie in [0, 1], found [{lo:.4g}, {hi:.4g}] (use from_model_range or clamp)")
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    return (x * (2**bit_depth - 1)).round().numpy().astype(dtype).transpose(1, 2, 0)


def encode_png(samples: np.ndarray, text: Mapping[str, str] | None = None, icc_profile: bytes | None = None) -> bytes:
    """PNG bytes of (H, W, S) uint8 or uint16 samples, S = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA."""
    h, w, n = samples.shape
    depth = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}[samples.dtype]
    rows = samples.astype(">u2" if depth == 16 else np.uint8).reshape(h, w * n).view(np.uint8)
    chunks = [(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, _COLOUR_TYPE[n], 0, 0, 0))]
    if icc_profile:
        chunks.append((b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc_profile)))
    chunks += [_text_chunk(k, v) for k, v in (text or {}).items()]
    chunks += [(b"IDAT", zlib.compress(_filter_rows(rows, n * depth // 8), 6)), (b"IEND", b"")]
    out = [b"\x89PNG\r\n\x1a\n"]
    for kind, data in chunks:
        out += [struct.pack(">I", len(data)), kind, data, struct.pack(">I", zlib.crc32(kind + data))]
    return b"".join(out)


def _filter_rows(raw: np.ndarray, bpp: int) -> bytes:
    """PNG scanlines with an adaptive filter per row (the usual heuristic: the smallest sum of
    |filtered byte| as a signed value, among None, Sub, Up, Average and Paeth; PNG spec 12.8)."""
    h, length = raw.shape
    out = np.empty((h, length + 1), np.uint8)
    step = max(1, 2**20 // length)  # bound the memory of the five candidates
    for start in range(0, h, step):
        x = raw[start : start + step].astype(np.int16)
        b = np.concatenate([raw[start - 1 : start] if start else np.zeros((1, length), np.uint8),
                            raw[start : start + step - 1]]).astype(np.int16)[: len(x)]
        a, c = np.zeros_like(x), np.zeros_like(b)
        a[:, bpp:], c[:, bpp:] = x[:, :-bpp], b[:, :-bpp]
        pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        cand = (np.stack([x, x - a, x - b, x - (a + b) // 2, x - paeth]) & 0xFF).astype(np.uint8)
        cost = np.minimum(cand, 256 - cand.astype(np.int32)).sum(-1)
        best = cost.argmin(0)
        out[start : start + len(x), 0] = best
        out[start : start + len(x), 1:] = cand[best, np.arange(len(x))]
    return out.tobytes()


def _text_chunk(key: str, value: str) -> tuple[bytes, bytes]:
    if not isinstance(key, str) or not isinstance(value, str):
        raise TypeError(f"metadata must map str to str, got {key!r}: {type(value).__name__}")
    printable = all(32 <= ord(ch) <= 126 or 161 <= ord(ch) <= 255 for ch in key)
    if not (1 <= len(key) <= 79 and printable and key == key.strip() and "  " not in key):
        raise InputError(f"metadata key {key!r}: PNG keys are 1-79 Latin-1 letters, without leading, trailing or double spaces")
    if "\x00" in value:
        raise InputError(f"metadata value of {key!r} contains a NUL character, which PNG text cannot hold")
    try:
        return b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1")
    except UnicodeEncodeError:  # iTXt: keyword, no compression, empty language and translated keyword
        return b"iTXt", key.encode("latin-1") + b"\x00\x00\x00\x00\x00" + value.encode("utf-8")


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that the file is either the old one or complete, never partial.

    The bytes go to a hidden temporary file in the same folder (same file system), are flushed to
    disk, and the temporary is renamed over ``path``. The folder is created if missing; a folder
    that cannot be written is an InputError naming it.
    """
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name to write")
    tmp = folder / f".{path.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as e:
        raise InputError(f"cannot write to folder {folder}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise InputError(f"cannot write {path}: {e.strerror or e}") from None
        raise
    _fsync_folder(folder)
    return path


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
