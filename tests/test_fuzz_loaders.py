"""Fuzzing every loader (Hypothesis): valid files made here are mutated (truncation, bit flips,
overwritten / inserted / deleted bytes, header lies: declared sizes, sample types, dtypes, lengths)
and each example must end in success, with a result that holds the loader's promises, or in a
GuidedinvError of the loader's kind (InputError, exit 2; checkpoints: any GuidedinvError) with a
one-line message; any other exception fails the test with the falsifying example.

CI runs a fixed seed (derandomize) and few examples (all together about 15 s on 2 CPU cores);
GUIDEDINV_FUZZ_EXAMPLES=2000 runs each test longer; GUIDEDINV_FUZZ_REPORT=1 prints the outcomes
(pytest -s)."""
from __future__ import annotations

import csv
import io
import json
import os
import struct
import sys
import tempfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import save_tiny_prior
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

import guidedinv.io
from guidedinv.errors import GuidedinvError, InputError
from guidedinv.io import read_image, read_mask
from guidedinv.operators import Blur, load_kernel

EXAMPLES = int(os.environ.get("GUIDEDINV_FUZZ_EXAMPLES", "0") or 0)
TALLY: Counter = Counter()


def fuzz(default_examples: int):  # type: ignore[no-untyped-def]
    return settings(max_examples=EXAMPLES or default_examples, derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck), print_blob=False)


@pytest.fixture(scope="module", autouse=True)
def small_limit_and_report():
    """A 4 Mpx decoder limit while fuzzing (a lie between the file's size and the limit is still
    decoded, so decoders meet truncated data; above it is the limit's refusal, tested in test_io)."""
    saved = guidedinv.io.MAX_PIXELS
    guidedinv.io.MAX_PIXELS = 2**22
    yield
    guidedinv.io.MAX_PIXELS = saved
    if os.environ.get("GUIDEDINV_FUZZ_REPORT"):
        print(file=sys.__stderr__)
        for (loader, outcome), n in sorted(TALLY.items()):
            print(f"fuzz {loader:12s} {outcome:24s} {n}", file=sys.__stderr__)


WORK = Path(tempfile.mkdtemp(prefix="guidedinv-fuzz-"))


def outcome(loader: str, call: Callable[[], object], refusal: type[GuidedinvError] = InputError) -> object | None:
    """Run one example: its result, or None when it was refused the right way."""
    try:
        result = call()
    except GuidedinvError as exc:
        message = str(exc)
        assert isinstance(exc, refusal), f"{type(exc).__name__} (exit {exc.exit_code}), expected {refusal.__name__}: {message}"
        assert message and "\n" not in message, f"not one line: {message!r}"
        TALLY[loader, f"refused ({type(exc).__name__})"] += 1
        return None
    TALLY[loader, "ok"] += 1
    return result


def test_manifest_ids_that_name_no_file_and_superscript_digits_are_one_line_errors():
    """Two crashes the fuzzing found (a manifest row {"input": "."}; the kernel spec 'motion:\u00b2', which
    str.isdigit accepts and int does not), fixed: each is an InputError now."""
    from guidedinv.app.batch.items import read_manifest
    from guidedinv.app.request import build_request

    path = WORK / "dot.jsonl"
    path.write_text('{"input": "."}\n')
    with pytest.raises(GuidedinvError, match="names no file"):
        read_manifest(path)
    with pytest.raises(GuidedinvError, match="motion:SEED"):
        build_request("deblur", sets=['operator.kernel="motion:\u00b2"'])


# ------------------------------------------------------------------ mutations

INTERESTING = [0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 32, 33, 64, 127, 128, 255, 256, 1023, 4096, 32767, 32768, 65535,
               65536, 2**24, 2**31 - 1, 2**31, 2**32 - 1]
SIZES = st.one_of(st.sampled_from(INTERESTING), st.integers(0, 2**32 - 1))
Lie = Callable[[bytearray, int, Callable], bytearray]  # (data, a drawn size, draw for further choices) -> data


