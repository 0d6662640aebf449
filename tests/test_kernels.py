"""Kernel files are untrusted input: every fault is one InputError naming the file, checked from the
header before any data is read, nothing is ever unpickled; good files load exactly. Every file
here is made by the test in tmp_path."""
from __future__ import annotations

import io
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from guidedinv.errors import InputError
from guidedinv.operators import Blur, check_kernel, load_kernel
from guidedinv.operators.blur import check_kernel_fits

RNG = np.random.default_rng(0)
K = RNG.uniform(0, 1, (7, 5))  # a kernel that is not symmetric, so transposes and flips show


def npy_bytes(a: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, **kw)
    return buf.getvalue()


def npy_header_only(shape: tuple, descr: str = "<f8", version: tuple = (1, 0)) -> bytes:
    """A .npy file whose header declares ``shape`` with a few bytes of data after it."""
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode("latin1")
    size_fmt = "<H" if version == (1, 0) else "<I"
    pad = -(10 + len(header) + 1 + (2 if version != (1, 0) else 0)) % 64
    header += b" " * pad + b"\n"
    return b"\x93NUMPY" + bytes(version) + struct.pack(size_fmt, len(header)) + header + bytes(16)


class Payload:
    """Unpickling this writes a file: proof that nothing was unpickled when the file is absent."""

    def __init__(self, flag: str) -> None:
        self.flag = flag

    def __reduce__(self):
        return (Path.write_text, (Path(self.flag), "ran"))


