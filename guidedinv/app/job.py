"""One restoration or edit job as every front end runs it (the four restoration commands, ``guidedinv
edit``, the web page): read the inputs and check them, then load the prior, then restore, then write.

    job = prepare_job(request, "photo.png", "mask.png", outputs=JobOutputs(Path("filled.png")))
    denoiser, classifier = load_models(request, "cpu")
    result = run_job(job, denoiser, classifier, callback=lambda info: print(info.index))
    written = write_job_outputs(job, result)

:func:`prepare_job` does every check a user's input can fail (the kernel against the image, the mask,
a super-resolution factor, the memory a network run needs) before any model loads, each a one-line
:class:`~guidedinv.errors.InputError`. What a front end adds stays its own: the command line's
options and path checks and its progress bar, the page's uploads, queue and worker thread.

Importing this module imports neither torch nor the engine.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from .request import Request

__all__ = ["JobOutputs", "PreparedJob", "JobResult", "prepare_job", "load_models", "run_job", "write_job_outputs"]


@dataclass
class JobOutputs:
    """Where a job's files go; None (or no sample paths): not written."""

    result: Path  # the result PNG; its recipe goes beside it (RESULT-STEM.recipe.toml)
    compare: Path | None = None  # input | (measurement |) result, labelled
    measurement_panel: bool = True  # the comparison shows the measurement (the commands; the page and edit do not)
    trajectory: Path | None = None  # the x0 estimate across the steps, a GIF
    uncertainty: Path | None = None  # with N >= 2 samples: their per-pixel spread as a colour map
    samples: list[Path] = field(default_factory=list)  # with N >= 2 samples: each of them
    mask: Path | None = None  # the mask as used (inpainting's, or the edit weights)


@dataclass
class PreparedJob:
    """A checked job: the request, the input as read, and what the sampler gets (tensors in [0, 1])."""

    request: Request
    data: Any  # the input's ImageData (channels, alpha and bit depth kept in the result)
    y: Any  # (1, C, h, w) measurement (editing: the image to edit)
    shown_input: Any  # (C, H, W) the comparison's input panel (with simulate: the clean image)
    mask: Any = None  # inpainting: bool (h, w), True = fill; editing: float edit weights (h, w)
    latent: Any = None  # editing from a latent (guidedinv invert's): decoded instead of noising y
    outputs: JobOutputs | None = None

    @property
    def task(self) -> str:
        return self.request.task


@dataclass
class JobResult:
    x: Any  # (C, H, W) in [0, 1] on the CPU: the result (with N >= 2 samples their mean)
    posterior: Any = None  # with N >= 2 samples: the Posterior (guidedinv.app.posterior)
    frames: list[Any] = field(default_factory=list)  # the trajectory's frames, (C, H, W) in [0, 1]


def prepare_job(request: Request, image: str | Path, mask: str | Path | None = None, *, simulate: bool = False,
                memory: str | None = None, latent: str | Path | None = None, outputs: JobOutputs | None = None,
                result_name: str = "--out") -> PreparedJob:
    """Read ``image`` (and inpainting's ``mask`` file, else the request's generated mask; editing's
    ``latent``) and check everything a model load would otherwise meet first. ``simulate``: the image
    is clean and is degraded by the request first; ``memory``: the budget of one network call
    ('2GiB', set for this process); ``result_name``: how a memory refusal names the result."""
    from ..io import read_image

    data = read_image(image)
    if request.task == "edit":
        job = _prepare_edit(request, data, latent)
    else:
        job = _prepare_restore(request, data, mask, simulate)
    job.outputs = outputs
    if request.uses_network:  # refuse up front what cannot fit, saying what would
        from ..memory import parse_memory, set_memory_budget
        from ..memory_estimate import check_memory, estimate_memory
        from .methods import get_method

        if memory is not None:
            set_memory_budget(parse_memory(memory, "--memory"))
        gradient = get_method(request.method).cost(request.settings).backward > 0
        factor, image_hw = request.operator.factor, data.image.shape[-2:]
        check_memory(estimate_memory(image_hw[0] * factor, image_hw[1] * factor, gradient=gradient), what=result_name)
    return job


