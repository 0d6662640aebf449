"""Training data: whole image sets held in memory as uint8, random crops cut on the training device.

BSD200 + T91 is ~36 M pixels (~110 MB as uint8), so the loader reads every file once, keeps it
on the device, and each batch is a set of random crops with flips and 90-degree rotations: the
GPU never waits for the CPU and the CPU path has no worker processes.

Files are read by :func:`guidedinv.io.read_image` (its formats, its size limit against
decompression bombs, EXIF orientation applied, grey expanded to RGB, alpha dropped, 16-bit
rounded to 8): a file it refuses stops training with its one-line error before any step, since a
silently smaller data set would change what is learnt. :func:`describe` fingerprints the file
list (names and sizes, not contents) so that a resume can tell whether the data changed.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch

from ..errors import InputError
from ..io import IMAGE_SUFFIXES, list_images as _image_files, read_image

__all__ = ["IMAGE_SUFFIXES", "list_images", "labelled_images", "run_files", "describe", "read_rgb", "CropSampler"]


def list_images(sources: Sequence[str | Path]) -> list[Path]:
    """Image files under the given folders (recursively, :func:`guidedinv.io.list_images`) or given
    directly, sorted for reproducibility."""
    files: list[Path] = []
    for src in map(Path, sources):
        if src.is_dir():
            files += _image_files(src, recursive=True)
        elif src.is_file():
            files.append(src)
        else:
            raise InputError(f"training data {src}: no such file or folder")
    if not files:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {', '.join(map(str, sources))}")
    return files


def labelled_images(root: str | Path) -> tuple[list[Path], list[int], list[str]]:
    """(files, labels, class names) of a folder with one sub-folder per class (the ImageFolder
    layout: ROOT/cat/*.png, ROOT/dog/*.png; classes numbered in name order, images found
    recursively inside each). Loose images at the top level are an error, not a silent skip."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"labelled data {root}: no such folder (expected one sub-folder of images per class)")
    loose = [p.name for p in _image_files(root)]
    if loose:
        raise InputError(f"labelled data {root}: {len(loose)} image(s) outside a class folder (e.g. {loose[0]}); "
                         "put each class in its own sub-folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files: list[Path] = []
    labels: list[int] = []
    for k, name in enumerate(classes):
        found = _image_files(root / name, recursive=True)
        if not found:
            raise InputError(f"labelled data {root}: class folder {name!r} holds no images")
        files += found
        labels += [k] * len(found)
    if len(classes) < 2:
        raise InputError(f"labelled data {root}: {len(classes)} class folder(s); a classifier needs at least 2")
    return files, labels, classes


def run_files(objective: str, data: Sequence[str | Path]) -> tuple[list[Path], list[int] | None, list[str] | None]:
    """(files, labels, class names) a run of ``objective`` reads: a prior's images of every folder in
    ``data`` (no labels), a classifier's or conditional prior's labelled folder ``data[0]``."""
    if objective == "prior":
        return list_images(data), None, None
    return labelled_images(data[0])


def describe(files: Sequence[Path], roots: Sequence[str | Path], labels: Sequence[int] | None = None) -> dict:
    """{"files": count, "digest": 12 hex digits} of the files' names (relative to the folder given,
    so a moved data set matches), sizes and labels: what a resume compares. Reads no pixels."""
    folders = [Path(r).resolve() for r in roots if Path(r).is_dir()]
    rows = []
    for i, f in enumerate(files):
        full = Path(f).resolve()
        name = next((full.relative_to(r).as_posix() for r in folders if full.is_relative_to(r)), full.name)
        rows.append(f"{name}\t{full.stat().st_size}\t{'' if labels is None else labels[i]}")
    digest = hashlib.sha256("\n".join(sorted(rows)).encode()).hexdigest()[:12]
    return {"files": len(rows), "digest": digest}


def read_rgb(path: str | Path) -> torch.Tensor:
    """(3, H, W) uint8 of an image file (module docstring for what is converted); an InputError
    naming the file when it cannot be read, is too large (a decompression bomb) or is corrupt."""
    try:
        image = read_image(path).image
    except InputError as exc:
        raise InputError(f"training data: {exc}; remove or replace the file") from None
    image = image.expand(3, -1, -1) if image.shape[0] == 1 else image
    return (image * 255).round_().to(torch.uint8).contiguous()


class CropSampler:
    """Random ``crop`` x ``crop`` patches in [-1, 1] from in-memory images (with optional labels).

    Images smaller than the crop are skipped with a note in ``skipped``. Augmentation: horizontal
    flip and a random multiple of 90 degrees, per crop.
    """

    def __init__(
        self,
        images: Sequence[torch.Tensor],
        crop: int,
        labels: Sequence[int] | None = None,
        device: str | torch.device = "cpu",
        augment: bool = True,
    ) -> None:
        keep = [i for i, im in enumerate(images) if min(im.shape[-2:]) >= crop]
        if not keep:
            raise InputError(f"no training image is at least {crop}x{crop} pixels")
        self.skipped = len(images) - len(keep)
        self.images = [images[i].to(device) for i in keep]
        self.labels = None if labels is None else torch.tensor([labels[i] for i in keep], device=device)
        self.crop, self.device, self.augment = crop, torch.device(device), augment
        self.classes: list[str] | None = None  # class names, for labelled data
        sizes = torch.tensor([im.shape[-2] * im.shape[-1] for im in self.images], dtype=torch.float64)
        self.weights = sizes / sizes.sum()  # pick images in proportion to their area

    @classmethod
    def from_files(cls, files: Sequence[Path], crop: int, labels: Sequence[int] | None = None,
                   device: str | torch.device = "cpu") -> CropSampler:
        """Read ``files`` (:func:`read_rgb`) and sample their crops."""
        return cls([read_rgb(p) for p in files], crop, labels=labels, device=device)

    @classmethod
    def from_folders(cls, sources: Sequence[str | Path], crop: int, device: str | torch.device = "cpu") -> CropSampler:
        return cls.from_files(list_images(sources), crop, device=device)

    @classmethod
    def from_labelled_folder(cls, root: str | Path, crop: int, device: str | torch.device = "cpu") -> CropSampler:
        """Crops with their image's class, from a folder with one sub-folder per class
        (:func:`labelled_images`); the class names are ``sampler.classes``."""
        files, labels, classes = labelled_images(root)
        return cls.from_labelled_files(files, labels, classes, crop, root, device)

    @classmethod
    def from_labelled_files(cls, files: Sequence[Path], labels: Sequence[int], classes: Sequence[str], crop: int,
                            root: str | Path, device: str | torch.device = "cpu") -> CropSampler:
        """The crops of :func:`labelled_images`'s result (``root``: for messages)."""
        sampler = cls.from_files(files, crop, labels=labels, device=device)
        kept = set(sampler.labels.tolist())
        empty = [c for k, c in enumerate(classes) if k not in kept]
        if empty:
            raise InputError(f"labelled data {root}: no image of class {empty[0]!r} is at least {crop}x{crop} pixels")
        sampler.classes = list(classes)
        return sampler

    @classmethod
    def for_run(cls, files: Sequence[Path], labels: Sequence[int] | None, classes: Sequence[str] | None, crop: int,
                root: str | Path, device: str | torch.device = "cpu") -> CropSampler:
        """The sampler of :func:`run_files`'s result: labelled when it names classes."""
        if classes is None:
            return cls.from_files(files, crop, device=device)
        return cls.from_labelled_files(files, labels or [], classes, crop, root, device)

    @property
    def num_pixels(self) -> int:
        return sum(im.shape[-2] * im.shape[-1] for im in self.images)

    def batch(self, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(size, 3, crop, crop) float32 in [-1, 1], and the labels of the chosen images (or None)."""
        idx = torch.multinomial(self.weights, size, replacement=True, generator=generator)
        crops, c = [], self.crop
        for i in idx.tolist():
            im = self.images[i]
            top = int(torch.randint(0, im.shape[-2] - c + 1, (1,), generator=generator))
            left = int(torch.randint(0, im.shape[-1] - c + 1, (1,), generator=generator))
            patch = im[:, top : top + c, left : left + c]
            if self.augment:
                flip, rot = torch.randint(0, 2, (1,), generator=generator), torch.randint(0, 4, (1,), generator=generator)
                if int(flip):
                    patch = patch.flip(-1)
                patch = torch.rot90(patch, int(rot), dims=(-2, -1))
            crops.append(patch)
        x = torch.stack(crops).float() / 127.5 - 1
        labels = None if self.labels is None else self.labels[idx.to(self.labels.device)]
        return x, labels