@st.composite
def mutated(draw, bases: dict[str, tuple[bytes, list[Lie]]]) -> tuple[str, bytes]:  # type: ignore[no-untyped-def]
    """(base name, bytes): 1-3 mutations of one base."""
    name = draw(st.sampled_from(sorted(bases)))
    base, lies = bases[name]
    data = bytearray(base)
    uniform = draw(st.randoms(use_true_random=False))  # Hypothesis favours small offsets: half the positions are uniform

    def at(n: int) -> int:  # a position in 0..n
        return draw(st.integers(0, n)) if draw(st.booleans()) else uniform.randint(0, n)

    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "truncate", "overwrite", "insert", "delete"] + ["lie"] * (2 if lies else 0)))
        if kind == "flip" and data:
            i = at(len(data) - 1)
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[at(len(data)) :]
        elif kind == "overwrite" and data:
            i, chunk = at(len(data) - 1), draw(st.binary(min_size=1, max_size=8))
            data[i : i + len(chunk)] = chunk
        elif kind == "insert":
            data[at(len(data)) : 0] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete" and data:
            i = at(len(data) - 1)
            del data[i : i + draw(st.integers(1, 16))]
        elif kind == "lie":
            lie, value = draw(st.sampled_from(lies)), draw(SIZES)
            try:
                data = lie(bytearray(data), value, draw)
            except (IndexError, ValueError, KeyError, TypeError, ZeroDivisionError, struct.error, UnicodeError):
                pass  # the lie's field is gone (an earlier mutation cut it): no change
    return name, bytes(data)


def _named(name: str, f: Lie) -> Lie:
    f.__name__ = f.__qualname__ = name  # readable falsifying examples
    return f


# PNG: IHDR fields, CRC fixed so that only the field lies
def _png_ihdr(offset: int, fmt: str) -> Lie:
    def lie(d: bytearray, v: int, draw=None) -> bytearray:
        if d[12:16] != b"IHDR":
            return d
        struct.pack_into(fmt, d, offset, v % (1 << (8 * struct.calcsize(fmt))))
        struct.pack_into(">I", d, 29, zlib.crc32(bytes(d[12:29])))
        return d
    return _named(f"png_ihdr_{offset}", lie)


PNG_LIES = [_png_ihdr(16, ">I"), _png_ihdr(20, ">I"), _png_ihdr(24, ">B"), _png_ihdr(25, ">B")]


def _tiff_tag(code: int) -> Lie:
    """Rewrite an inline SHORT / LONG value of a tag of the first IFD."""
    def lie(d: bytearray, v: int, draw=None) -> bytearray:
        order = {b"II": "<", b"MM": ">"}[bytes(d[:2])]
        (ifd,) = struct.unpack_from(order + "I", d, 4)
        (n,) = struct.unpack_from(order + "H", d, ifd)
        for i in range(n):
            entry = ifd + 2 + 12 * i
            tag, kind, count = struct.unpack_from(order + "HHI", d, entry)
            if tag == code and count == 1 and kind in (3, 4):
                struct.pack_into(order + ("H" if kind == 3 else "I"), d, entry + 8, v % (1 << (16 if kind == 3 else 32)))
        return d
    return _named(f"tiff_tag_{code}", lie)


# width, length, bits per sample, photometric, strip offsets, samples per pixel, strip byte counts, sample format
TIFF_LIES = [_tiff_tag(c) for c in (256, 257, 258, 262, 273, 277, 279, 339)]


def _jpeg_sof(offset: int, fmt: str) -> Lie:
    def lie(d: bytearray, v: int, draw=None) -> bytearray:
        sof = d.index(b"\xff\xc0")
        struct.pack_into(fmt, d, sof + offset, v % (1 << (8 * struct.calcsize(fmt))))
        return d
    return _named(f"jpeg_sof_{offset}", lie)


