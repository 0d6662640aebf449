"""One item's measurement: its request (own seed and scale), its mask, the measurement y (read, or
simulated from a clean image by :func:`guidedinv.app.measure.simulate_measurement`), the operator A,
the reference, and the padding restore() would use.

An item alone and an item in a group are padded the same way here, by restore's own rule, so a
group's restore() call pads nothing and each result equals the item's one-at-a-time result.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from ...errors import InputError
from ...io import check_mask, read_image, read_mask
from ...operators import LinearOperator
from ..measure import build_operator, default_mask, simulate_measurement
from ..request import Request, parse_request
from ..solve import pad_measurement
from .items import Item

__all__ = ["Prepared", "check_recipe", "item_recipe", "item_mask", "prepare", "pad"]


@dataclass
class Prepared:
    item: Item
    recipe: dict[str, Any]  # the item's: its seed, its scale
    y: torch.Tensor  # (1, C, h, w) measurement in [0, 1]
    mask: torch.Tensor | None  # (h, w) bool, True = fill; editing: float weights in [0, 1], 1 = edit
    operator: LinearOperator  # on the unpadded result's grid, for the consistency metric
    reference: torch.Tensor | None  # (C, H, W) in [0, 1]
    alpha: torch.Tensor | None  # (1, H', W') of the input, put back on the output
    bit_depth: int  # of the output: 16 for 16-bit inputs, else 8
    request: Request | None = None
    y_pad: torch.Tensor | None = None  # (1, C, h', w') padded for the network (see :func:`pad`)
    mask_pad: torch.Tensor | None = None  # (h', w')
    crop: Any = None  # the Crop back from the padded grid
    factor: int = 1  # super-resolution factor

    @property
    def seed(self) -> int:
        return int(self.recipe["seed"])

    @property
    def key(self) -> tuple:
        """Items with equal keys share one restore() call (an edit with a mask and one without do not)."""
        assert self.y_pad is not None
        return (tuple(self.y_pad.shape[1:]), self.factor, self.mask_pad is None)


def check_recipe(recipe: dict[str, Any] | Request) -> Request:
    """Recipe mistakes are usage errors before any item runs, not a failure of every item."""
    request = recipe if isinstance(recipe, Request) else parse_request({k: v for k, v in recipe.items() if k != "batch"},
                                                                         "recipe")
    # The runner loads no classifier: a recipe naming one would silently run classifier-free guidance
    # (a class-conditional model) or fail every item; refuse it before any item runs.
    if request.guidance is not None and request.guidance.classifier:
        raise InputError(f"guidance.classifier = {request.guidance.classifier!r}: batch runs no classifier guidance; "
                         "use a class-conditional model (classifier-free guidance, no guidance.classifier) or run "
                         "'guidedinv edit --class C --classifier FILE' per image")
    if request.operator.kind == "edit" and (request.settings.get("ilvr") or request.operator.reference):
        raise InputError("batch edit takes no ILVR reference (operator.reference, methods.sdedit.ilvr); a manifest's "
                         "reference column is the clean image for scoring; run 'guidedinv edit IMAGE --reference REF "
                         "--ilvr N' per image")
    return request


def item_recipe(recipe: dict[str, Any], item: Item, seed: int) -> dict[str, Any]:
    """The recipe one item runs with: its own seed, scale and mask file (so the recipe written into its
    output reproduces it alone); without the batch-only table."""
    out = copy.deepcopy({k: v for k, v in recipe.items() if k != "batch"})
    out["seed"] = seed
    if item.mask is not None and out.get("operator", {}).get("kind") in ("inpaint", "edit"):
        out["operator"]["mask"] = str(item.mask)
    if item.scale is not None:
        if out["operator"].get("kind") != "downsample":
            raise InputError(f"scale {item.scale} is for super-resolution recipes; this recipe's operator is "
                             f"{out['operator'].get('kind')!r}")
        out["operator"]["scale"] = item.scale
    return out


def item_mask(item: Item, request: Request, hw: tuple[int, int]) -> torch.Tensor | None:
    """The item's mask file, else the request's mask file or generated spec (seeded by the item's seed).

    Inpainting: bool (h, w), True = fill. Editing: float edit weights (h, w) in [0, 1], white = edit
    (:func:`guidedinv.app.edit.edit_weights`, as ``guidedinv edit --mask`` reads them), or None
    (edit everywhere) when neither the item nor the recipe names one."""
    if request.operator.kind == "edit":
        from ..edit import edit_weights

        spec = item.mask if item.mask is not None else request.operator.mask
        return edit_weights(spec, hw, request.seed) if spec else None
    if request.operator.kind != "inpaint":
        if item.mask is not None:
            raise InputError(f"a mask was given but this recipe's operator is {request.operator.kind!r}")
        return None
    mask = read_mask(item.mask, hw) if item.mask is not None else default_mask(request, hw)
    return check_mask(mask, item.mask or request.operator.mask)


def prepare(item: Item, recipe: dict[str, Any], seed: int, simulated: bool) -> Prepared:
    """Read ``item`` and build its measurement (``simulated``: the input is clean, degrade it)."""
    data = read_image(item.input)
    recipe = item_recipe(recipe, item, seed)
    request = parse_request(recipe, f"item {item.id}")
    image, alpha = data.image, data.alpha
    factor = request.operator.factor
    reference = None
    if simulated:
        from ...operators import crop_to_multiple

        clean = crop_to_multiple(image, factor) if factor > 1 else image
        alpha = None if alpha is None or factor == 1 else crop_to_multiple(alpha, factor)
        m = simulate_measurement(request, clean, item_mask(item, request, clean.shape[-2:]))
        y, mask, operator, reference = m.y, m.mask, m.operator, m.clean[0]
    else:
        y = image[None]
        mask = item_mask(item, request, image.shape[-2:])
        operator = build_operator(request, (y.shape[-2] * factor, y.shape[-1] * factor), mask)
    if item.reference is not None:
        reference = read_image(item.reference).image
    size = (data.channels, y.shape[-2] * factor, y.shape[-1] * factor)
    if reference is not None and tuple(reference.shape) != size:
        raise InputError(f"reference {item.reference or item.input} is {reference.shape[2]}x{reference.shape[1]} "
                         f"with {reference.shape[0]} channel(s) but the result is {size[2]}x{size[1]} with {size[0]}")
    if not torch.isfinite(y).all():
        raise InputError(f"{item.input}: the measurement contains NaN or infinite values")
    return Prepared(item, recipe, y, mask, operator, reference, alpha, 16 if data.bit_depth == 16 else 8, request)


def pad(p: Prepared, multiple: int) -> Prepared:
    """Pad as restore() pads an item alone (sides a multiple of ``multiple``, the network's)."""
    assert p.request is not None
    p.y_pad, p.mask_pad, p.crop, p.factor = pad_measurement(p.request, p.y, p.mask, multiple)
    return p
