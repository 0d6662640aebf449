"""Reading images: whatever is on disk -> a [0, 1] float32 tensor (C, H, W), alpha kept apart.

Accepted: PNG, JPEG (also phone MPO files: their first frame is the photo), TIFF, WebP, BMP, GIF,
PPM/PGM; 1-, 8- and 16-bit integer samples (not 16-bit colour PPM, which Pillow cuts to 8 bits)
and 32/64-bit floating-point TIFF samples in [0, 1].
C is 1 for grey ("1", "L", "LA", "I;16", "F") and 3 for colour. The only conversions that change
how pixels are stored, all documented here, are:

- palette ("P", "PA") -> RGB, or RGBA when the palette has transparency;
- CMYK -> RGB with Pillow's plain formula (R = (1 - C)(1 - K)); an embedded ICC profile is kept
  in ``ImageData.icc_profile`` but not applied;
- YCbCr -> RGB; "RGBX" drops its padding byte; premultiplied "RGBa" is un-premultiplied;
- a single transparent colour (PNG tRNS for grey or RGB) becomes an alpha channel;
- the EXIF orientation is applied, so the tensor is the image as a viewer shows it.

Integer samples are scaled by 2^bits - 1 (16-bit keeps its full precision, 8-bit is exact); floats
must lie in [0, 1] and be finite. Everything else (a missing, empty, corrupt or truncated file, a
multi-frame file, an unknown colour mode) is an ``InputError`` with one line naming the file.

Size limit (one for every format and sample type): the width x height a file declares is checked
against :func:`max_pixels` from its header, before any pixel is decoded, so a small file that
declares a huge image (a decompression bomb) costs nothing. The limit is ``guidedinv.io.MAX_PIXELS``
when a program sets it, else the environment variable ``GUIDEDINV_MAX_PIXELS``, else
``DEFAULT_MAX_PIXELS`` (128 Mpx). Pillow's own bomb check is replaced by this one while we read,
and the decoders' warnings about a damaged file are silenced (it is read, or refused in one line).
Pillow cannot hold 16-bit colour, so 16-bit RGB(A)/LA PNGs are decoded by Pillow twice (high and
low bytes of each sample) and 16-bit or float colour TIFFs are read with tifffile.
"""
from __future__ import annotations

import logging
import os
import stat
import struct
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import InputError

__all__ = ["ImageData", "read_image", "ACCEPTED_FORMATS", "max_pixels", "check_pixels", "DEFAULT_MAX_PIXELS",
           "MAX_PIXELS_ENV"]

# 128 Mpx: every camera photo (24 Mpx with 5x to spare, 100 Mpx medium format) passes; reading one
# at the limit peaks near 3.6 GB for 8-bit RGB (28 bytes a pixel measured: samples, float32, the
# tensor) and 5.9 GB for a float64 RGB TIFF (46 bytes), a quarter of a 24 GB machine; beyond it a
# file is a bomb or a panorama that the restoration could not hold anyway.
DEFAULT_MAX_PIXELS = 128_000_000
MAX_PIXELS_ENV = "GUIDEDINV_MAX_PIXELS"

ACCEPTED_FORMATS = ("PNG", "JPEG", "TIFF", "WebP", "BMP", "GIF", "PPM")
_PILLOW_FORMATS = ("PNG", "JPEG", "TIFF", "WEBP", "BMP", "DIB", "GIF", "PPM")
_ACCEPTED_MODES = "1-bit, grey, grey+alpha, RGB, RGBA, palette, CMYK, YCbCr, 16-bit and float grey"
_PNG16_RAWMODES = ("RGB;16B", "RGBA;16B", "LA;16B")
_GREY16 = ("I;16", "I;16L", "I;16B", "I;16N")
_CONVERT = {"P": None, "PA": "RGBA", "RGBX": "RGB", "RGBa": "RGBA", "CMYK": "RGB", "YCbCr": "RGB"}
_TEXT_TAGS = {270: "ImageDescription", 305: "Software", 315: "Artist", 33432: "Copyright"}


