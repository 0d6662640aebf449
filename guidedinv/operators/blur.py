"""Blur: A x = k * x, the same 2-D kernel convolved with every channel; output has the image's size.

Convolution, not correlation (the two differ by a flip, which matters for motion kernels): with the
kernel's origin at (kh // 2, kw // 2), y[i, j] = sum_{a, b} k[a, b] x[i - a + kh//2, j - b + kw//2]
(scipy.ndimage.convolve, USRNet/DiffPIR's FFT convention). Kernels are normalised to sum to 1 by
default; one that does not sum to a positive number is refused.

boundary (what x is outside the image):
    "circular"   periodic: A is diagonal in Fourier, so AT, A^+ and the proximal step are exact
                 FFT formulas (DiffPIR's deblurring model; scipy mode 'wrap').
    "reflect"    mirrored without repeating the edge pixel (c b | a b c d | c b): DPS's
                 ReflectionPad2d (torch 'reflect', scipy mode 'mirror').
    "symmetric"  mirrored with the edge pixel repeated (b a | a b c d | d c): MATLAB 'symmetric',
                 scipy mode 'reflect'.
The padded modes work for kernels larger than the image (the extension repeats), their adjoint
folds the padding back exactly, and their A^+ and proximal step use conjugate gradients.

Kernels: :func:`gaussian_kernel`, :func:`motion_kernel` (a seeded random camera-shake trajectory),
:func:`load_kernel` (.npy, .npz with a key, or an image file such as .png). A kernel file is
untrusted: its header is checked (version, dtype, shape, declared size against the bytes present
and against ``guidedinv.io.max_pixels()``) before any data is read, nothing is unpickled, and
every fault is one InputError naming the file. :func:`check_kernel_fits` refuses a kernel larger
than the image it blurs.
"""
from __future__ import annotations

import math
import struct
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .base import LinearOperator, check_image
from .spectral import Fourier

__all__ = ["Blur", "check_kernel", "check_kernel_fits", "gaussian_kernel", "motion_kernel", "load_kernel", "boundary_index"]

Boundary = Literal["circular", "reflect", "symmetric"]
BOUNDARIES = ("circular", "reflect", "symmetric")


def check_kernel(kernel: torch.Tensor | np.ndarray, normalize: bool = True) -> torch.Tensor:
    """A float64 (kh, kw) kernel; (1, kh, kw) and (1, 1, kh, kw) are squeezed. InputError unless it is
    a 2-D array of real numbers, finite, and sums to a positive number; scaled to sum to 1 when
    ``normalize``."""
    if not isinstance(kernel, torch.Tensor):
        a = np.asarray(kernel)
        if a.dtype.kind not in "iuf":
            raise InputError(f"a blur kernel must hold real numbers (float or integer), got dtype {a.dtype}")
        kernel = torch.from_numpy(np.array(a, dtype=np.float64))  # a copy: float16 / longdouble too, read-only arrays
    k = kernel
    while k.ndim > 2 and k.shape[0] == 1:
        k = k[0]
    if k.ndim != 2 or k.numel() == 0:
        raise InputError(f"a blur kernel must be a 2-D array (kh, kw), got shape {tuple(k.shape)}")
    if k.is_complex() or k.dtype == torch.bool:
        raise InputError(f"a blur kernel must hold real numbers, got {k.dtype}")
    k = k.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(k).all()):
        raise InputError("blur kernel holds NaN or infinite values; accepted: finite numbers summing to a positive number")
    if not bool(k.any()):
        raise InputError(f"blur kernel is all zeros ({k.shape[1]}x{k.shape[0]}); it must sum to a positive number "
                         "(it is then scaled to sum to 1)")
    total = float(k.sum())
    if not math.isfinite(total):
        raise InputError(f"blur kernel's sum overflows ({total}): its values are too large; scale them down "
                         "(it is scaled to sum to 1 anyway)")
    if not total > 0:
        raise InputError(f"blur kernel sums to {total:.4g}; it must sum to a positive number (it is then scaled to sum to 1)")
    if not normalize:
        return k
    k = k / total
    if not bool(torch.isfinite(k).all()):
        raise InputError(f"blur kernel sums to {total:.4g}, too close to 0 for its values (up to {float(k.abs().max()):.4g} once "
                         "scaled to sum to 1); accepted: a kernel whose sum is a positive number not cancelled by its negative values")
    return k


