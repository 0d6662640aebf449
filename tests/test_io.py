"""Image I/O: every file the test reads it makes itself in tmp_path, and checks against Pillow or
against the numbers it wrote. Exact means exact: 8- and 16-bit samples come back bit for bit."""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from guidedinv.errors import InputError
from guidedinv.io import (
    PAD_MODES,
    TEMP_SUFFIX,
    Crop,
    check_mask,
    from_model_range,
    make_mask,
    pad_to_multiple,
    read_image,
    read_mask,
    to_model_range,
    write_image,
)

RNG = np.random.default_rng(0)


def samples(h: int, w: int, c: int, dtype=np.uint8) -> np.ndarray:
    return RNG.integers(0, np.iinfo(dtype).max + 1, (h, w, c), dtype=dtype)


def as_ints(t: torch.Tensor, bits: int = 8) -> np.ndarray:
    """(C, H, W) [0, 1] tensor -> (H, W, C) integers as they were stored."""
    return (t.double() * (2**bits - 1)).round().long().permute(1, 2, 0).numpy()


def raw_png(path: Path, v: np.ndarray) -> Path:
    """A 16-bit PNG written by hand (filter 0, no library), independent of the code under test."""
    h, w, c = v.shape
    rows = v.astype(">u2").reshape(h, w * c).view(np.uint8)
    data = b"".join(b"\x00" + r.tobytes() for r in rows)

    def chunk(kind: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + kind + d + struct.pack(">I", zlib.crc32(kind + d))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 2: 4, 3: 2, 4: 6}[c], 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b""))
    return path