@dataclass
class ImageData:
    """An image as read from a file: pixels in [0, 1] with alpha kept apart, and what the file said."""

    image: torch.Tensor  # (C, H, W) float32 in [0, 1]; C = 1 grey, 3 colour
    alpha: torch.Tensor | None  # (1, H, W) float32 in [0, 1], or None: never seen by a restoration
    bit_depth: int  # bits per sample in the file: 1, 8, 16, or 32/64 for floating point
    mode: str  # the file's colour mode in Pillow's names ("RGB", "I;16", "P", "CMYK", ...)
    format: str  # "PNG", "JPEG", ... as Pillow names it
    path: Path
    metadata: dict[str, str] = field(default_factory=dict)  # PNG text chunks, JPEG comment, TIFF text tags
    orientation: int = 1  # the EXIF orientation that was applied (1 = none)
    icc_profile: bytes | None = None  # kept, not applied

    @property
    def channels(self) -> int:
        return self.image.shape[0]

    @property
    def height(self) -> int:
        return self.image.shape[1]

    @property
    def width(self) -> int:
        return self.image.shape[2]

    @property
    def size(self) -> tuple[int, int]:
        """(H, W), the shape a mask for this image must have."""
        return self.height, self.width


def max_pixels() -> int:
    """The largest width x height :func:`read_image` decodes: ``guidedinv.io.MAX_PIXELS`` when set
    (not None), else ``$GUIDEDINV_MAX_PIXELS``, else ``DEFAULT_MAX_PIXELS``. InputError for a
    setting that is not a whole number > 0."""
    setting = getattr(sys.modules[__package__], "MAX_PIXELS", None)
    if setting is not None:
        if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
            raise InputError(f"guidedinv.io.MAX_PIXELS = {setting!r}: expected a whole number of pixels > 0 (or None)")
        return setting
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise InputError(f"{MAX_PIXELS_ENV}={text!r}: expected a whole number of pixels > 0, e.g. {MAX_PIXELS_ENV}=300000000")
    return value


def check_pixels(path: str | Path, width: int, height: int, what: str = "image") -> None:
    """InputError when a file declares more than :func:`max_pixels` pixels (width x height)."""
    limit = max_pixels()
    if int(width) * int(height) > limit:
        raise InputError(f"{path}: {what} declares {width}x{height} pixels ({width * height / 1e6:.1f} Mpx), over the limit of "
                         f"{limit:,} pixels ({limit / 1e6:g} Mpx); if the file is trusted and memory allows, raise the limit "
                         f"with {MAX_PIXELS_ENV}=N (environment) or guidedinv.io.MAX_PIXELS = N (Python)")


_decoding_lock = threading.Lock()
_decoding_depth = 0
_decoding_saved: tuple = ()


@contextmanager
def _decoding() -> Iterator[None]:
    """While read_image decodes: Pillow's own bomb check (a warning above 89 Mpx, an error above
    179 Mpx, at open and again at load) is off, as ``check_pixels`` replaces it (one limit for every
    format, and raising it works); Pillow's and tifffile's warnings and log lines about a damaged
    file are silenced, as the file is either read or refused with one line. Counted, so that
    overlapping reads in threads restore the settings once, when the last one ends."""
    global _decoding_depth, _decoding_saved
    loggers = [logging.getLogger("PIL"), logging.getLogger("tifffile")]
    with _decoding_lock:
        if _decoding_depth == 0:
            _decoding_saved = (Image.MAX_IMAGE_PIXELS, [log.level for log in loggers])
            Image.MAX_IMAGE_PIXELS = None
            for log in loggers:
                log.setLevel(logging.CRITICAL + 1)
        _decoding_depth += 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        with _decoding_lock:
            _decoding_depth -= 1
            if _decoding_depth == 0:
                Image.MAX_IMAGE_PIXELS = _decoding_saved[0]
                for log, level in zip(loggers, _decoding_saved[1]):
                    log.setLevel(level)