JPEG_LIES = [_jpeg_sof(5, ">H"), _jpeg_sof(7, ">H"), _jpeg_sof(4, ">B"), _jpeg_sof(9, ">B")]
GIF_LIES = [_named("gif_screen_w", lambda d, v, draw=None: (struct.pack_into("<H", d, 6, v % 65536), d)[1]),
            _named("gif_screen_h", lambda d, v, draw=None: (struct.pack_into("<H", d, 8, v % 65536), d)[1]),
            _named("gif_frame_w", lambda d, v, draw=None: (struct.pack_into("<H", d, d.index(b"\x2c", 13) + 5, v % 65536), d)[1])]
BMP_LIES = [_named("bmp_w", lambda d, v, draw=None: (struct.pack_into("<I", d, 18, v), d)[1]),
            _named("bmp_h", lambda d, v, draw=None: (struct.pack_into("<I", d, 22, v), d)[1]),  # >= 2^31: a negative (top-down) height
            _named("bmp_bits", lambda d, v, draw=None: (struct.pack_into("<H", d, 28, v % 65536), d)[1])]


def _pnm_field(index: int) -> Lie:
    def lie(d: bytearray, v: int, draw=None) -> bytearray:
        fields = bytes(d).split(maxsplit=4)
        fields[index] = str(v).encode()
        return bytearray(b" ".join(fields[:4]) + b"\n" + fields[4])
    return _named(f"pnm_field_{index}", lie)


PNM_LIES = [_pnm_field(1), _pnm_field(2), _pnm_field(3)]


def _webp_size(d: bytearray, v: int, draw=None) -> bytearray:
    i = d.index(b"VP8L") + 9  # chunk id, size, signature byte 0x2f: then 14 bits width-1, 14 bits height-1
    (bits,) = struct.unpack_from("<I", d, i)
    struct.pack_into("<I", d, i, (bits & ~0x3FFF) | (v % 16384) if v % 2 else (bits & ~(0x3FFF << 14)) | ((v // 2 % 16384) << 14))
    return d


# ------------------------------------------------------------------ images and masks

RNG = np.random.default_rng(0)


def _encoded(array: np.ndarray, fmt: str, mode: str | None = None, **options) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, fmt, **options)
    return buf.getvalue()


def _tifffile(array: np.ndarray, **options) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, array, **options)
    return buf.getvalue()


def _png16(v: np.ndarray) -> bytes:
    h, w, c = v.shape
    rows = v.astype(">u2").reshape(h, w * c).view(np.uint8)

    def chunk(kind: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + kind + d + struct.pack(">I", zlib.crc32(kind + d))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 2: 4, 3: 2, 4: 6}[c], 0, 0, 0)
    data = zlib.compress(b"".join(b"\x00" + r.tobytes() for r in rows))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def _jpeg_with_orientation() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encoded(RNG.integers(0, 256, (12, 16, 3), dtype=np.uint8), "JPEG", exif=exif, quality=90)


