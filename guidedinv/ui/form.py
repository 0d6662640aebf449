"""A submitted form -> a checked job: the uploads saved in the job's own folder, the request built by
the command line's own builders (so the same checks and the same one-line messages), the image and
mask read and checked by the commands' own :func:`guidedinv.app.job.prepare_job`, all before any model
loads.

The page posts JSON (``static/app.js``)::

    {"task": "inpaint", "image": {"name": "photo.png", "data": BASE64}, "mask": {...} | null,
     "kernel": {...} | null, "options": {"method": "pnp", "steps": "logsnr20", "seed": "0", ...},
     "trajectory": false}

Option values are the text of the page's fields ("" = the preset's default); their names are the
command line's flags, and messages name them as flags (``--seed abc: expected a whole number``).
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..app.job import JobOutputs, PreparedJob
from ..errors import InputError

__all__ = ["UI_TASKS", "FILES", "Prepared", "page_config", "prepare", "display"]

UI_TASKS = ("inpaint", "edit", "superres", "deblur", "denoise")
_TEXT = ("method", "steps", "mode", "kernel", "mask_spec")
_NUMBERS = {"seed": int, "scale": int, "kernel_size": int, "class": int, "samples": int, "sigma": float, "sigma_y": float,
            "strength": float, "guidance_scale": float}
_FLAGS = {"mask_spec": "--mask", "kernel_size": "--kernel-size", "sigma_y": "--sigma-y", "guidance_scale": "--scale"}
_KERNEL_SUFFIXES = (".npy", ".npz", ".png", ".tif", ".tiff", ".bmp")


FILES = {"result": "result.png", "recipe": "result.recipe.toml", "mask": "result.mask.png", "compare": "compare.png",
         "trajectory": "trajectory.gif", "uncertainty": "uncertainty.png"}


@dataclass
class Prepared:
    """A checked job (:class:`guidedinv.app.job.PreparedJob`, its outputs planned in the job's folder)
    and what the page adds: the uploads' names."""

    job: Any  # guidedinv.app.job.PreparedJob
    mask_name: str | None = None  # the uploaded or painted mask's file name (a generated mask: None)
    names: dict[str, str] = field(default_factory=dict)  # saved path -> the uploaded file's name

    @property
    def task(self) -> str:
        return self.job.task

    @property
    def request(self) -> Any:
        return self.job.request

    @property
    def data(self) -> Any:  # the input's ImageData
        return self.job.data


def display(message: str, folder: Path, names: dict[str, str]) -> str:
    """A message (or a recipe) as the user should read it: the saved files named by the uploaded
    files' names, the server's temporary folder never shown."""
    for path, name in sorted(names.items(), key=lambda kv: -len(kv[0])):
        message = message.replace(path, name)
    return message.replace(str(folder), "(upload)")


def page_config(model: str | None) -> dict[str, Any]:
    """What the page shows as defaults: per task, its methods with their default steps (the presets'
    and the method registry's, as ``--help`` shows them) and the operator's defaults."""
    from ..app.methods import get_method, methods_for_kind
    from ..app.operator_spec import KIND_OF_TASK
    from ..app.request import load_preset

    tasks = {}
    for task in UI_TASKS:
        recipe = load_preset(task)
        methods = {}
        for name in methods_for_kind(KIND_OF_TASK[task]):
            method = get_method(name)
            steps = recipe.get("methods", {}).get(name, {}).get("steps", method.defaults().get("steps"))
            methods[name] = {"network": method.uses_network, "steps": steps}
        operator = {k: v for k, v in recipe.get("operator", {}).items() if k != "kind"}
        settings = get_method(recipe["method"]).defaults()
        tasks[task] = {"method": recipe["method"], "methods": methods, "operator": operator,
                       "sigma_y": recipe.get("noise", {}).get("sigma_y", 0.0),
                       "strength": settings.get("strength") if task == "edit" else None}
    return {"model": model or "default", "tasks": tasks}


def _options(raw: Any) -> dict[str, Any]:
    """The page's fields as typed values (None when empty); a value that is not a number is a one-line error."""
    if not isinstance(raw, dict):
        raise InputError("the form's options must be an object of field names and values")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _TEXT and key not in _NUMBERS:
            raise InputError(f"unknown field {key!r}; known: {', '.join((*_TEXT, *_NUMBERS))}")
        text = "" if value is None else str(value).strip()
        if not text:
            out[key] = None
        elif key in _NUMBERS:
            flag, kind = _FLAGS.get(key, "--" + key.replace("_", "-")), _NUMBERS[key]
            digits = text.removeprefix("-")
            try:
                if kind is int and not (digits.isascii() and digits.isdigit()):  # int() takes '²' and '1_000'
                    raise ValueError(text)
                out[key] = kind(text)
            except ValueError:
                raise InputError(f"{flag} {text}: expected {'a whole number' if kind is int else 'a number'}") from None
        else:
            out[key] = text
    return out


def _save(item: Any, what: str, folder: Path, stem: str, suffixes: tuple[str, ...], default: str,
          names: dict[str, str]) -> Path | None:
    """Decode an upload ({"name", "data": base64}) into FOLDER/STEM.SUFFIX (its own suffix when known)."""
    if item is None:
        return None
    if not isinstance(item, dict) or not isinstance(item.get("data"), str):
        raise InputError(f"{what}: expected an uploaded file")
    # printable, and safe inside a recipe's TOML string (the recipe names uploads by these names)
    name = "".join(c if c.isprintable() and c not in '"\\' else "_" for c in str(item.get("name") or what))[:200]
    try:
        content = base64.b64decode(item["data"].split(",", 1)[-1], validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{name}: the upload is damaged (not base64 data)") from None
    if not content:
        raise InputError(f"{name}: file is empty (0 bytes)")
    suffix = Path(name).suffix.lower()
    path = folder / f"{stem}{suffix if suffix in suffixes else default}"
    path.write_bytes(content)
    names[str(path)] = name
    return path


def prepare(payload: Any, folder: Path, model: str | None, device: str) -> Prepared:
    """Check a submitted form and read its inputs (saved into ``folder``); InputError on bad input."""
    from ..io import IMAGE_SUFFIXES

    if not isinstance(payload, dict):
        raise InputError("the request must be a JSON object")
    task = payload.get("task")
    if task not in UI_TASKS:
        raise InputError(f"unknown task {task!r}; expected one of {', '.join(UI_TASKS)}")
    names: dict[str, str] = {}
    o = _options(payload.get("options", {}))
    if payload.get("image") is None:
        raise InputError("choose an image to upload first")
    image = _save(payload["image"], "image", folder, "image", IMAGE_SUFFIXES, ".png", names)
    mask_file = _save(payload.get("mask"), "mask", folder, "mask", IMAGE_SUFFIXES, ".png", names)
    kernel_file = _save(payload.get("kernel"), "kernel", folder, "kernel", _KERNEL_SUFFIXES, ".npy", names)
    o["trajectory"] = True if payload.get("trajectory") else None
    outputs = JobOutputs(folder / FILES["result"], compare=folder / FILES["compare"], measurement_panel=False,
                         trajectory=folder / FILES["trajectory"] if payload.get("trajectory") else None,
                         uncertainty=folder / FILES["uncertainty"], mask=folder / FILES["mask"])
    try:
        job = _prepare(task, o, image, mask_file, kernel_file, model, device, outputs)
    except InputError as exc:
        raise InputError(display(str(exc), folder, names)) from None
    return Prepared(job, names.get(str(mask_file)) if mask_file is not None else None, names)


def _prepare(task: str, o: dict[str, Any], image: Path, mask_file: Path | None, kernel_file: Path | None,
             model: str | None, device: str, outputs: JobOutputs) -> PreparedJob:
    from ..app.job import prepare_job

    if task == "edit":
        return prepare_job(_edit_request(o, mask_file, model, device), image, outputs=outputs, result_name="the result")
    from ..cli.restore import make_request

    if kernel_file is not None:
        if task != "deblur":
            raise InputError("a kernel file belongs to the deblur tab")
        o["kernel"] = f"{kernel_file}:{o['kernel']}" if o.get("kernel") and kernel_file.suffix == ".npz" else str(kernel_file)
    if mask_file is not None and o.get("mask_spec") is not None:
        raise InputError("give either a mask (painted or uploaded) or a generated mask spec, not both")
    options = {"task_file": None, "set_": [], "device": device, "dtype": "fp32", "tile": None, "model": model,
               "model_flags": None, "classifier": None, "memory": None, "class_": o.get("class"),
               "guidance_scale": o.get("guidance_scale"), "method": o.get("method"), "steps": o.get("steps"),
               "seed": o.get("seed") if o.get("seed") is not None else 0, "sigma_y": o.get("sigma_y"),
               "scale": o.get("scale"), "mode": o.get("mode"), "kernel": o.get("kernel"), "kernel_size": o.get("kernel_size"),
               "sigma": o.get("sigma"), "mask": o.get("mask_spec"), "mask_file": mask_file, "samples": o.get("samples"),
               "trajectory": o["trajectory"]}
    return prepare_job(make_request(task, options), image, mask_file, outputs=outputs, result_name="the result")


def _edit_request(o: dict[str, Any], mask_file: Path | None, model: str | None, device: str) -> Any:
    from ..cli.edit import make_edit_request

    if mask_file is not None and o.get("mask_spec") is not None:
        raise InputError("give either a mask (painted or uploaded) or a generated mask spec, not both")
    mask = str(mask_file) if mask_file is not None else o.get("mask_spec")
    options = {"strength": o.get("strength"), "mask": mask, "reference": None, "ilvr": None, "ilvr_sigma_min": None,
               "rule": None, "steps": o.get("steps"), "seed": o.get("seed") if o.get("seed") is not None else 0,
               "model": model, "model_flags": None, "tile": None, "class_": o.get("class"), "classifier": None,
               "scale": o.get("guidance_scale"), "task_file": None, "set_": [], "guidance": None, "device": device,
               "dtype": "fp32"}
    if o.get("samples") is not None:
        raise InputError(f"--samples {o['samples']}: posterior samples are for inpaint, superres, deblur and denoise, not edit")
    if o.get("method") not in (None, "sdedit"):
        raise InputError(f"--method {o['method']}: editing has one method: sdedit")
    return make_edit_request(options)