def read_image(path: str | Path) -> ImageData:
    """Read one image file into an ``ImageData`` (see the module docstring for what is accepted)."""
    path = Path(path)
    _check_file(path)
    max_pixels()  # a bad setting is reported as itself, not as a bad file
    try:
        with _decoding(), Image.open(path, formats=_PILLOW_FORMATS) as im:
            return _from_pillow(im, path)
    except InputError:
        raise
    except Image.UnidentifiedImageError:
        pass  # handled below, outside this exception's context
    except PermissionError:
        raise InputError(f"{path}: cannot read the file (permission denied)") from None
    except Image.DecompressionBombError as e:
        raise InputError(f"{path}: image too large to read safely ({e})") from None
    except _DECODER_FAULTS as e:
        raise InputError(f"{path}: corrupt or truncated image file ({str(e) or type(e).__name__})") from None
    return _unidentified(path)


# what Pillow raises on damaged files: besides OSError / SyntaxError (its documented ones), a
# corrupt TIFF directory can surface as a TypeError ("Missing dimensions") or KeyError, a bad
# field as struct.error or ZeroDivisionError (found by tests/test_fuzz_loaders.py)
_DECODER_FAULTS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError, struct.error, ZeroDivisionError,
                   OverflowError)


def _check_file(path: Path) -> None:
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise InputError(f"{path}: file not found") from None
    except (OSError, ValueError) as e:  # a name too long, a loop of links, a NUL byte, no permission on a folder
        raise InputError(f"{path}: cannot read the file ({getattr(e, 'strerror', None) or e})") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"{path}: is a folder, not an image file")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{path}: not a regular file")
    if info.st_size == 0:
        raise InputError(f"{path}: file is empty (0 bytes)")


def _unidentified(path: Path) -> ImageData:
    """Files Pillow does not open: floating-point colour TIFFs (tifffile reads them), PNGs of zero
    pixels (a clearer message than 'not an image'), and everything else."""
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return _read_tiff(path)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and 0 in (size := struct.unpack(">II", head[16:24])):
        raise InputError(f"{path}: image is empty ({size[0]}x{size[1]} pixels)")
    for magic, fmt in _SIGNATURES:
        if head.startswith(magic) and (fmt != "WebP" or head[8:12] == b"WEBP"):
            raise InputError(f"{path}: corrupt or truncated image file (a {fmt} signature, but its header cannot be read)")
    raise InputError(f"{path}: not an image file that can be read (accepted: {', '.join(ACCEPTED_FORMATS)})")


# the first bytes of accepted formats (those long enough not to begin a text file by chance): a file
# that starts like one is a damaged one
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
               (b"RIFF", "WebP"))


def _from_pillow(im: Image.Image, path: Path) -> ImageData:
    check_pixels(path, *im.size)  # from the header: nothing decoded yet
    fmt = "JPEG" if im.format == "MPO" else im.format
    frames = 1 if im.format == "MPO" else getattr(im, "n_frames", 1)
    if frames > 1:
        raise InputError(f"{path}: has {frames} frames or pages; only single-frame images are accepted")
    mode = im.mode
    if fmt == "TIFF" and mode not in _GREY16 + ("F", "I") and max(_as_tuple(im.tag_v2.get(258, 8))) > 8:
        return _read_tiff(path)  # 16-bit colour: Pillow would keep only 8 bits
    rawmode = im.tile[0][3] if im.tile and len(im.tile[0]) > 3 else None
    if fmt == "PPM" and mode == "RGB" and isinstance(rawmode, tuple) and rawmode[-1] > 255:
        raise InputError(f"{path}: 16-bit colour PPM is not supported (only 8 bits of it could be read); "
                         "accepted: 16-bit colour as PNG or TIFF")
    if fmt == "PNG" and rawmode in _PNG16_RAWMODES:
        samples, bits = _png16(path, rawmode), 16
        mode = "LA" if rawmode == "LA;16B" else mode
        im.load()  # for text chunks after the image data
    else:
        im.load()
        samples, bits = _pillow_samples(im, path)
    samples = _with_key_transparency(samples, im.info.get("transparency"), mode)
    return _finish(samples, bits, mode, fmt, path, _orientation(im), _metadata(im, fmt), im.info.get("icc_profile"))