def _palette_png() -> bytes:
    im = Image.fromarray(RNG.integers(0, 4, (12, 16), dtype=np.uint8), "P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    buf = io.BytesIO()
    im.save(buf, "PNG", transparency=1)
    return buf.getvalue()


u8 = RNG.integers(0, 256, (12, 16, 4), dtype=np.uint8)
u16 = RNG.integers(0, 65536, (12, 16, 4), dtype=np.uint16)
IMAGES: dict[str, tuple[bytes, list[Lie]]] = {
    "png_rgb": (_encoded(u8[..., :3], "PNG"), PNG_LIES),
    "png_la": (_encoded(u8[..., :2], "PNG", "LA"), PNG_LIES),
    "png_palette_trns": (_palette_png(), PNG_LIES),
    "png16_rgba": (_png16(u16), PNG_LIES),
    "png16_grey": (_png16(u16[..., :1]), PNG_LIES),
    "jpeg_exif6": (_jpeg_with_orientation(), JPEG_LIES),
    "tiff_rgb8": (_encoded(u8[..., :3], "TIFF"), TIFF_LIES),
    "tiff_rgb16": (_tifffile(u16[..., :3], photometric="rgb"), TIFF_LIES),
    "tiff_rgba_float": (_tifffile(u16.astype(np.float32) / 65535, photometric="rgb", extrasamples=[2]), TIFF_LIES),
    "tiff_grey_float64_zlib": (_tifffile(u16[..., 0] / 65535.0, photometric="minisblack", compression="zlib"), TIFF_LIES),
    "tiff_grey16": (_tifffile(u16[..., 0], photometric="minisblack"), TIFF_LIES),
    "webp_lossless": (_encoded(u8[..., :3], "WEBP", lossless=True), [_named("webp_size", _webp_size)]),
    "bmp": (_encoded(u8[..., :3], "BMP"), BMP_LIES),
    "gif": (_encoded(u8[..., 0], "GIF", "L"), GIF_LIES),
    "ppm": (b"P6 16 12 255\n" + u8[..., :3].tobytes(), PNM_LIES),
    "pgm16": (b"P5 16 12 65535\n" + u16[..., 0].astype(">u2").tobytes(), PNM_LIES),
}


def _check_image(data) -> None:  # type: ignore[no-untyped-def]
    """What a successful read promises: (C, H, W) float32 in [0, 1], C 1 or 3, alpha (1, H, W) or None."""
    x = data.image
    assert x.dtype == torch.float32 and x.ndim == 3 and x.shape[0] in (1, 3) and x.shape[1] * x.shape[2] > 0
    assert bool(torch.isfinite(x).all()) and float(x.min()) >= 0 and float(x.max()) <= 1
    assert data.alpha is None or (data.alpha.shape == (1, *x.shape[1:]) and float(data.alpha.min()) >= 0
                                  and float(data.alpha.max()) <= 1)
    assert x.shape[1] * x.shape[2] <= guidedinv.io.max_pixels()


@fuzz(300)
@given(mutated(IMAGES))
def test_fuzz_read_image(case):
    name, data = case
    path = WORK / f"image.{name.split('_')[0].replace('png16', 'png')}"
    path.write_bytes(data)
    result = outcome("images", lambda: read_image(path))
    if result is not None:
        _check_image(result)


MASKS: dict[str, tuple[bytes, list[Lie]]] = {
    "grey": (_encoded(np.where(u8[..., 0] > 128, 255, 0).astype(np.uint8), "PNG"), PNG_LIES),
    "one_bit": (_encoded(u8[..., 0] > 128, "PNG"), PNG_LIES),
    "alpha_only": (_encoded(np.dstack([np.full((12, 16, 3), 200, np.uint8), np.where(u8[..., 1] > 99, 255, 0)]).astype(np.uint8),
                            "PNG"), PNG_LIES),
    "rgb_tiff": (_encoded(u8[..., :3], "TIFF"), TIFF_LIES),
}


@fuzz(100)
@given(mutated(MASKS))
def test_fuzz_read_mask(case):
    name, data = case
    path = WORK / f"mask.{'tif' if 'tiff' in name else 'png'}"
    path.write_bytes(data)
    mask = outcome("masks", lambda: read_mask(path, (3, 12, 16)))
    if mask is not None:
        assert mask.dtype == torch.bool and mask.shape == (12, 16)


# ------------------------------------------------------------------ kernels

def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _npy_header(field: str, values: list[str]) -> Lie:
    """Replace the header's shape or descr (the header length field follows; bytes after it stay)."""
    def lie(d: bytearray, v: int, draw=None) -> bytearray:
        (n,) = struct.unpack_from("<H", d, 8)
        header = bytes(d[10 : 10 + n]).decode("latin1")
        start = header.index(f"'{field}': ") + len(field) + 4
        end = header.index(", '", start) if field == "descr" else header.index(")", start) + 1
        new = header[:start] + values[v % len(values)].format(v=v, w=v % 97 + 1) + header[end:]
        return bytearray(d[:8] + struct.pack("<H", len(new)) + new.encode("latin1") + d[10 + n :])
    return _named(f"npy_{field}", lie)


NPY_LIES = [
    _npy_header("shape", ["({v}, {w})", "({w}, {v})", "({v},)", "()", "(1, 1, {w}, {w})", "(-{w}, 3)", "({v}, {v}, {v})"]),
    _npy_header("descr", ["'<f8'", "'>f4'", "'<f2'", "'|i1'", "'|u1'", "'|b1'", "'|O'", "'<U3'", "'|S2'", "'<c16'",
                          "'<M8[s]'", "'|V8'", "[('a', '<f4')]", "'<f16'", "'x'", "{v}"]),
]
KERNEL = RNG.uniform(0, 1, (7, 5))
GOOD_NPY = _npy(KERNEL)


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for n, d in members.items():
            z.writestr(n, d)
    return buf.getvalue()


def _zip_field(marker: bytes, offset: int) -> Lie:
    """A local (PK\\3\\4) or central (PK\\1\\2) header's size field: declared sizes that lie."""
    def lie(d: bytearray, v: int, draw=None) -> bytearray:
        struct.pack_into("<I", d, d.index(marker) + offset, v)
        return d
    return _named(f"zip_{marker[2]}_{offset}", lie)


ZIP_LIES = [_zip_field(b"PK\x03\x04", 18), _zip_field(b"PK\x03\x04", 22), _zip_field(b"PK\x01\x02", 20),
            _zip_field(b"PK\x01\x02", 24), _zip_field(b"PK\x01\x02", 42)]
KERNELS: dict[str, tuple[bytes, list[Lie]]] = {
    "npy": (GOOD_NPY, NPY_LIES),
    "npy_fortran_int": (_npy(np.asfortranarray((KERNEL * 100).astype(">i4"))), NPY_LIES),
    "npz_stored": (_zip({"k.npy": GOOD_NPY}), ZIP_LIES),
    "npz_deflated_two": (_zip({"k.npy": GOOD_NPY, "j.npy": _npy(KERNEL.T)}, zipfile.ZIP_DEFLATED), ZIP_LIES),
    "png_grey": (_encoded((KERNEL * 255).astype(np.uint8), "PNG"), PNG_LIES),
    "png16": (_png16((KERNEL * 65535).astype(np.uint16)[..., None]), PNG_LIES),
    "gif": (_encoded((KERNEL * 255).astype(np.uint8), "GIF", "L"), GIF_LIES),
}


@st.composite
def kernel_files(draw) -> tuple[str, bytes]:  # type: ignore[no-untyped-def]
    """Mutated kernel files; for npz also a mutated member .npy zipped whole (its header lies reach the reader)."""
    if draw(st.booleans()):
        return draw(mutated(KERNELS))
    _, member = draw(mutated({"npy": (GOOD_NPY, NPY_LIES)}))
    return "npz_member", _zip({"k.npy": member}, draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])))