def npz_bytes(members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def png_declaring(w: int, h: int) -> bytes:
    def chunk(kind: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + kind + d + struct.pack(">I", zlib.crc32(kind + d))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\x80")) + chunk(b"IEND", b""))


def animated_gif(p: Path) -> None:
    frames = [Image.fromarray((RNG.uniform(0, 1, (9, 9)) * 255).astype(np.uint8)) for _ in range(3)]
    frames[0].save(p, save_all=True, append_images=frames[1:])


def flip_stored_byte(data: bytes, marker: bytes) -> bytes:
    i = data.index(marker) + len(marker) + 40  # inside the array's data in the stored member
    return data[:i] + bytes([data[i] ^ 0x10]) + data[i + 1 :]


GOOD_NPY = npy_bytes(K)
DEFLATED_NPZ = npz_bytes({"k.npy": GOOD_NPY}, zipfile.ZIP_DEFLATED)
OBJECT_NPY = npy_bytes(np.array([Payload("FLAG"), 1], dtype=object), allow_pickle=True)
BAD_FILES = {
    # name: (file name, bytes or a maker, the phrase the one-line message must hold)
    "npy_random_bytes": ("k.npy", bytes(RNG.integers(0, 256, 300, dtype=np.uint8)), "corrupt"),
    "npy_text": ("k.npy", b"0.1 0.2\n0.3 0.4\n", "corrupt"),
    "npy_empty": ("k.npy", b"", "corrupt"),
    "npy_magic_only": ("k.npy", b"\x93NUMPY\x01\x00", "corrupt"),
    "npy_truncated_data": ("k.npy", GOOD_NPY[: len(GOOD_NPY) - 20], "header declares shape (7, 5) of float64 (280 bytes) but 260"),
    "npy_truncated_header": ("k.npy", GOOD_NPY[:60], "corrupt"),
    "npy_header_garbage": ("k.npy", GOOD_NPY[:10] + b"{'descr': <f8 !!" + GOOD_NPY[26:], "corrupt"),
    "npy_declares_huge": ("k.npy", npy_header_only((100_000, 100_000)), "declares 100000x100000 pixels"),
    "npy_declares_big_truncated": ("k.npy", npy_header_only((5000, 5000)), "(200000000 bytes) but 16 bytes follow"),
    "npy_negative_shape": ("k.npy", npy_header_only((-3, 5)), "got shape (-3, 5)"),
    "npy_object_pickle": ("k.npy", OBJECT_NPY, "Python objects (never unpickled)"),
    "npy_unicode": ("k.npy", npy_bytes(np.array([["a", "b"], ["c", "d"]])), "dtype <U1"),
    "npy_bytes_dtype": ("k.npy", npy_bytes(np.array([[b"ab", b"c"]])), "dtype |S2"),
    "npy_complex": ("k.npy", npy_bytes(K.astype(np.complex128)), "dtype complex128"),
    "npy_bool": ("k.npy", npy_bytes(K > 0.5), "dtype bool"),
    "npy_datetime": ("k.npy", npy_bytes(np.zeros((2, 2), "M8[s]")), "dtype datetime64[s]"),
    "npy_structured": ("k.npy", npy_bytes(np.zeros((2, 2), [("a", "<f4"), ("b", "<i2")])), "dtype"),
    "npy_version_3": ("k.npy", npy_header_only((2, 2), version=(3, 0)), "format version 3.0 is not accepted"),
    "npy_3d": ("k.npy", npy_bytes(np.ones((2, 3, 3))), "2-D array (kh, kw), got shape (2, 3, 3)"),
    "npy_1d": ("k.npy", npy_bytes(np.ones(9)), "got shape (9,)"),
    "npy_zero_size": ("k.npy", npy_bytes(np.ones((0, 5))), "got shape (0, 5)"),
    "npy_nan": ("k.npy", npy_bytes(np.where(K > 0.5, K, np.nan)), "NaN or infinite"),
    "npy_inf": ("k.npy", npy_bytes(np.where(K > 0.5, K, np.inf)), "NaN or infinite"),
    "npy_all_zero": ("k.npy", npy_bytes(np.zeros((5, 5))), "all zeros (5x5)"),
    "npy_negative_sum": ("k.npy", npy_bytes(-K), "sums to -"),
    "npy_sum_overflows": ("k.npy", npy_bytes(np.full((2, 2), 1e308)), "sum overflows"),
    "npy_sum_cancels": ("k.npy", npy_bytes(np.array([[1.0, -1.0, 5e-324]])), "too close to 0"),
    "npz_random_bytes": ("k.npz", bytes(RNG.integers(0, 256, 300, dtype=np.uint8)), "corrupt"),
    "npz_truncated": ("k.npz", DEFLATED_NPZ[: len(DEFLATED_NPZ) // 2], "corrupt or truncated"),
    "npz_bit_flip": ("k.npz", flip_stored_byte(npz_bytes({"k.npy": GOOD_NPY}), b"NUMPY"), "CRC"),
    "npz_empty_archive": ("k.npz", npz_bytes({}), "holds 0 kernels (none)"),
    "npz_object_member": ("k.npz", npz_bytes({"k.npy": OBJECT_NPY}), "Python objects (never unpickled)"),
    "npz_member_declares_huge": ("k.npz", npz_bytes({"k.npy": npy_header_only((100_000, 100_000))}), "over the limit"),
    "npz_member_truncated": ("k.npz", npz_bytes({"k.npy": GOOD_NPY[:-8]}), "truncated kernel file"),
    "png_bomb": ("k.png", png_declaring(65535, 65535), "blur kernel"),
    "png_truncated": ("k.png", png_declaring(9, 9)[:40], "corrupt or truncated image"),
    "gif_animated": ("k.gif", animated_gif, "3 frames"),
    "png_colour": ("k.png", lambda p: Image.fromarray(RNG.integers(0, 256, (9, 9, 3), dtype=np.uint8)).save(p), "in colour"),
    "png_transparent": ("k.png", lambda p: Image.fromarray(RNG.integers(0, 256, (9, 9, 2), dtype=np.uint8), "LA").save(p),
                        "transparency"),
    "png_all_black": ("k.png", lambda p: Image.new("L", (9, 9)).save(p), "all zeros"),
    "txt": ("k.txt", b"1 2 3", "not a kernel file"),
    "pickle_as_npy": ("k.npy", pickle.dumps(Payload("FLAG")), "corrupt"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_kernel_files_are_one_line_input_errors(tmp_path, monkeypatch, case):
    monkeypatch.chdir(tmp_path)  # Payload would write ./FLAG here
    name, content, phrase = BAD_FILES[case]
    path = tmp_path / name
    content(path) if callable(content) else path.write_bytes(content)
    for load in (lambda: load_kernel(path), lambda: Blur.from_file(path)):
        with pytest.raises(InputError) as info:
            load()
        message = str(info.value)
        assert phrase in message and str(path) in message and "\n" not in message, message
    assert not (tmp_path / "FLAG").exists(), "a pickle was run"


def test_png_bomb_kernel_uses_the_io_limit(tmp_path):
    path = tmp_path / "k.png"
    path.write_bytes(png_declaring(65535, 65535))
    with pytest.raises(InputError, match=r"^blur kernel .*k\.png: image declares 65535x65535 pixels .*GUIDEDINV_MAX_PIXELS"):
        load_kernel(path)


@pytest.mark.parametrize("dtype", ["<f8", ">f8", "<f4", "<f2", "<i4", ">u2", "|u1", "<i8"])
@pytest.mark.parametrize("fortran", [False, True])
def test_good_npy_kernels_load_exactly(tmp_path, dtype, fortran):
    raw = (K * 200).astype(dtype)
    raw = np.asfortranarray(raw) if fortran else raw
    np.save(tmp_path / "k.npy", raw)
    expected = raw.astype(np.float64) / raw.astype(np.float64).sum()
    assert np.abs(load_kernel(tmp_path / "k.npy").numpy() - expected).max() < 1e-15
    np.save(tmp_path / "k1.npy", raw[None, None])  # leading 1s are squeezed
    assert torch.equal(load_kernel(tmp_path / "k1.npy"), load_kernel(tmp_path / "k.npy"))


def test_npz_keys_and_compression(tmp_path):
    np.savez_compressed(tmp_path / "k.npz", a=K, b=K.T)
    assert np.abs(load_kernel(tmp_path / "k.npz", "b").numpy() - K.T / K.sum()).max() < 1e-15
    with pytest.raises(InputError, match=r"holds 2 kernels \(a, b\); name one with key="):
        load_kernel(tmp_path / "k.npz")
    with pytest.raises(InputError, match="has no kernel 'c'; it holds a, b"):
        load_kernel(tmp_path / "k.npz", "c")
    np.savez(tmp_path / "one.npz", K)
    assert np.abs(load_kernel(tmp_path / "one.npz").numpy() - K / K.sum()).max() < 1e-15


@pytest.mark.parametrize("bits", [1, 8, 16])
def test_image_kernels_keep_exact_integer_samples(tmp_path, bits):
    """Grey levels come back as the integers stored (a 16-bit PNG keeps all 16 bits); grey saved as RGB is grey."""
    top = 2**bits - 1
    v = RNG.integers(0, top + 1, (9, 7)).astype(np.int64)
    v[4, 3] = top
    path = tmp_path / "k.png"
    if bits == 16:
        Image.fromarray(v.astype(np.uint16)).save(path)
    else:
        Image.fromarray(v.astype(np.uint8) * (255 if bits == 1 else 1)).convert("1" if bits == 1 else "L").save(path)
    assert np.abs(load_kernel(path).numpy() - v / v.sum()).max() < 1e-15
    if bits == 8:
        Image.fromarray(np.repeat(v.astype(np.uint8)[..., None], 3, -1)).save(tmp_path / "rgb.png")
        assert torch.equal(load_kernel(tmp_path / "rgb.png"), load_kernel(path))


def test_check_kernel_python_values():
    """The Python API refuses what a file could hold, as InputError (never TypeError from torch)."""
    for bad, phrase in [(np.array([["a", "b"]]), "dtype <U1"), (np.array([[1, None]], dtype=object), "dtype object"),
                        (np.zeros((2, 2), "M8[s]"), "datetime64"), ([[1.0, float("inf")]], "NaN or infinite")]:
        with pytest.raises(InputError, match=phrase):
            check_kernel(bad)
    assert torch.equal(check_kernel(np.ones((2, 2), np.longdouble)), torch.full((2, 2), 0.25, dtype=torch.float64))
    assert torch.equal(check_kernel(np.ones((2, 2), np.float16)), torch.full((2, 2), 0.25, dtype=torch.float64))


def test_kernel_larger_than_image_is_refused():
    check_kernel_fits((64, 64), (64, 64))
    check_kernel_fits((1, 1, 3, 5), (1, 3, 3, 5))
    with pytest.raises(InputError, match=r"^--kernel k\.npy is 2001x2001 pixels but the image is 64x64; .*at most 64x64"):
        check_kernel_fits((2001, 2001), (64, 64), name="--kernel k.npy")
    with pytest.raises(InputError, match="is 3x65 pixels but the image is 100x64"):
        check_kernel_fits((65, 3), (64, 100))
    with pytest.raises(InputError, match="is 101x3 pixels but the image is 100x64"):
        check_kernel_fits(torch.Size([3, 101]), (2, 3, 64, 100))


def test_unreadable_kernel_paths(tmp_path):
    for path, phrase in {tmp_path / ("x" * 300 + ".npy"): "File name too long", tmp_path / "a\x00b.npy": "does not exist|null byte",
                         tmp_path: "does not exist"}.items():
        with pytest.raises(InputError, match=phrase):
            load_kernel(path)