def _pillow_samples(im: Image.Image, path: Path) -> tuple[np.ndarray, int]:
    mode = im.mode
    if mode in _CONVERT:
        target = _CONVERT[mode] or ("RGBA" if "transparency" in im.info else "RGB")
        return np.asarray(im.convert(target)), 8
    if mode == "1":
        return np.asarray(im), 1
    if mode in ("L", "LA", "RGB", "RGBA"):
        return np.asarray(im), 8
    if mode in _GREY16 or (mode == "I" and im.format == "PPM"):  # 16-bit PGM: Pillow scales it to 0..65535
        return np.asarray(im).astype(np.uint16), 16
    if mode == "F":
        return np.asarray(im), 32
    raise InputError(f"{path}: unsupported colour mode {mode!r} (accepted: {_ACCEPTED_MODES})")


def _png16(path: Path, rawmode: str) -> np.ndarray:
    """16-bit colour PNG samples: Pillow unfilters at the true 16-bit pixel size and keeps one byte
    of each sample ('...;16B' the high, '...;16L' the low one); two decodes give the full value."""

    def decode(as_rawmode: str) -> np.ndarray:
        with Image.open(path, formats=("PNG",)) as im:
            im.tile = [(*im.tile[0][:3], as_rawmode)]
            im.load()
            return np.asarray(im).astype(np.uint16)

    if rawmode == "LA;16B":  # 32 bits a pixel, read as raw RGBA bytes: L high, L low, A high, A low
        b = decode("RGBA")
        return (b[..., 0::2] << 8) | b[..., 1::2]
    return (decode(rawmode) << 8) | decode(rawmode.replace(";16B", ";16L"))


def _with_key_transparency(samples: np.ndarray, key: object, mode: str) -> np.ndarray:
    """A PNG tRNS colour key on grey or RGB becomes an alpha channel (transparent where equal)."""
    if key is None or mode not in ("L", "RGB") + _GREY16 or isinstance(key, bytes):
        return samples
    s = samples if samples.ndim == 3 else samples[..., None]
    if s.shape[-1] != len(_as_tuple(key)):
        return samples
    opaque = (s != np.asarray(_as_tuple(key), dtype=s.dtype)).any(-1, keepdims=True)
    return np.concatenate([s, opaque.astype(s.dtype) * np.iinfo(s.dtype).max], -1)


def _read_tiff(path: Path) -> ImageData:
    """TIFFs Pillow cannot hold exactly (16-bit or floating-point colour), through tifffile."""
    try:
        import tifffile
    except ImportError:
        raise InputError(f"{path}: 16-bit or floating-point colour TIFF needs the tifffile package (pip install tifffile)") from None
    try:
        with _decoding(), tifffile.TiffFile(path) as tf:
            if len(tf.pages) != 1:
                raise InputError(f"{path}: has {len(tf.pages)} frames or pages; only single-frame images are accepted")
            page = tf.pages[0]
            check_pixels(path, page.imagewidth, page.imagelength)  # from the tags, before decoding
            axes, n = page.axes, int(page.samplesperpixel)
            photometric, extras = int(page.photometric), tuple(page.extrasamples)
            _check_tiff_layout(path, axes, n, photometric, extras)  # before decoding too
            samples = page.asarray()
            tags = {tag.code: tag.value for tag in page.tags.values()}
    except InputError:
        raise
    except Exception as e:  # tifffile raises many kinds (TiffFileError, ValueError, missing codecs)
        raise InputError(f"{path}: corrupt or unreadable TIFF ({e})") from None
    if axes == "SYX":
        samples = np.moveaxis(samples, 0, -1)
    if samples.shape[:2] != (page.imagelength, page.imagewidth) or (samples.shape[2:] or (1,)) != (n,):
        raise InputError(f"{path}: corrupt TIFF: decoded shape {samples.shape} differs from the declared "
                         f"{page.imagewidth}x{page.imagelength}x{n}")
    if samples.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        raise InputError(f"{path}: unsupported TIFF sample type {samples.dtype}; accepted: 8/16-bit unsigned or float")
    mode = ("L", "LA", "RGB", "RGBA")[n - 1]
    metadata = {name: tags[code] for code, name in _TEXT_TAGS.items() if isinstance(tags.get(code), str)}
    orientation = tags.get(274, 1)
    icc = tags.get(34675)
    return _finish(samples, samples.dtype.itemsize * 8, mode, "TIFF", path, orientation, metadata,
                   bytes(icc) if icc is not None else None)