def _suffix(name: str) -> str:
    return "." + ("npz" if name.startswith("npz") else "npy" if name.startswith("npy") else "gif" if name == "gif" else "png")


def _check_kernel(k: torch.Tensor) -> None:
    assert k.dtype == torch.float64 and k.ndim == 2 and bool(torch.isfinite(k).all()) and abs(float(k.sum()) - 1) < 1e-9


@fuzz(300)
@given(kernel_files(), st.sampled_from([None, "k", "j", "missing"]))
def test_fuzz_kernel_files(case, key):
    name, data = case
    path = WORK / f"kernel{_suffix(name)}"
    path.write_bytes(data)
    key = key if path.suffix == ".npz" else None
    blur = outcome("kernels", lambda: Blur.from_file(path, key))
    if blur is not None:
        _check_kernel(blur.kernel)
        assert torch.allclose(load_kernel(path, key), blur.kernel, rtol=1e-14, atol=0)  # Blur normalises once more


SPEC_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)


@fuzz(150)
@given(st.one_of(st.tuples(st.sampled_from(["gaussian", "motion", "gaussian:", "motion:", "box", ""]), SPEC_TEXT).map("".join),
                 st.tuples(st.sampled_from(["", "kernel.npy", "kernel.npz:", "kernel.npz:k", "missing.npy", "/dev/null"]),
                           SPEC_TEXT).map("".join),
                 st.sampled_from(["gaussian:nan", "gaussian:inf", "gaussian:1e-320", "gaussian:0", "gaussian:-1", "gaussian:1e400",
                                  "motion:-1", "motion:1e3", "motion:99999999999999999999", "motion:٣", "gaussian:³"])),
       st.one_of(st.sampled_from([1, 3, 61, 1001]), st.integers(-3, 1003)))
