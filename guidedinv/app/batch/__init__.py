"""Batch restoration: many images, one recipe, an output folder and a report; resumable and scalable.

    from guidedinv.app.batch import collect_items, run_batch
    from guidedinv.defaults import load_prior
    from guidedinv.app.recipes import load_recipe

    items = collect_items(["photos/"])                 # files, folders, globs; or manifest="list.csv"
    result = run_batch(items, load_recipe("inpaint"), lambda: load_prior("default"), "restored/")
    print(result.done, result.failed, result.report)   # restored/report.json

The output folder holds one PNG per item (named after the item id), ``recipe.toml`` (the resolved
recipe: a different recipe into the same folder is refused unless forced) and ``report.json``.
Parts: :mod:`.items` (inputs, ids, seeds), :mod:`.runner` (grouping, restoring, resuming),
:mod:`.measure` (one item's measurement and padding), :mod:`.folder` (the folder's recipe),
:mod:`.names` (the files beside each output: uncertainty map, samples; their name checks),
:mod:`.report` (records and their merge), :mod:`.metrics` (PSNR, SSIM, consistency),
:mod:`.scaleout` (ranks under torchrun).
"""
from .folder import RECIPE_NAME
from .items import IMAGE_SUFFIXES, MANIFEST_FIELDS, Item, collect_items, item_seed, measurement_seed, read_manifest
from .report import REPORT_NAME
from .runner import BatchProgress, BatchResult, run_batch
from .scaleout import Ranks, join

__all__ = [
    "Item",
    "IMAGE_SUFFIXES",
    "MANIFEST_FIELDS",
    "collect_items",
    "read_manifest",
    "item_seed",
    "measurement_seed",
    "run_batch",
    "BatchResult",
    "BatchProgress",
    "RECIPE_NAME",
    "REPORT_NAME",
    "Ranks",
    "join",
]