def _check_tiff_layout(path: Path, axes: str, n: int, photometric: int, extras: tuple) -> None:
    colour = {1: 1, 2: 3}.get(photometric)  # MINISBLACK, RGB
    ok_alpha = n == (colour or 0) + 1 and extras[:1] in ((0,), (2,))  # unspecified or unassociated
    if axes not in ("YX", "YXS", "SYX") or colour is None or not (n == colour or ok_alpha):
        raise InputError(f"{path}: unsupported TIFF layout (photometric {photometric}, {n} samples, extra {extras}); "
                         "accepted: grey or RGB, optionally with one unassociated alpha channel")


def _finish(samples: np.ndarray, bits: int, mode: str, fmt: str, path: Path, orientation: object,
            metadata: dict[str, str], icc: bytes | None) -> ImageData:
    s = samples if samples.ndim == 3 else samples[..., None]
    h, w, n = s.shape
    if h == 0 or w == 0:
        raise InputError(f"{path}: image is empty ({w}x{h} pixels)")
    if s.dtype.kind == "f":
        if not np.isfinite(s).all():
            raise InputError(f"{path}: floating-point image contains NaN or infinite values; accepted: finite values in [0, 1]")
        lo, hi = float(s.min()), float(s.max())
        if lo < 0 or hi > 1:
            raise InputError(f"{path}: floating-point image has values in [{lo:.4g}, {hi:.4g}]; accepted: values in [0, 1]")
        x = s.astype(np.float32)
    elif s.dtype == np.bool_:
        x = s.astype(np.float32)
    else:
        x = s.astype(np.float32) / np.float32(np.iinfo(s.dtype).max)
    # other values (reserved numbers, a malformed tag) are ignored, as viewers do
    orientation = int(orientation) if isinstance(orientation, (int, np.integer)) and int(orientation) in _ORIENT else 1
    t = torch.from_numpy(np.ascontiguousarray(_ORIENT[orientation](x).transpose(2, 0, 1)))
    colour = 1 if n <= 2 else 3
    alpha = t[colour:].clone() if n > colour else None
    return ImageData(t[:colour].clone() if alpha is not None else t, alpha, bits, mode, fmt, path,
                     metadata, orientation, icc)


# EXIF orientation -> how to turn the stored (H, W, S) array into the displayed one (as Pillow's
# ImageOps.exif_transpose: 2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90 clockwise,
# 7 transverse, 8 rotate 90 anticlockwise).
_ORIENT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:  # unreadable EXIF is ignored, as every viewer does
        return 1


def _metadata(im: Image.Image, fmt: str) -> dict[str, str]:
    if fmt == "PNG":
        return {k: str(v) for k, v in im.text.items()}
    if fmt == "TIFF":
        return {name: v for code, name in _TEXT_TAGS.items() if isinstance(v := im.tag_v2.get(code), str)}
    comment = im.info.get("comment")
    if isinstance(comment, bytes):
        comment = comment.decode("utf-8", "replace")
    return {"comment": comment} if isinstance(comment, str) and comment else {}


def _as_tuple(v: object) -> tuple:
    return v if isinstance(v, tuple) else (v,)