def test_fuzz_kernel_specs(spec, size):
    """A --kernel spec through the request check and the operator built from it (a small image)."""
    from guidedinv.app.measure import build_operator
    from guidedinv.app.request import build_request

    here = os.getcwd()
    os.chdir(WORK)  # relative file specs resolve beside the fuzzed kernel files
    try:
        def run():  # type: ignore[no-untyped-def]
            request = build_request("deblur", sets=[f"operator.kernel={json.dumps(spec)}", f"operator.size={size}"])
            return build_operator(request, (48, 40))
        op = outcome("kernel specs", run)
    finally:
        os.chdir(here)
    if op is not None:
        _check_kernel(op.kernel)


# ------------------------------------------------------------------ checkpoints

def _safetensors_header(edit: Callable[[dict, int, Callable], None]) -> Lie:
    def lie(d: bytearray, v: int, draw=None) -> bytearray:
        (n,) = struct.unpack_from("<Q", d, 0)
        header = json.loads(bytes(d[8 : 8 + n]))
        edit(header, v, draw)
        new = json.dumps(header).encode()
        new += b" " * (-len(new) % 8)
        return bytearray(struct.pack("<Q", len(new)) + new + d[8 + n :])
    return lie


def _tensor(header: dict, draw) -> dict:  # type: ignore[no-untyped-def]
    return header[draw(st.sampled_from(sorted(k for k in header if k != "__metadata__")))]


def _set_dtype(header: dict, v: int, draw) -> None:  # type: ignore[no-untyped-def]
    _tensor(header, draw)["dtype"] = draw(st.sampled_from(["F16", "BF16", "F64", "I8", "U8", "I32", "I64", "BOOL", "F8_E4M3", "X", 7]))


def _set_shape(header: dict, v: int, draw) -> None:  # type: ignore[no-untyped-def]
    tensor = _tensor(header, draw)
    shape = tensor["shape"]
    tensor["shape"] = draw(st.sampled_from([[v, *shape[1:]], shape[:-1], [*shape, 1], [v], [], [-1, *shape[1:]]]))


def _set_offsets(header: dict, v: int, draw) -> None:  # type: ignore[no-untyped-def]
    _tensor(header, draw)["data_offsets"][draw(st.integers(0, 1))] = v


def _set_metadata(header: dict, v: int, draw) -> None:  # type: ignore[no-untyped-def]
    meta = header.setdefault("__metadata__", {})
    key = draw(st.sampled_from(sorted(meta))) if meta else "guidedinv"
    meta[key] = draw(st.sampled_from(["", "{", "null", "[1, 2]", str(v), "x" * 5000, '{"model_channels": -1}', '{"crop": 0}']))


SAFETENSORS_LIES = [
    _named("st_header_length", lambda d, v, draw=None: (struct.pack_into("<Q", d, 0, v if v % 2 else v * 2**32), d)[1]),
    _named("st_dtype", _safetensors_header(_set_dtype)), _named("st_shape", _safetensors_header(_set_shape)),
    _named("st_offsets", _safetensors_header(_set_offsets)), _named("st_metadata", _safetensors_header(_set_metadata)),
]