def check_kernel_fits(kernel_shape: tuple[int, ...] | torch.Size, image_hw: tuple[int, ...], name: str = "blur kernel") -> None:
    """InputError when a (..., kh, kw) kernel is taller or wider than the (..., H, W) image it blurs.

    Blurring with such a kernel is defined (the padded boundaries repeat) but meaningless and slow
    (a 2001x2001 kernel on a 64 px image ran for minutes). Call it where the image size is known,
    before any model loads. name: how the message refers to the kernel (e.g. "--kernel k.npy").
    """
    kh, kw = (int(v) for v in tuple(kernel_shape)[-2:])
    h, w = (int(v) for v in tuple(image_hw)[-2:])
    if kh > h or kw > w:
        raise InputError(f"{name} is {kw}x{kh} pixels but the image is {w}x{h}; a kernel must not be larger than the image "
                         f"it blurs (accepted: at most {w}x{h}; crop the kernel or give a larger image)")


def gaussian_kernel(size: int | tuple[int, int] = 61, sigma: float | tuple[float, float] = 3.0,
                    truncate: float | None = None) -> torch.Tensor:
    """Sampled Gaussian exp(-d^2 / (2 sigma^2)) on an odd (kh, kw) grid centred on the middle pixel,
    summing to 1; sigma may be (sigma_y, sigma_x). ``truncate``: zero beyond truncate * sigma per axis
    (scipy's rule, radius int(truncate * sigma + 0.5)); DPS's 61x61, sigma 3 kernel is truncate=4.0."""
    from kornia.filters import get_gaussian_kernel2d

    kh, kw = (size, size) if isinstance(size, int) else size
    sy, sx = (sigma, sigma) if isinstance(sigma, (int, float)) else sigma
    if kh < 1 or kw < 1 or kh % 2 == 0 or kw % 2 == 0:
        raise InputError(f"Gaussian kernel size must be odd and positive, got {size}")
    if not (sy > 0 and sx > 0):
        raise InputError(f"Gaussian kernel sigma must be > 0, got {sigma}")
    k = get_gaussian_kernel2d((kh, kw), (float(sy), float(sx)), dtype=torch.float64)[0]
    if truncate is not None:
        ry, rx = int(truncate * sy + 0.5), int(truncate * sx + 0.5)
        dy = (torch.arange(kh) - kh // 2).abs()[:, None]
        dx = (torch.arange(kw) - kw // 2).abs()[None, :]
        k = torch.where((dy <= ry) & (dx <= rx), k, 0)
    return k / k.sum()


def motion_kernel(size: int = 61, intensity: float = 0.5, seed: int | np.random.Generator = 0) -> torch.Tensor:
    """A camera-shake kernel (size, size) from a seeded random trajectory, summing to 1.

    The trajectory is a path of unit steps whose heading drifts by Gaussian turns and, with a
    probability that grows with ``intensity``, jerks sharply; its length is a random fraction of
    0.75 times the kernel's diagonal, growing with ``intensity``. intensity = 0 gives a straight
    line, 1 a long, tangled shake; DPS's benchmark uses 61 x 61 with intensity 0.5 (drawn by the
    motionblur package, whose trajectories this resembles in spirit but does not reproduce). The
    path is centred on its centre of mass, shrunk if needed to fit, and splatted bilinearly.
    """
    if not 0 <= intensity <= 1:
        raise InputError(f"motion blur intensity must be in [0, 1], got {intensity}")
    if size < 3:
        raise InputError(f"motion blur kernel size must be >= 3, got {size}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    length = 0.75 * math.sqrt(2) * size * (rng.uniform(0, 1) + intensity) / 2
    num = max(2, int(math.ceil(length)))
    turns = rng.normal(0, 0.5 * intensity, num) + rng.uniform(-math.pi, math.pi, num) * (
        rng.uniform(0, 1, num) < 0.1 * intensity
    )
    heading = rng.uniform(0, 2 * math.pi) + np.cumsum(turns)
    steps = np.stack([np.sin(heading), np.cos(heading)], 1) * (length / num)
    path = np.concatenate([np.zeros((1, 2)), np.cumsum(steps, 0)])
    # dense points along the polyline, 4 per pixel of length, equal weight: uniform speed
    fine = np.linspace(0, num, 4 * num + 1)
    seg = np.minimum(fine.astype(np.int64), num - 1)
    pts = path[seg] + (fine - seg)[:, None] * (path[seg + 1] - path[seg])
    pts -= pts.mean(0)
    reach = np.abs(pts).max()
    half = (size - 1) / 2
    if reach > half:
        pts *= half / reach
    pts += half
    k = np.zeros((size, size))
    base = np.minimum(np.floor(pts).astype(np.int64), size - 2)
    frac = pts - base
    for dy in (0, 1):
        for dx in (0, 1):
            w = (frac[:, 0] if dy else 1 - frac[:, 0]) * (frac[:, 1] if dx else 1 - frac[:, 1])
            np.add.at(k, (base[:, 0] + dy, base[:, 1] + dx), w)
    return torch.from_numpy(k / k.sum())


def load_kernel(path: str | Path, key: str | None = None) -> torch.Tensor:
    """A kernel from .npy, .npz (``key`` names the array; optional when the file holds one) or an
    image file (.png, ...; read by :func:`guidedinv.io.read_image` as grey levels, exact integer
    samples); checked and normalised by :func:`check_kernel`. Every fault of the file is one
    InputError naming it (module docstring)."""
    from ..io import IMAGE_SUFFIXES

    path = Path(path)
    try:
        is_file = path.is_file()
    except (OSError, ValueError) as e:  # a name too long, a loop of links, a NUL byte
        raise InputError(f"kernel file {path}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    if not is_file:
        raise InputError(f"kernel file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        data = _guarded(path, lambda: _read_npy_file(path))
    elif suffix == ".npz":
        data = _guarded(path, lambda: _read_npz(path, key))
    elif suffix in IMAGE_SUFFIXES:
        data = _kernel_image(path)
    else:
        raise InputError(f"{path}: not a kernel file; accepted: .npy, .npz (with a key), or an image "
                         f"({', '.join(IMAGE_SUFFIXES)})")
    try:
        return check_kernel(data)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


# what a corrupt .npy header or zip archive raises (numpy, zipfile, zlib)
_CORRUPT = (ValueError, OSError, EOFError, SyntaxError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError,
            struct.error, IndexError, KeyError, OverflowError, UnicodeError)


def _guarded(path: Path, read):  # type: ignore[no-untyped-def]
    try:
        return read()
    except InputError:
        raise
    except PermissionError:
        raise InputError(f"{path}: cannot read the kernel file (permission denied)") from None
    except _CORRUPT as e:
        raise InputError(f"{path}: corrupt or truncated kernel file ({type(e).__name__}: {str(e)[:200]})") from None


def _read_npy_file(path: Path) -> np.ndarray:
    with open(path, "rb") as f:
        return _read_npy(f, path.stat().st_size, str(path))


def _read_npz(path: Path, key: str | None) -> np.ndarray:
    """One array of a .npz (numpy.savez) archive, read as :func:`_read_npy` reads a .npy file."""
    with zipfile.ZipFile(path) as archive:
        members = {(n[:-4] if n.endswith(".npy") else n): n for n in archive.namelist()}
        names = list(members)
        if key is None and len(names) != 1:
            raise InputError(f"{path} holds {len(names)} kernels ({', '.join(names) or 'none'}); name one with key=")
        if key is not None and key not in members:
            raise InputError(f"{path} has no kernel {key!r}; it holds {', '.join(names) or 'nothing'}")
        info = archive.getinfo(members[key if key is not None else names[0]])
        with archive.open(info) as f:
            return _read_npy(f, info.file_size, f"{path}:{key if key is not None else names[0]}")


def _read_npy(f: BinaryIO, size: int, where: str) -> np.ndarray:
    """A .npy stream of ``size`` bytes: header checked (version 1.0 / 2.0, a real dtype, a 2-D shape
    after leading 1s, at most max_pixels() values, all its bytes present) before the data is read;
    never unpickled."""
    from ..io import check_pixels

    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version not in ((1, 0), (2, 0)):
        raise InputError(f"{where}: .npy format version {version[0]}.{version[1]} is not accepted; accepted: 1.0 and 2.0 (numpy.save)")
    read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    try:
        shape, fortran, dtype = read_header(f)
    except Exception as e:  # numpy tokenizes and literal-evals the header: TokenError, SyntaxError, ValueError, ...
        raise InputError(f"{where}: corrupt .npy header ({type(e).__name__}: {str(e)[:200]})") from None
    if dtype.hasobject or dtype.kind not in "iuf":
        what = "Python objects (never unpickled)" if dtype.hasobject else f"dtype {dtype}"
        raise InputError(f"{where}: the array holds {what}; a blur kernel is an array of real numbers (float or integer)")
    dims = list(shape)
    while len(dims) > 2 and dims[0] == 1:
        dims.pop(0)
    if len(dims) != 2 or min(dims) < 1:
        raise InputError(f"{where}: a blur kernel must be a 2-D array (kh, kw), got shape {tuple(shape)}")
    check_pixels(where, dims[1], dims[0], what="kernel")
    need = math.prod(shape) * dtype.itemsize
    present = size - f.tell()
    if present < need:
        raise InputError(f"{where}: truncated kernel file: its header declares shape {tuple(shape)} of {dtype} "
                         f"({need} bytes) but {max(present, 0)} bytes follow")
    data = f.read(need)
    if len(data) != need:
        raise InputError(f"{where}: truncated kernel file: {len(data)} of {need} bytes could be read")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _kernel_image(path: Path) -> np.ndarray:
    """Grey levels of an image kernel as exact integer samples (8/16/1-bit) or its float samples.
    Colour that is not grey and transparency are refused: neither says how to weigh the channels
    (a colour-mapped plot of a kernel is not its values)."""
    from ..io import read_image

    try:
        data = read_image(path)
    except InputError as exc:
        raise InputError(f"blur kernel {exc}") from None
    image = data.image
    if data.alpha is not None and not bool((data.alpha == 1).all()):
        raise InputError(f"{path}: kernel image has transparency; accepted: grey levels without alpha (or a .npy array)")
    if image.shape[0] == 3 and not bool((image == image[:1]).all()):
        raise InputError(f"{path}: kernel image is in colour; accepted: a grey image (or a .npy array)")
    grey = image[0].double().numpy()
    if data.bit_depth <= 16:  # integer samples: undo the scaling to [0, 1] exactly
        grey = np.rint(grey * (2**data.bit_depth - 1))
    return grey


def boundary_index(n: int, before: int, after: int, mode: Boundary) -> torch.Tensor:
    """Source index of each position of an axis of length n padded by (before, after)."""
    p = torch.arange(-before, n + after)
    if mode == "circular":
        return p % n
    if mode == "symmetric":
        q = p % (2 * n)
        return torch.where(q < n, q, 2 * n - 1 - q)
    if n == 1:
        return torch.zeros_like(p)
    q = p % (2 * n - 2)
    return torch.where(q < n, q, 2 * n - 2 - q)


class Blur(LinearOperator):
    """kernel: (kh, kw) array summing to a positive number; boundary: "reflect" (default, DPS),
    "symmetric" or "circular" (FFT; DiffPIR); normalize: scale the kernel to sum to 1;
    rcond: frequencies with |K| below rcond * max |K| count as zero in the circular A^+
    (default 1000 * eps of the dtype: the exact pseudo-inverse up to rounding; raise it to regularise)."""

    def __init__(self, kernel: torch.Tensor | np.ndarray, boundary: Boundary = "reflect", normalize: bool = True,
                 rcond: float | None = None) -> None:
        if boundary not in BOUNDARIES:
            raise InputError(f"blur boundary must be one of {', '.join(BOUNDARIES)}, got {boundary!r}")
        self.kernel = check_kernel(kernel, normalize)
        self.boundary = boundary
        self.rcond = rcond
        self._cache: dict[tuple, object] = {}

    @classmethod
    def gaussian(cls, size: int | tuple[int, int] = 61, sigma: float | tuple[float, float] = 3.0, boundary: Boundary = "reflect",
                 truncate: float | None = None) -> Blur:
        return cls(gaussian_kernel(size, sigma, truncate), boundary)

    @classmethod
    def motion(cls, size: int = 61, intensity: float = 0.5, seed: int | np.random.Generator = 0, boundary: Boundary = "reflect") -> Blur:
        return cls(motion_kernel(size, intensity, seed), boundary)

    @classmethod
    def from_file(cls, path: str | Path, key: str | None = None, boundary: Boundary = "reflect") -> Blur:
        return cls(load_kernel(path, key), boundary)

    # -- circular: transfer function ----------------------------------------------------------
    def _otf(self, x: torch.Tensor) -> torch.Tensor:
        """rfft2 of the kernel wrapped onto the (H, W) torus with its origin at pixel (0, 0)."""
        h, w = x.shape[-2:]
        key = ("otf", h, w, x.dtype, x.device)
        if key not in self._cache:
            kh, kw = self.kernel.shape
            rows = ((torch.arange(kh) - kh // 2) % h)[:, None].expand(kh, kw)
            cols = ((torch.arange(kw) - kw // 2) % w)[None, :].expand(kh, kw)
            wrapped = torch.zeros(h, w, dtype=torch.float64).index_put_((rows, cols), self.kernel, accumulate=True)
            dtype = torch.complex128 if x.dtype == torch.float64 else torch.complex64
            self._cache[key] = torch.fft.rfft2(wrapped).to(device=x.device, dtype=dtype)
        return self._cache[key]  # type: ignore[return-value]

    def _fourier(self, x: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfft2(torch.fft.rfft2(x) * gain, s=x.shape[-2:])

    # -- padded: gather indices and the flipped kernel ----------------------------------------
    def _padding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h, w = x.shape[-2:]
        key = ("pad", h, w, x.dtype, x.device)
        if key not in self._cache:
            kh, kw = self.kernel.shape
            ih = boundary_index(h, kh - 1 - kh // 2, kh // 2, self.boundary).to(x.device)
            iw = boundary_index(w, kw - 1 - kw // 2, kw // 2, self.boundary).to(x.device)
            weight = self.kernel.flip(0, 1)[None, None].to(device=x.device, dtype=x.dtype)
            self._cache[key] = (ih, iw, weight)
        return self._cache[key]  # type: ignore[return-value]

    def A(self, x: torch.Tensor) -> torch.Tensor:
        check_image(x)
        if self.boundary == "circular":
            return self._fourier(x, self._otf(x))
        ih, iw, weight = self._padding(x)
        b, c, h, w = x.shape
        padded = x.index_select(-2, ih).index_select(-1, iw).reshape(b * c, 1, len(ih), len(iw))
        return F.conv2d(padded, weight).reshape(b, c, h, w)

    def AT(self, y: torch.Tensor) -> torch.Tensor:
        check_image(y)
        if self.boundary == "circular":
            return self._fourier(y, self._otf(y).conj())
        ih, iw, weight = self._padding(y)
        b, c, h, w = y.shape
        grad = F.conv_transpose2d(y.reshape(b * c, 1, h, w), weight)  # adjoint of the valid convolution
        rows = grad.new_zeros(b * c, 1, h, len(iw)).index_add_(-2, ih, grad)  # adjoint of the gathers
        return rows.new_zeros(b * c, 1, h, w).index_add_(-1, iw, rows).reshape(b, c, h, w)

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """Circular: conj(K)/|K|^2 on frequencies with |K| > rcond max|K|, 0 on the others; else CG."""
        if self.boundary != "circular":
            return super().pinv(y)
        check_image(y)
        otf = self._otf(y)
        rcond = 1000 * torch.finfo(y.dtype).eps if self.rcond is None else self.rcond
        mag = otf.abs()
        keep = mag > rcond * mag.max()
        return self._fourier(y, torch.where(keep, otf.conj() / torch.where(keep, mag, 1) ** 2, 0))

    def spectral(self, x: torch.Tensor) -> Fourier | None:
        """Circular: s = |K(f)| on the real FFT's half spectrum (zero where the pseudo-inverse cuts,
        |K| <= rcond max|K|), U^T = conj(K)/|K| rfft2; padded boundaries: None."""
        if self.boundary != "circular":
            return None
        check_image(x)
        h, w = x.shape[-2:]
        key = ("spectral", h, w, x.dtype, x.device)
        if key not in self._cache:
            rcond = 1000 * torch.finfo(x.dtype).eps if self.rcond is None else self.rcond
            self._cache[key] = Fourier(self._otf(x), (h, w), rcond, x.dtype)
        return self._cache[key]  # type: ignore[return-value]

    def _prox_l2(self, z: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor:
        """Circular: (conj(K) Y + rho Z) / (|K|^2 + rho) in Fourier (DiffPIR eq. with s = 1); else CG."""
        if self.boundary != "circular":
            return super()._prox_l2(z, y, rho)
        check_image(z)
        otf = self._otf(z)
        num = otf.conj() * torch.fft.rfft2(y) + rho * torch.fft.rfft2(z)
        return torch.fft.irfft2(num / (otf.abs() ** 2 + rho), s=z.shape[-2:])

    def __repr__(self) -> str:
        return f"Blur({tuple(self.kernel.shape)} kernel, {self.boundary!r})"