def split(v: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    colour = 1 if v.shape[-1] <= 2 else 3
    return v[..., :colour], (v[..., colour:] if v.shape[-1] > colour else None)


# ---------------------------------------------------------------- reading: the format matrix

@pytest.mark.parametrize("mode,c", [("L", 1), ("LA", 2), ("RGB", 3), ("RGBA", 4)])
def test_8bit_png_read_exact(tmp_path, mode, c):
    v = samples(5, 7, c)
    Image.fromarray(v if c > 1 else v[..., 0], mode).save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    colour, alpha = split(v)
    assert (img.mode, img.format, img.bit_depth, img.image.dtype) == (mode, "PNG", 8, torch.float32)
    assert img.image.shape == (colour.shape[-1], 5, 7) and img.size == (5, 7)
    assert np.array_equal(as_ints(img.image), colour)
    assert (img.alpha is None) == (alpha is None)
    if alpha is not None:  # alpha is kept apart, never inside the image the model sees
        assert np.array_equal(as_ints(img.alpha), alpha)


@pytest.mark.parametrize("c", [1, 2, 3, 4])
def test_16bit_png_keeps_full_precision(tmp_path, c):
    v = samples(6, 5, c, np.uint16)
    img = read_image(raw_png(tmp_path / "a.png", v))
    colour, alpha = split(v)
    assert img.bit_depth == 16 and img.image.shape[0] == colour.shape[-1]
    assert np.array_equal(as_ints(img.image, 16), colour)
    if alpha is not None:
        assert np.array_equal(as_ints(img.alpha, 16), alpha)
    # Pillow's own (8-bit) reading is the high byte of what we read
    assert np.array_equal(as_ints(img.image, 16) >> 8, (colour >> 8))


def test_16bit_tiff_grey_and_rgb(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    grey, rgb = samples(4, 6, 1, np.uint16), samples(4, 6, 3, np.uint16)
    Image.fromarray(grey[..., 0]).save(tmp_path / "g.tif")
    tifffile.imwrite(tmp_path / "c.tif", rgb, photometric="rgb")
    g, c = read_image(tmp_path / "g.tif"), read_image(tmp_path / "c.tif")
    assert (g.bit_depth, g.channels, c.bit_depth, c.channels, c.format) == (16, 1, 16, 3, "TIFF")
    assert np.array_equal(as_ints(g.image, 16), grey) and np.array_equal(as_ints(c.image, 16), rgb)


def test_float_tiff_rgb(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    v = RNG.random((4, 5, 3), dtype=np.float32)
    tifffile.imwrite(tmp_path / "f.tif", v, photometric="rgb")
    img = read_image(tmp_path / "f.tif")
    assert img.bit_depth == 32 and torch.equal(img.image, torch.from_numpy(v).permute(2, 0, 1))


def test_palette_with_and_without_transparency(tmp_path):
    index = RNG.integers(0, 3, (5, 6), dtype=np.uint8)
    palette = np.array([[250, 0, 0], [0, 200, 0], [0, 0, 150]], np.uint8)
    pal = Image.fromarray(index, "P")
    pal.putpalette(palette.ravel().tolist())
    pal.save(tmp_path / "t.png", transparency=2)
    pal.save(tmp_path / "o.png")
    t, o = read_image(tmp_path / "t.png"), read_image(tmp_path / "o.png")
    assert t.mode == "P" and t.channels == 3 and o.alpha is None
    assert np.array_equal(as_ints(t.image), palette[index]) and np.array_equal(as_ints(o.image), palette[index])
    assert np.array_equal(as_ints(t.alpha)[..., 0], np.where(index == 2, 0, 255))


def test_one_bit(tmp_path):
    v = RNG.integers(0, 2, (5, 9)).astype(bool)
    Image.fromarray(v).save(tmp_path / "b.png")
    img = read_image(tmp_path / "b.png")
    assert (img.mode, img.bit_depth, img.channels) == ("1", 1, 1) and torch.equal(img.image[0] == 1, torch.from_numpy(v))


@pytest.mark.parametrize("fmt,options", [("webp", {"lossless": True}), ("bmp", {}), ("tiff", {"compression": "tiff_lzw"})])
def test_lossless_formats_exact(tmp_path, fmt, options):
    v = samples(6, 8, 4 if fmt == "webp" else 3)
    Image.fromarray(v).save(tmp_path / f"a.{fmt}", **options)
    img = read_image(tmp_path / f"a.{fmt}")
    colour, alpha = split(v)
    assert np.array_equal(as_ints(img.image), colour)
    assert alpha is None or np.array_equal(as_ints(img.alpha), alpha)


def test_16bit_pgm(tmp_path):
    v = samples(3, 4, 1, np.uint16)
    Image.fromarray(v[..., 0]).save(tmp_path / "g.pgm")
    img = read_image(tmp_path / "g.pgm")
    assert (img.format, img.bit_depth) == ("PPM", 16) and np.array_equal(as_ints(img.image, 16), v)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    Image.fromarray(samples(8, 8, 4), "CMYK").save(tmp_path / "c.jpg")
    img = read_image(tmp_path / "c.jpg")
    with Image.open(tmp_path / "c.jpg") as im:
        expected = np.asarray(im.convert("RGB"))
    assert (img.mode, img.format, img.channels) == ("CMYK", "JPEG", 3) and np.array_equal(as_ints(img.image), expected)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, orientation):
    im = Image.fromarray(samples(4, 7, 3))
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(tmp_path / "o.png", exif=exif)
    img = read_image(tmp_path / "o.png")
    with Image.open(tmp_path / "o.png") as im:
        expected = np.asarray(ImageOps.exif_transpose(im))
    assert img.orientation == orientation and np.array_equal(as_ints(img.image), expected)


def test_jpeg_exif_orientation_6_rotates(tmp_path):
    im = Image.fromarray(samples(16, 24, 3))
    exif = im.getexif()
    exif[0x0112] = 6  # stored 24 wide, shown rotated 90 degrees clockwise: 16 wide, 24 high
    im.save(tmp_path / "o.jpg", exif=exif, quality=95)
    img = read_image(tmp_path / "o.jpg")
    with Image.open(tmp_path / "o.jpg") as im:
        stored = np.asarray(im)
    assert img.size == (24, 16) and img.orientation == 6
    assert np.array_equal(as_ints(img.image), np.rot90(stored, -1))


# ---------------------------------------------------------------- reading: bad inputs

def _multi_frame_tiff(p: Path) -> None:
    frame = Image.fromarray(samples(3, 3, 3))
    frame.save(p, save_all=True, append_images=[frame])


def _float_tiff(p: Path, bad: float) -> None:
    v = np.full((3, 4), 0.5, np.float32)
    v[1, 2] = bad
    Image.fromarray(v, "F").save(p)


def _png_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(samples(40, 40, 3)).save(buf, "PNG")
    return buf.getvalue()


BAD_FILES = {
    "missing": ("a.png", None, "file not found"),
    "directory": ("d.png", "mkdir", "is a folder"),
    "zero_bytes": ("z.png", lambda p: p.write_bytes(b""), "empty (0 bytes)"),
    "not_an_image": ("t.png", lambda p: p.write_text("hello"), "not an image file"),
    "corrupt": ("c.png", lambda p: p.write_bytes((b := _png_bytes())[:200] + bytes(300) + b[500:]), "corrupt or truncated"),
    "truncated": ("t.png", lambda p: p.write_bytes((b := _png_bytes())[: len(b) // 2]), "corrupt or truncated"),
    "zero_pixels": ("e.png", lambda p: raw_png(p, np.zeros((0, 0, 1), np.uint16)), "image is empty (0x0 pixels)"),
    "multi_frame": ("m.tif", _multi_frame_tiff, "2 frames"),
    "nan_float_tiff": ("n.tif", lambda p: _float_tiff(p, float("nan")), "NaN or infinite"),
    "inf_float_tiff": ("i.tif", lambda p: _float_tiff(p, float("inf")), "NaN or infinite"),
    "float_out_of_range": ("r.tif", lambda p: _float_tiff(p, 2.0), "values in [0.5, 2]"),
    "colour_ppm_16bit": ("c.ppm", lambda p: p.write_bytes(b"P6 1 1 65535 " + bytes(6)), "16-bit colour PPM"),
    "unsupported_mode": ("i32.tif", lambda p: Image.new("I", (3, 3), 7).save(p), "unsupported colour mode 'I'"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_files_give_one_line_input_error(tmp_path, case):
    name, make, phrase = BAD_FILES[case]
    path = tmp_path / name
    if make == "mkdir":
        path.mkdir()
    elif make is not None:
        make(path)
    with pytest.raises(InputError) as info:
        read_image(path)
    message = str(info.value)
    assert phrase in message and str(path) in message and "\n" not in message


# ---------------------------------------------------------------- masks

def test_mask_white_fills_grey_thresholded_at_half(tmp_path):
    v = np.array([[0, 127, 128, 255]], np.uint8)  # 127/255 < 0.5 <= 128/255
    Image.fromarray(v).save(tmp_path / "m.png")
    Image.fromarray(np.repeat(v[..., None], 3, -1)).save(tmp_path / "c.png")
    expected = torch.tensor([[False, False, True, True]])
    assert torch.equal(read_mask(tmp_path / "m.png", (1, 4)), expected)
    assert torch.equal(read_mask(tmp_path / "c.png", (3, 1, 4)), expected)


def test_alpha_only_mask_transparent_fills(tmp_path):
    v = np.zeros((2, 3, 4), np.uint8)
    v[..., 3] = [[0, 255, 255], [255, 0, 255]]
    Image.fromarray(v).save(tmp_path / "m.png")
    assert torch.equal(read_mask(tmp_path / "m.png", (2, 3)), torch.from_numpy(v[..., 3] == 0))
    v[0, 0, :3] = 255  # colour and alpha both vary: which one is the mask?
    Image.fromarray(v).save(tmp_path / "m.png")
    with pytest.raises(InputError, match="ambiguous"):
        read_mask(tmp_path / "m.png", (2, 3))


def test_mask_size_mismatch_names_both_sizes(tmp_path):
    Image.new("L", (30, 20), 255).save(tmp_path / "m.png")
    with pytest.raises(InputError) as info:
        read_mask(tmp_path / "m.png", (3, 24, 32))
    assert "30x20" in str(info.value) and "32x24" in str(info.value) and "m.png" in str(info.value)


@pytest.mark.parametrize("value,phrase", [(0, "nothing to fill"), (255, "every pixel")])
def test_check_mask_rejects_empty_and_all_fill(tmp_path, value, phrase):
    Image.new("L", (8, 6), value).save(tmp_path / "m.png")
    mask = read_mask(tmp_path / "m.png", (6, 8))
    with pytest.raises(InputError, match=phrase) as info:
        check_mask(mask, tmp_path / "m.png")
    assert "m.png" in str(info.value)
    good = make_mask("half", (6, 8))
    assert check_mask(good) is good


def test_make_mask_specs():
    box = make_mask("box", (3, 10, 21))
    assert box.dtype == torch.bool and box.shape == (10, 21) and box.sum() == 25  # side min(10, 21) // 2 = 5
    assert box[2:7, 8:13].all()
    assert make_mask("box:4", (10, 21)).sum() == 16 and make_mask(" BOX:4 ", (10, 21))[3:7, 8:12].all()
    half = make_mask("half", (4, 7))
    assert half[:, 3:].all() and not half[:, :3].any()
    lines = make_mask("lines", (5, 3))
    assert torch.equal(lines, make_mask("every-second-line", (5, 3)))
    assert torch.equal(lines[:, 0], torch.tensor([False, True, False, True, False]))


def test_make_random_mask_fraction_and_seed():
    a, b, c = (make_mask("random:0.7", (20, 30), seed=s) for s in (1, 1, 2))
    assert a.sum() == 420 and torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("spec", ["circle", "random", "random:1.5", "random:x", "box:abc", "box:0", "box:99", "half:3", ""])
def test_make_mask_bad_specs(spec):
    with pytest.raises(InputError) as info:
        make_mask(spec, (10, 12))
    assert repr(spec) in str(info.value) and "\n" not in str(info.value)
    if spec in ("circle", "random", "half:3", "box:abc"):
        assert "box:SIZE" in str(info.value) and "random:F" in str(info.value) and "lines" in str(info.value)


# ---------------------------------------------------------------- writing

@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("c", [1, 2, 3, 4])
def test_write_read_round_trip_exact(tmp_path, bits, c):
    v = samples(7, 5, c, np.uint8 if bits == 8 else np.uint16)
    x = torch.from_numpy(v.astype(np.float64) / (2**bits - 1)).permute(2, 0, 1).float()
    colour = 1 if c <= 2 else 3
    out = write_image(tmp_path / "o.png", x[:colour], alpha=x[colour:] if c > colour else None, bit_depth=bits)
    img = read_image(out)
    assert img.bit_depth == bits and np.array_equal(as_ints(img.image, bits), v[..., :colour])
    assert (img.alpha is None) == (c == colour)
    if img.alpha is not None:
        assert np.array_equal(as_ints(img.alpha, bits), v[..., colour:])
    if bits == 8:  # an independent decoder agrees
        with Image.open(out) as im:
            assert np.array_equal(np.asarray(im).reshape(v.shape), v)


def test_rgba_alpha_put_back_exactly(tmp_path):
    v = samples(9, 11, 4)
    Image.fromarray(v).save(tmp_path / "in.png")
    img = read_image(tmp_path / "in.png")
    write_image(tmp_path / "out.png", img.image, alpha=img.alpha)
    with Image.open(tmp_path / "out.png") as im:
        assert im.mode == "RGBA" and np.array_equal(np.asarray(im), v)


def test_metadata_in_png_text_chunks(tmp_path):
    meta = {"model": "adm-256", "seed": "7", "recipe": "[task]\nname = \"inpaint\"", "note": "ünïcode ✓"}
    write_image(tmp_path / "o.png", torch.rand(3, 4, 4), metadata=meta)
    assert read_image(tmp_path / "o.png").metadata == {"Software": read_image(tmp_path / "o.png").metadata["Software"], **meta}
    with Image.open(tmp_path / "o.png") as im:
        assert im.text["seed"] == "7" and im.text["note"] == "ünïcode ✓" and im.text["Software"].startswith("guidedinv ")
    data = (tmp_path / "o.png").read_bytes()
    assert b"tEXtseed\x007" in data and b"iTXtnote" in data
    with pytest.raises(InputError, match="metadata key"):
        write_image(tmp_path / "p.png", torch.rand(1, 2, 2), metadata={" bad": "x"})


def test_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "o.png"
    write_image(target, torch.zeros(1, 3, 3))
    write_image(target, torch.ones(1, 3, 3))  # replaces an existing output
    assert read_image(target).image.min() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]

    def killed(*args):  # the process dies after the bytes are written, before the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_image(target, torch.zeros(1, 3, 3))
    monkeypatch.undo()
    assert read_image(target).image.min() == 1  # the old output, complete
    assert not list(tmp_path.glob(f"*{TEMP_SUFFIX}"))


def test_write_creates_missing_folders(tmp_path):
    assert read_image(write_image(tmp_path / "a" / "b" / "o.png", torch.rand(3, 2, 2))).size == (2, 2)


def test_unwritable_output_folder(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(InputError) as info:
        write_image(tmp_path / "file" / "o.png", torch.rand(3, 2, 2))
    assert f"folder {tmp_path / 'file'}" in str(info.value)
    if os.name == "posix" and os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(InputError, match=f"folder {locked}.*ermission"):
            write_image(locked / "o.png", torch.rand(3, 2, 2))


def test_write_rejects_bad_names_and_values(tmp_path):
    with pytest.raises(InputError, match=r"\.png"):
        write_image(tmp_path / "o.jpg", torch.rand(3, 2, 2))
    (tmp_path / "d.png").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        write_image(tmp_path / "d.png", torch.rand(3, 2, 2))
    for bad in (torch.full((3, 2, 2), 1.5), torch.full((3, 2, 2), float("nan")), torch.rand(2, 2, 2)):
        with pytest.raises(ValueError):
            write_image(tmp_path / "o.png", bad)


# ---------------------------------------------------------------- range and size

def test_model_range_conversion():
    x = torch.rand(2, 3, 4, 4)
    assert torch.allclose(from_model_range(to_model_range(x)), x)
    assert to_model_range(torch.tensor([0.0, 0.5, 1.0])).tolist() == [-1.0, 0.0, 1.0]
    assert from_model_range(torch.tensor([-3.0, 0.0, 3.0])).tolist() == [0.0, 0.5, 1.0]


@pytest.mark.parametrize("mode", PAD_MODES)
@pytest.mark.parametrize("hw", [(1, 1), (3, 2), (7, 13), (33, 9), (16, 24)])
def test_pad_to_multiple_round_trip(mode, hw):
    x = torch.rand(2, 3, *hw)
    padded, crop = pad_to_multiple(x, 8, mode)
    assert padded.shape[-2] % 8 == 0 and padded.shape[-1] % 8 == 0
    assert padded.shape[-2] - hw[0] < 8 and padded.shape[-1] - hw[1] < 8
    assert torch.equal(crop(padded), x)
    if mode == "reflect" and min(hw) > 4:  # where torch can reflect, it agrees
        pad = (crop.left, padded.shape[-1] - hw[1] - crop.left, crop.top, padded.shape[-2] - hw[0] - crop.top)
        assert torch.equal(F.pad(x, pad, mode="reflect"), padded)


def test_pad_wider_than_image_and_masks():
    x = torch.rand(1, 3, 2)
    padded, crop = pad_to_multiple(x, 32)
    assert padded.shape == (1, 32, 32) and torch.equal(crop(padded), x)
    assert set(padded.unique().tolist()) == set(x.unique().tolist())  # only mirrored pixels, nothing new
    mask = torch.rand(5, 7) > 0.5
    padded, crop = pad_to_multiple(mask, 4, "constant")
    assert padded.dtype == torch.bool and torch.equal(crop(padded), mask)
    assert Crop(1, 2, 3, 4).scaled(4) == Crop(4, 8, 12, 16)


# ---------------------------------------------------------------- the shipped samples

SAMPLE_IMAGES = Path(__file__).resolve().parents[1] / "sample_images"


def test_sample_images_read_and_their_masks_are_usable():
    masks = sorted(SAMPLE_IMAGES.glob("*_mask.png"))
    assert len(masks) >= 4
    for mask_path in masks:
        img = read_image(mask_path.with_name(mask_path.name.replace("_mask.png", ".png")))
        assert img.bit_depth == 8 and img.alpha is None and "License" in img.metadata
        check_mask(read_mask(mask_path, img.size), mask_path)
    assert sum(p.stat().st_size for p in SAMPLE_IMAGES.iterdir()) < 1_500_000


# ---------------------------------------------------------------- one size limit for every decoder

def _header_lie_png(p: Path, w: int, h: int) -> None:
    """A 1x1 8-bit grey PNG whose IHDR declares w x h (its CRC fixed, so only the size lies)."""
    def chunk(kind: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + kind + d + struct.pack(">I", zlib.crc32(kind + d))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00\x80")) + chunk(b"IEND", b""))


def _header_lie_jpeg(p: Path, w: int, h: int) -> None:
    """A 16x16 JPEG whose SOF0 marker declares w x h (w, h < 65536)."""
    Image.fromarray(samples(16, 16, 3)).save(p, quality=90)
    data = bytearray(p.read_bytes())
    sof = data.index(b"\xff\xc0")  # SOF0: length (2), precision (1), height (2), width (2)
    data[sof + 5 : sof + 9] = struct.pack(">HH", h, w)
    p.write_bytes(bytes(data))


def patch_tiff_size(p: Path, w: int, h: int) -> None:
    """Rewrite the ImageWidth / ImageLength tags of a one-page TIFF in place (the pixel data stays small)."""
    import tifffile

    with tifffile.TiffFile(p) as tf:
        tags = tf.pages[0].tags
        spots = [(tags["ImageWidth"].valueoffset, tags["ImageWidth"].dtype, w),
                 (tags["ImageLength"].valueoffset, tags["ImageLength"].dtype, h)]
        order = tf.byteorder
    data = bytearray(p.read_bytes())
    for offset, dtype, value in spots:
        fmt = order + {3: "H", 4: "I"}[int(dtype)]
        struct.pack_into(fmt, data, offset, value)
    p.write_bytes(bytes(data))


def _float_rgb_tiff_lie(p: Path) -> None:
    """The issue's bomb: a small float RGB TIFF (read by tifffile) declaring 14000 x 14000 = 196 Mpx."""
    import tifffile

    tifffile.imwrite(p, np.full((8, 8, 3), 0.5, np.float32), photometric="rgb", compression="zlib")
    patch_tiff_size(p, 14000, 14000)


def _grey_tiff_lie(dtype) -> object:
    def make(p: Path) -> None:
        import tifffile

        tifffile.imwrite(p, np.ones((8, 8), dtype), photometric="minisblack", compression="zlib")
        patch_tiff_size(p, 14000, 14000)
    return make


HEADER_LIES = {
    "png_65535_squared": ("b.png", lambda p: _header_lie_png(p, 65535, 65535), "65535x65535"),
    "png_2g_by_1": ("w.png", lambda p: _header_lie_png(p, 2**31 - 1, 1), "2147483647x1"),
    "jpeg": ("b.jpg", lambda p: _header_lie_jpeg(p, 60000, 50000), "60000x50000"),
    "tiff_float_rgb": ("f.tif", _float_rgb_tiff_lie, "14000x14000"),
    "tiff_float_grey": ("g.tif", _grey_tiff_lie(np.float32), "14000x14000"),
    "tiff_16bit_grey": ("s.tif", _grey_tiff_lie(np.uint16), "14000x14000"),
    "tiff_8bit_grey": ("e.tif", _grey_tiff_lie(np.uint8), "14000x14000"),
}


@pytest.mark.parametrize("case", HEADER_LIES)
def test_files_declaring_huge_sizes_are_refused_from_the_header(tmp_path, case):
    """Each file is a few hundred bytes; decoding 196 Mpx would take seconds and GBs, so a quick
    refusal naming the declared size proves the check ran on the header."""
    import resource

    name, make, declared = HEADER_LIES[case]
    path = tmp_path / name
    make(path)
    assert path.stat().st_size < 10_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(InputError) as info:
        read_image(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and declared in message
    assert "over the limit of 128,000,000 pixels" in message and "GUIDEDINV_MAX_PIXELS" in message and "guidedinv.io.MAX_PIXELS" in message
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 200_000, f"peak memory grew by {grown_kb} kB: the file was decoded"


def _save(fmt: str, mode: str = "RGB", **options) -> object:
    def make(p: Path) -> None:
        v = samples(40, 30, {"L": 1, "RGB": 3}[mode])
        Image.fromarray(v[..., 0] if mode == "L" else v, mode).save(p, fmt, **options)
    return make


def _tiff(dtype, c: int) -> object:
    def make(p: Path) -> None:
        import tifffile

        v = samples(40, 30, c, np.uint16).astype(dtype) / (65535 if np.dtype(dtype).kind == "f" else 1)
        tifffile.imwrite(p, v.astype(dtype) if c > 1 else v[..., 0].astype(dtype), photometric="rgb" if c == 3 else "minisblack")
    return make


EVERY_DECODER = {
    "png8": ("a.png", _save("PNG")),
    "png16_rgb": ("b.png", lambda p: raw_png(p, samples(40, 30, 3, np.uint16))),
    "jpeg": ("c.jpg", _save("JPEG")),
    "webp": ("d.webp", _save("WEBP", lossless=True)),
    "bmp": ("e.bmp", _save("BMP")),
    "gif": ("f.gif", _save("GIF", "L")),
    "ppm": ("g.ppm", _save("PPM")),
    "pgm16": ("h.pgm", lambda p: p.write_bytes(b"P5 30 40 65535 " + samples(40, 30, 1, np.uint16).astype(">u2").tobytes())),
    "tiff8_rgb": ("i.tif", _save("TIFF")),
    "tiff16_grey": ("j.tif", _tiff(np.uint16, 1)),
    "tiff16_rgb": ("k.tif", _tiff(np.uint16, 3)),
    "tiff_float32_grey": ("l.tif", _tiff(np.float32, 1)),
    "tiff_float32_rgb": ("m.tif", _tiff(np.float32, 3)),
    "tiff_float64_rgb": ("n.tif", _tiff(np.float64, 3)),
}


@pytest.mark.parametrize("case", EVERY_DECODER)
def test_one_limit_for_every_decoder(tmp_path, monkeypatch, case):
    """A 30x40 file of every format and sample type: read under a limit of 1200 pixels, refused at 1199."""
    import guidedinv.io

    name, make = EVERY_DECODER[case]
    path = tmp_path / name
    make(path)
    monkeypatch.setattr(guidedinv.io, "MAX_PIXELS", 30 * 40)
    assert read_image(path).size == (40, 30)
    monkeypatch.setattr(guidedinv.io, "MAX_PIXELS", 30 * 40 - 1)
    with pytest.raises(InputError, match=r"declares 30x40 pixels \(0\.0 Mpx\), over the limit of 1,199 pixels") as info:
        read_image(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_limit_setting_order_env_and_bad_values(tmp_path, monkeypatch):
    """guidedinv.io.MAX_PIXELS beats $GUIDEDINV_MAX_PIXELS beats the default; bad settings are named."""
    import guidedinv.io
    from guidedinv.io import DEFAULT_MAX_PIXELS, check_pixels, max_pixels

    path = tmp_path / "a.png"
    _save("PNG")(path)
    monkeypatch.delenv("GUIDEDINV_MAX_PIXELS", raising=False)
    assert max_pixels() == DEFAULT_MAX_PIXELS == 128_000_000
    check_pixels("photo.jpg", 6000, 4000)  # a 24 Mpx photo passes
    check_pixels("phone.jpg", 12_000, 9_000)  # 108 Mpx too
    with pytest.raises(InputError, match="196.0 Mpx"):
        check_pixels("bomb.tif", 14000, 14000)
    monkeypatch.setenv("GUIDEDINV_MAX_PIXELS", "1199")
    with pytest.raises(InputError, match="over the limit of 1,199 pixels"):
        read_image(path)
    monkeypatch.setenv("GUIDEDINV_MAX_PIXELS", " 1200 ")
    assert read_image(path).size == (40, 30)
    monkeypatch.setattr(guidedinv.io, "MAX_PIXELS", 1199)  # the Python setting wins over the environment
    with pytest.raises(InputError, match="1,199"):
        read_image(path)
    monkeypatch.setattr(guidedinv.io, "MAX_PIXELS", None)
    for bad in ["abc", "0", "-5", "1e9", "12.5"]:
        monkeypatch.setenv("GUIDEDINV_MAX_PIXELS", bad)
        with pytest.raises(InputError, match=f"GUIDEDINV_MAX_PIXELS={bad!r}: expected a whole number"):
            read_image(path)
    monkeypatch.delenv("GUIDEDINV_MAX_PIXELS")
    for bad in [0, -1, 2.5, "100", True]:
        monkeypatch.setattr(guidedinv.io, "MAX_PIXELS", bad)
        with pytest.raises(InputError, match="guidedinv.io.MAX_PIXELS"):
            read_image(path)


def test_pillow_check_replaced_while_reading_and_restored(tmp_path, monkeypatch):
    """Pillow's own bomb check (warning above MAX_IMAGE_PIXELS, error above twice that) does not
    fire under ours, so raising our limit works past Pillow's 179 Mpx; Pillow's setting is put back."""
    import warnings

    import guidedinv.io

    path = tmp_path / "a.png"
    _save("PNG")(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow alone: an error for 1200 pixels
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(path).size == (40, 30)
        monkeypatch.setattr(guidedinv.io, "MAX_PIXELS", 1000)
        with pytest.raises(InputError, match="over the limit of 1,000 pixels"):
            read_image(path)
    assert Image.MAX_IMAGE_PIXELS == 100


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_damaged_header_names_the_format(tmp_path, fmt):
    """A file that starts with a format's signature but whose header is cut is 'corrupt or truncated', not 'not an image'."""
    import io

    buf = io.BytesIO()
    Image.fromarray(samples(20, 20, 3)).save(buf, fmt)
    path = tmp_path / "cut.img"
    path.write_bytes(buf.getvalue()[:14])
    with pytest.raises(InputError, match="corrupt or truncated image file"):
        read_image(path)


def _retag(p: Path, code: int, new_code: int | None = None, new_count: int | None = None) -> None:
    """Change the code or count of one entry of the first IFD of a little-endian TIFF."""
    data = bytearray(p.read_bytes())
    (ifd,) = struct.unpack_from("<I", data, 4)
    (n,) = struct.unpack_from("<H", data, ifd)
    for i in range(n):
        entry = ifd + 2 + 12 * i
        if struct.unpack_from("<H", data, entry)[0] == code:
            if new_code is not None:
                struct.pack_into("<H", data, entry, new_code)
            if new_count is not None:
                struct.pack_into("<I", data, entry + 4, new_count)
    p.write_bytes(bytes(data))


def test_decoder_warnings_and_log_lines_are_silenced(tmp_path, caplog):
    """A damaged file is read or refused in one line: Pillow's warnings ('Tag data larger than file')
    and tifffile's log lines ('missing data offset tag') do not reach the user; settings are restored."""
    import logging
    import warnings

    import tifffile

    no_offsets = tmp_path / "f.tif"  # float RGB: tifffile's path
    tifffile.imwrite(no_offsets, np.full((4, 5, 3), 0.5, np.float32), photometric="rgb")
    _retag(no_offsets, 273, new_code=65000)
    long_tag = tmp_path / "p.tif"  # 8-bit RGB: Pillow's path
    Image.fromarray(samples(4, 5, 3)).save(long_tag)
    _retag(long_tag, 305 if b"\x31\x01" in long_tag.read_bytes() else 284, new_count=10**6)
    _retag(long_tag, 296, new_count=10**6)
    levels = [logging.getLogger(n).level for n in ("PIL", "tifffile")]
    caplog.set_level(logging.DEBUG)
    for path in (no_offsets, long_tag):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            try:
                read_image(path)
            except InputError as e:
                assert "\n" not in str(e)
        assert not seen, [str(w.message) for w in seen]
    assert not [r for r in caplog.records if r.name.startswith(("PIL", "tifffile"))], caplog.records
    assert [logging.getLogger(n).level for n in ("PIL", "tifffile")] == levels
    assert Image.MAX_IMAGE_PIXELS is not None


def test_unreadable_paths_are_input_errors(tmp_path):
    """Names the OS refuses (too long, NUL byte, a link loop, a file used as a folder) are one-line InputErrors."""
    (tmp_path / "loop_a.png").symlink_to(tmp_path / "loop_b.png")
    (tmp_path / "loop_b.png").symlink_to(tmp_path / "loop_a.png")
    (tmp_path / "f.png").write_bytes(b"x")
    cases = {tmp_path / ("x" * 300 + ".png"): "File name too long", tmp_path / "a\x00b.png": "embedded null byte",
             tmp_path / "loop_a.png": "Too many levels of symbolic links", tmp_path / "f.png" / "a.png": "file not found"}
    for path, phrase in cases.items():
        with pytest.raises(InputError, match=phrase) as info:
            read_image(path)
        assert "\n" not in str(info.value)