def _checkpoints() -> dict[str, tuple[bytes, list[Lie]]]:
    from safetensors.torch import load_file

    path = WORK / "tiny.safetensors"
    save_tiny_prior(path)
    state = load_file(path)
    bases = {"safetensors": (path.read_bytes(), SAFETENSORS_LIES)}
    for name, sd in {"torch": state, "torch_int8": {k: (v * 100).to(torch.int8) for k, v in state.items()},
                     "torch_extra_values": {**state, "step": 7, "name": "x", "nested": {"a": [1, 2.5]}}}.items():
        buf = io.BytesIO()
        torch.save(sd, buf)
        bases[name] = (buf.getvalue(), ZIP_LIES)
    return bases


CHECKPOINTS = _checkpoints()


@fuzz(60)
@given(mutated(CHECKPOINTS))
def test_fuzz_checkpoints(case):
    """load_model / load_denoiser on mutated checkpoints (another engineer hardens the loader: any
    GuidedinvError is a good refusal here)."""
    import warnings

    from guidedinv.models import load_denoiser

    name, data = case
    path = WORK / ("model.safetensors" if name == "safetensors" else "model.pt")
    path.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a guessed layout warns; that is the loader's business
        outcome("checkpoints", lambda: load_denoiser(path, device="cpu", progress=False), GuidedinvError)


# ------------------------------------------------------------------ recipes

def _presets() -> dict[str, str]:
    from guidedinv.app.request import preset_dir

    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(preset_dir().glob("*.toml"))}


HOSTILE_TOML = ["nan", "inf", "-inf", "1e400", "-0", "99999999999999999999", "-99999999999999999999", '"x"', "[1, 2]", "{a = 1}",
                "true", '""', '"' + "a" * 5000 + '"', "1979-05-27", "0x10", '"../../etc/passwd"', '"gaussian:inf"', '"motion:-1"',
                '"/dev/zero"', '"logsnr0"', '"ddim999999"', '"0,0,0"', "[]", '"\\u0000"', "1.5", "-1", "0", "2", '"random:1"']


def _toml_value(d: bytearray, v: int, draw) -> bytearray:  # type: ignore[no-untyped-def]
    lines = bytes(d).decode("utf-8").splitlines()
    i = draw(st.sampled_from([i for i, line in enumerate(lines) if " = " in line and not line.lstrip().startswith("#")]))
    lines[i] = lines[i].split(" = ")[0] + " = " + draw(st.sampled_from(HOSTILE_TOML + [str(v)]))
    return bytearray("\n".join(lines).encode())


def _toml_line(action: str) -> Lie:
    def lie(d: bytearray, v: int, draw=None) -> bytearray:
        lines = bytes(d).decode("utf-8").splitlines()
        i = v % len(lines)
        lines[i : i + 1] = {"drop": [], "twice": [lines[i]] * 2, "table": ["[" + lines[i].split(" = ")[0].strip("[] ") + "]"]}[action]
        return bytearray("\n".join(lines).encode())
    return _named(f"toml_{action}", lie)


RECIPES = {name: (text.encode(), [_named("toml_value", _toml_value)] * 3 + [_toml_line(a) for a in ("drop", "twice", "table")])
           for name, text in _presets().items()}


@fuzz(300)
@given(mutated(RECIPES))
def test_fuzz_recipes(case):
    from guidedinv.app.request import Request, load_preset, parse_request

    _, data = case
    path = WORK / "recipe.toml"
    path.write_bytes(data)
    request = outcome("recipes", lambda: parse_request(load_preset(path), f"--task {path}"))
    if request is not None:
        assert isinstance(request, Request)


# ------------------------------------------------------------------ manifests

