"""guidedinv.io.files: the one image-suffix list and the one folder listing every command uses."""
from __future__ import annotations

from pathlib import Path

import pytest

from guidedinv.io import IMAGE_SUFFIXES, is_image_file, list_images


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_list_images_sorted_visible_and_optionally_recursive(tmp_path):
    for name in ("b.png", "a.JPG", "c.txt", ".hidden.png", "sub/d.webp", "sub/.e.png", ".cache/f.png", "sub/deep/g.tif"):
        _touch(tmp_path / name)
    (tmp_path / "folder.png").mkdir()  # a folder with an image's name is not an image
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png"]
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, recursive=True)] == [
        "a.JPG", "b.png", "sub/d.webp", "sub/deep/g.tif"]
    assert list_images(tmp_path / "sub" / "deep") == [tmp_path / "sub" / "deep" / "g.tif"]
    assert is_image_file(tmp_path / "sub" / "d.webp", tmp_path) and not is_image_file(tmp_path / ".cache" / "f.png", tmp_path)
    assert not is_image_file(tmp_path / "folder.png") and not is_image_file(tmp_path / "c.txt")
    with pytest.raises(FileNotFoundError):
        list_images(tmp_path / "missing", recursive=True)


def test_every_user_of_image_suffixes_shares_the_list():
    from guidedinv.app.batch import items
    from guidedinv.training import data

    assert items.IMAGE_SUFFIXES is IMAGE_SUFFIXES and data.IMAGE_SUFFIXES is IMAGE_SUFFIXES
    assert all(s == s.lower() and s.startswith(".") for s in IMAGE_SUFFIXES)