def _prepare_restore(request: Request, data: Any, mask_file: str | Path | None, simulate: bool) -> PreparedJob:
    from ..io import check_mask, read_mask
    from .measure import check_kernel_size, default_mask, simulate_measurement

    image = data.image[None]
    check_kernel_size(request, data.size)
    mask = None
    if request.task == "inpaint":
        mask = read_mask(mask_file, data.size) if mask_file is not None else default_mask(request, data.size)
        check_mask(mask, mask_file or request.operator.mask)
    if simulate:
        m = simulate_measurement(request, image, mask)
        return PreparedJob(request, data, m.y, m.clean[0], m.mask)
    if request.task == "superres" and request.operator.factor > min(image.shape[-2:]) * 64:
        raise InputError(f"--scale {request.operator.factor} is far too large for a {image.shape[-1]}x{image.shape[-2]} image")
    return PreparedJob(request, data, image.clamp(0, 1), data.image, mask)


def _prepare_edit(request: Request, data: Any, latent_file: str | Path | None) -> PreparedJob:
    from .edit import edit_weights

    weights = edit_weights(request.operator.mask, data.size, request.seed) if request.operator.mask else None
    latent = None
    if latent_file is not None:
        from .latent import read_latent

        latent = read_latent(latent_file, data.size)
    return PreparedJob(request, data, data.image[None], data.image, weights, latent)


def load_models(request: Request, device: str, dtype: str | None = "fp32") -> tuple[Any, Any]:
    """The request's prior and its noisy-image classifier (None when it guides with none); (None,
    None) for a classical method."""
    if not request.uses_network:
        return None, None
    from .. import defaults

    denoiser = defaults.load_prior(request.model, device, dtype, request.tile, flags=request.model_flags or None,
                                   flags_from="--model-flags")
    classifier = None
    if request.guidance is not None and request.guidance.classifier:
        from ..models import load_classifier

        classifier = load_classifier(defaults.resolve_model(request.guidance.classifier), device=next(denoiser.parameters()).device)
    return denoiser, classifier


def run_job(job: PreparedJob, denoiser: Any, classifier: Any = None, callback: Any = None) -> JobResult:
    """Restore (or edit) the prepared job; ``callback(info)`` after each step (guidedinv.sampler.StepInfo).
    The trajectory's frames are kept when ``job.outputs`` asks for one, each sample when it asks for them."""
    from .solve import restore

    request, outputs = job.request, job.outputs
    frames: list[Any] = []
    keep_frames = outputs is not None and outputs.trajectory is not None

    def step(info: Any) -> None:
        if keep_frames:
            frames.append((info.x0[0].detach().float().cpu() + 1) / 2)
        if callback is not None:
            callback(info)

    if job.latent is not None:
        from .latent import decode_latent

        return JobResult(decode_latent(denoiser, request, job.latent, classifier=classifier, callback=step)[0].cpu(),
                         None, frames)
    x = restore(denoiser, request, job.y, mask=job.mask, seeds=[request.seed], callback=step, classifier=classifier,
                keep_samples=outputs is not None and bool(outputs.samples))
    if request.samples > 1:  # N samples: the result is their mean
        return JobResult(x.mean[0].cpu(), x, frames)
    return JobResult(x[0].cpu(), None, frames)


def write_job_outputs(job: PreparedJob, result: JobResult, recipe: str | None = None) -> list[Path]:
    """Write what ``job.outputs`` names: the result and its recipe (``recipe``, else the request's as
    TOML), the mask as used, the samples and their spread, the comparison, the trajectory; returns the
    paths written, in that order."""
    from ..io import write_image
    from .images import compare_label, labelled_strip, write_gif, write_posterior, write_result
    from .recipes import dump_toml

    outputs, request = job.outputs, job.request
    if outputs is None:
        raise ValueError("the job plans no outputs (prepare_job(..., outputs=JobOutputs(...)))")
    written = write_result(outputs.result, result.x, job.data, request, dump_toml(request.recipe) if recipe is None else recipe)
    if outputs.mask is not None and job.mask is not None:
        written.append(write_image(outputs.mask, job.mask[None].float()))
    if result.posterior is not None:
        written += write_posterior(result.posterior, job.data, request, outputs.uncertainty, outputs.samples)
    if outputs.compare is not None:
        panels = [("input", job.shown_input), (compare_label(request), result.x)]
        if outputs.measurement_panel:
            panels.insert(1, ("measurement", job.y[0].clamp(0, 1)))
        write_image(outputs.compare, labelled_strip(panels, upscale_small=request.task == "superres"))
        written.append(Path(outputs.compare))
    if outputs.trajectory is not None and result.frames:
        write_gif(outputs.trajectory, result.frames)
        written.append(Path(outputs.trajectory))
    return written