FIELDS = ["input", "output", "mask", "reference", "scale", "seed", "id"]
HOSTILE_CELLS = ["", " ", "nan", "inf", "-inf", "1e400", "-1", "0", "2**70", "18446744073709551616", "1.5", "true", "../x.png",
                 "/abs/x.png", "a\x00b.png", "..", ".", "out/../../x.png", '"q"', "x" * 5000, "é.png", "a.PNG", "dir/", "\\x.png",
                 "~/x.png", "x.jpg", "C:\\x.png"]
HOSTILE_JSON = [None, True, False, 0, -1, 2**70, 1.5, float("inf"), float("nan"), -0.0, [], [1], {}, {"a": 1}, "", ".", "..",
                "../x.png", "/x.png", "a\x00b.png", "x" * 5000, 1e300]


def _csv_cell(d: bytearray, v: int, draw) -> bytearray:  # type: ignore[no-untyped-def]
    rows = list(csv.reader(bytes(d).decode("utf-8").splitlines()))
    row = rows[draw(st.integers(1, len(rows) - 1))]
    row[draw(st.integers(0, len(row) - 1))] = draw(st.sampled_from(HOSTILE_CELLS + [str(v)]))
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return bytearray(out.getvalue().encode())


def _csv_header(d: bytearray, v: int, draw) -> bytearray:  # type: ignore[no-untyped-def]
    lines = bytes(d).decode("utf-8").splitlines()
    names = lines[0].split(",")
    names[draw(st.integers(0, len(names) - 1))] = draw(st.sampled_from(["", "Input", "colour", "input", " input ", "seed"]))
    return bytearray("\n".join([",".join(names), *lines[1:]]).encode())


def _jsonl_field(d: bytearray, v: int, draw) -> bytearray:  # type: ignore[no-untyped-def]
    lines = bytes(d).decode("utf-8").splitlines()
    i = draw(st.integers(0, len(lines) - 1))
    row = json.loads(lines[i])
    row[draw(st.sampled_from(FIELDS))] = draw(st.sampled_from(HOSTILE_JSON + [v]))
    lines[i] = json.dumps(row)
    return bytearray("\n".join(lines).encode())


def _jsonl_line(d: bytearray, v: int, draw) -> bytearray:  # type: ignore[no-untyped-def]
    lines = bytes(d).decode("utf-8").splitlines()
    lines.insert(v % (len(lines) + 1), draw(st.sampled_from(["[]", "null", "1", '"a.png"', "{", '{"input": "a.png", "input": "b.png"}',
                                                             "{}", '{"input": "x.png"} {"input": "y.png"}', "\ufeff{}"])))
    return bytearray("\n".join(lines).encode())


_ROWS = [{"input": "photos/a.png", "output": "a.png", "mask": "m/a.png", "reference": "ref/a.png", "scale": 4, "seed": 7, "id": "a"},
         {"input": "photos/b.jpg", "scale": 2},
         {"input": "c.png", "seed": 0, "output": "sub/c.png"}]
_csv = io.StringIO()
_writer = csv.DictWriter(_csv, FIELDS)
_writer.writeheader()
_writer.writerows(_ROWS)
MANIFESTS = {
    "csv": (_csv.getvalue().encode(), [_named("csv_cell", _csv_cell)] * 3 + [_named("csv_header", _csv_header)]),
    "jsonl": ("\n".join(json.dumps(r) for r in _ROWS).encode(), [_named("jsonl_field", _jsonl_field)] * 3
              + [_named("jsonl_line", _jsonl_line)]),
}


@fuzz(300)
@given(mutated(MANIFESTS))
def test_fuzz_manifests(case):
    from guidedinv.app.batch.items import Item, read_manifest

    name, data = case
    path = WORK / f"manifest.{name}"
    path.write_bytes(data)
    items = outcome("manifests", lambda: read_manifest(path))
    if items is not None:
        assert items and all(isinstance(i, Item) and i.output.lower().endswith(".png") for i in items)
