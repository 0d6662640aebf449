"""Peer methods driven by OUR denoiser: deepinv's DPS, DiffPIR and DDRM, diffusers' DDIM and RePaint.

Optional (``pip install 'guidedinv[peers]'``); nothing in the package imports this module. Every
peer runs its own published loop; only the network, the measurement and the operator are ours.
The adapters convert conventions explicitly (:data:`CONVENTIONS`, printed by the runner, says how):
:class:`UnitRangeDenoiser` is deepinv's ``D(x, sigma)`` on [0, 1] over our network at the matching
(fractional, :func:`continuous_timestep`) timestep; :class:`EpsUNet` is diffusers' ``unet(sample,
timestep).sample`` = eps from our clipped x0, its schedulers built on our betas
(:func:`diffusers_scheduler`); deepinv gets our operator as a ``LinearPhysics``
(:func:`operator_physics`: our A, A^T, pseudo-inverse and proximal step) or, for DDRM, as a
``DecomposablePhysics`` (:func:`svd_physics`), checked against our A before use.

deepinv imports torchvision at import time. Where torchvision's compiled ops cannot load (a CUDA
torchvision wheel beside a CPU-only torch: torchvision then fails with "operator torchvision::nms
does not exist"), :func:`load_deepinv` declares the two op schemas torchvision's import needs,
without kernels, and says so in its notes: deepinv's samplers never call them.
"""
from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..denoiser import Denoiser
from ..noise import NoiseSource
from ..operators import Blur, Downsample, Inpainting, LinearOperator
from ..schedule import VPSchedule, respace

__all__ = ["PeerUnavailable", "CONVENTIONS", "load_deepinv", "load_diffusers", "continuous_timestep", "UnitRangeDenoiser",
           "EpsUNet", "diffusers_scheduler", "operator_physics", "svd_physics", "deepinv_dps", "DPS_TUNED_WEIGHTS",
           "deepinv_diffpir", "deepinv_ddrm",
           "diffusers_ddim_sample", "diffusers_ddim_ddnm", "diffusers_repaint", "repaint_steps_for_budget", "PEERS", "Peer"]

CONVENTIONS = (
    "data range: images are [0, 1] outside, [-1, 1] inside our network (x_model = 2 x - 1); deepinv's denoiser "
    "interface takes [0, 1] and returns [0, 1]",
    "noise scale: deepinv's sigma is a standard deviation on the [0, 1] scale; ours on [-1, 1] is sigma_model = 2 sigma",
    "noise level -> timestep: alpha_bar = 1 / (1 + sigma_model^2), t = our schedule's fractional timestep with that "
    "alpha_bar (log-SNR interpolation between integer steps; clamped to [0, T-1]); network input x_t = sqrt(alpha_bar) "
    "(2 x - 1), i.e. deepinv's variance-exploding x rescaled to our variance-preserving x_t",
    "prediction: our default prior predicts v; diffusers' schedulers get eps = (x_t - sqrt(ab) x0) / sqrt(1 - ab) from "
    "our clipped x0 (prediction_type='epsilon'); the DDIM+DDNM loop hands diffusers x0 itself (prediction_type='sample')",
    "timesteps: diffusers' integer timesteps are our schedule's (our 1000 linear betas passed as trained_betas, no "
    "rescaling); diffusers' 'leading' spacing of N steps is our 'ddimN'",
    "sigma_y: ours is on the [0, 1] scale; deepinv's GaussianNoise(sigma) of the same measurement gets the same number; "
    "deepinv's DiffPIR uses rho_t = lambda sigma_y^2 / sigma_t^2 with sigma_y on [0, 1] and sigma_t on [-1, 1] (as its paper's code)",
    "RePaint (diffusers) and the DDIM+DDNM loop are noiseless formulations: they use y as if sigma_y were 0",
    "prox/pinv: deepinv's prox_l2(z, y, gamma) = argmin gamma/2 |Ax - y|^2 + 1/2 |x - z|^2 is our prox_l2(z, y, rho = 1/gamma) "
    "(our closed forms instead of deepinv's conjugate gradients); DDRM gets an SVD of our operator",
    "deepinv 0.5.0's DDRM draws std * randn / sqrt(2) in spectral coordinates (unit variance for BlurFFT's complex pairs, half "
    "for a real SVD: inpainting, SR) while telling the denoiser sigma; left so (it over-smooths: smoother, higher PSNR)",
    "eta: DDRM's (and DDNM's code's, c1 = sqrt(1 - a') eta) is the fraction of the next level's noise drawn fresh; our ddnm's "
    "is DDIM's, a fraction eta sqrt((1 - a/a')/(1 - a)) that changes per step; our ddrm's is DDRM's",
    "DPS: ours moves x_t by zeta (t - t_next) 1000/T grad ||y - A x0|| (model range); deepinv's 'norm' guidance adds weight "
    "grad ||y - A x0|| ([0, 1]) to the score: a step of about weight/2 times the step's beta in our units (0.1 at weight 1)",
)


class PeerUnavailable(RuntimeError):
    """A peer cannot run here; the message is the reason, one line."""


# -- imports ------------------------------------------------------------------------------------------
_TORCHVISION_SCHEMAS: list[Any] = []  # keeps the schema library alive for the process


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _import_torchvision() -> list[str]:
    """Import torchvision, declaring the ops its import registers fakes for when its C++ ops cannot load."""
    if "torchvision" in sys.modules:
        return []
    try:
        import torchvision  # noqa: F401
        return []
    except ImportError as exc:
        raise PeerUnavailable(f"deepinv needs torchvision, which is not installed ({_first_line(exc)})") from None
    except RuntimeError as exc:
        if "torchvision::nms" not in str(exc):
            raise PeerUnavailable(f"torchvision does not import: {_first_line(exc)}") from None
        first = _first_line(exc)
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    lib = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _TORCHVISION_SCHEMAS.append(lib)
    try:
        import torchvision
    except Exception as exc:  # noqa: BLE001 - any failure here is the reason the peer cannot run
        raise PeerUnavailable(f"torchvision does not import ({first}; then {_first_line(exc)})") from None
    why = ""
    try:
        import ctypes

        from torchvision.extension import _get_extension_path

        ctypes.CDLL(_get_extension_path("_C"))
    except (OSError, ImportError) as exc:
        why = f" ({str(exc).strip().splitlines()[0]})"
    return [f"torchvision {torchvision.__version__} cannot load its C++ ops against torch {torch.__version__}{why}: "
            f"'{first}' at import; its nms/qnms schemas were declared without kernels so that deepinv imports "
            "(deepinv's samplers do not use torchvision's ops)"]


def load_deepinv() -> tuple[Any, list[str]]:
    """(the deepinv module, notes); PeerUnavailable with the reason when it cannot be imported."""
    notes = _import_torchvision()
    try:
        import deepinv
    except Exception as exc:  # noqa: BLE001
        raise PeerUnavailable(f"deepinv does not import: {_first_line(exc)}") from None
    return deepinv, notes


def load_diffusers() -> tuple[Any, list[str]]:
    """(the diffusers module, notes); PeerUnavailable with the reason when it cannot be imported."""
    try:
        import diffusers
        from diffusers import DDIMScheduler, RePaintScheduler  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        raise PeerUnavailable(f"diffusers does not import: {_first_line(exc)}") from None
    return diffusers, []


# -- denoiser adapters --------------------------------------------------------------------------------
def continuous_timestep(schedule: VPSchedule, sigma_model: torch.Tensor) -> torch.Tensor:
    """The fractional timesteps t (float64) whose alpha_bar is 1 / (1 + sigma_model^2) under the
    schedule's own interpolation (log-SNR linear between integer steps), clamped to [0, T-1]."""
    s = torch.as_tensor(sigma_model, dtype=torch.float64)
    abar = schedule.alphas_cumprod.to(s.device)
    log_sigma = 0.5 * torch.log((1 - abar) / abar)  # increasing in t; log-SNR = -2 log sigma
    ls = torch.log(s.clamp_min(1e-300)).clamp(float(log_sigma[0]), float(log_sigma[-1]))
    hi = torch.searchsorted(log_sigma, ls).clamp(1, len(abar) - 1)
    lo = hi - 1
    frac = (ls - log_sigma[lo]) / (log_sigma[hi] - log_sigma[lo])
    return lo.to(torch.float64) + frac


def _per_item(value: Any, batch: int, device: torch.device) -> torch.Tensor:
    v = torch.as_tensor(value, dtype=torch.float64).to(device).reshape(-1)
    return v.expand(batch) if v.numel() == 1 else v


class UnitRangeDenoiser(torch.nn.Module):
    """deepinv's denoiser interface ``forward(x, sigma)`` over our denoiser (see the module notes).

    x: (B, C, H, W) on the [0, 1] scale plus noise of standard deviation sigma ([0, 1] scale; a float,
    (), (B,) or (B, 1, 1, 1)). Returns our E[x0 | x] mapped to [0, 1]. Differentiable in x.
    """

    def __init__(self, denoiser: Denoiser) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.schedule = denoiser.schedule

    def timestep(self, sigma: Any, batch: int, device: torch.device) -> torch.Tensor:
        """Our fractional timesteps (B,) for deepinv's sigma ([0, 1] scale)."""
        return continuous_timestep(self.schedule, 2 * _per_item(sigma, batch, device))

    def forward(self, x: torch.Tensor, sigma: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        t = self.timestep(sigma, x.shape[0], x.device).to(torch.float32)  # what the network is handed
        ab = self.schedule.alpha_bar_tensor(t).to(x.dtype).view(-1, *([1] * (x.ndim - 1)))
        x0 = self.denoiser(ab.sqrt() * (2 * x - 1), t).x0
        return (x0 + 1) / 2


@dataclass
class UNetOutput:
    """What diffusers' UNet2DModel returns (only ``.sample`` is read by the pipelines)."""

    sample: torch.Tensor


class EpsUNet:
    """diffusers' UNet interface ``unet(sample, timestep).sample`` = eps, from our denoiser."""

    def __init__(self, denoiser: Denoiser) -> None:
        self.denoiser = denoiser

    def __call__(self, sample: torch.Tensor, timestep: Any, *args: Any, **kwargs: Any) -> UNetOutput:
        t = _per_item(timestep, sample.shape[0], sample.device).to(torch.float32)
        return UNetOutput(self.denoiser.eps(sample, t))


def diffusers_scheduler(cls: Any, schedule: VPSchedule, **config: Any) -> Any:
    """A diffusers scheduler class built on our schedule's betas (our integer timesteps, eps prediction)."""
    options = dict(num_train_timesteps=schedule.num_steps, trained_betas=schedule.betas.numpy(), clip_sample=True)
    options.update(config)
    return cls(**options)


# -- operators as deepinv physics ----------------------------------------------------------------------
def _check_physics(physics: Any, op: LinearOperator, shape: Sequence[int], what: str) -> None:
    """PeerUnavailable unless the physics' A equals our A on a random image (relative 1e-5)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        x = torch.rand(*shape, dtype=torch.float32)
    ours, theirs = op.A(x), physics.A(x)
    if tuple(theirs.shape) != tuple(ours.shape):
        raise PeerUnavailable(f"{what}: A gives shape {tuple(theirs.shape)}, ours {tuple(ours.shape)}")
    err = float((theirs.real - ours).norm() / ours.norm().clamp_min(1e-12))
    if err > 1e-5:
        raise PeerUnavailable(f"{what}: A differs from our operator (relative error {err:.2e})")


def operator_physics(dinv: Any, op: LinearOperator, sigma_y: float) -> Any:
    """Our operator as a deepinv LinearPhysics with Gaussian noise sigma_y ([0, 1] scale): A, A^T,
    A^+ and the proximal step are ours (deepinv's gamma = 1 / our rho)."""

    class OperatorPhysics(dinv.physics.LinearPhysics):
        def __init__(self) -> None:
            super().__init__(A=op.A, A_adjoint=op.AT, noise_model=dinv.physics.GaussianNoise(sigma=float(sigma_y)), max_iter=100)

        def A_dagger(self, y: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            return op.pinv(y)

        def prox_l2(self, z: torch.Tensor, y: torch.Tensor, gamma: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
            return op.prox_l2(z, y, 1.0 / float(gamma))

    return OperatorPhysics()


def svd_physics(dinv: Any, op: LinearOperator, sigma_y: float, shape: Sequence[int]) -> Any:
    """Our operator as a deepinv DecomposablePhysics (what DDRM needs), checked against our A.

    Inpainting: U = V = I, singular values the observed mask. Circular blur: deepinv's BlurFFT with
    our kernel. Downsampling: the operator's own SVD (``op.spectral``, the Kronecker product of the
    axis matrices' SVDs); its singular values fill the top-left (h, w) block of an image-sized
    array, zero elsewhere (the null space), so DDRM's spectral coordinates have the image's shape."""
    noise = dinv.physics.GaussianNoise(sigma=float(sigma_y))
    b, c, h, w = (int(s) for s in shape)
    if isinstance(op, Inpainting):
        mask = op.mask.to(torch.float32).expand(1, c, h, w).contiguous()
        physics = dinv.physics.DecomposablePhysics(mask=mask, noise_model=noise)
    elif isinstance(op, Blur) and op.boundary == "circular":
        physics = dinv.physics.BlurFFT(img_size=(c, h, w), filter=op.kernel.to(torch.float32)[None, None], noise_model=noise)
    elif isinstance(op, Downsample):
        svd = op.spectral(torch.zeros(1, 1, h, w))  # guidedinv.operators.spectral.Kronecker, float32
        values = svd.s.expand(1, c, h, w).contiguous()
        physics = dinv.physics.DecomposablePhysics(U=svd.u, U_adjoint=svd.ut, V=svd.from_spectral, V_adjoint=svd.to_spectral,
                                                   mask=values, noise_model=noise)
    else:
        raise PeerUnavailable(f"DDRM needs an SVD of the operator; none is written here for {op!r}")
    _check_physics(physics, op, (b, c, h, w), f"DDRM's SVD physics for {op!r}")
    return physics


# -- the peers ----------------------------------------------------------------------------------------
def _shape(op: LinearOperator, y: torch.Tensor) -> tuple[int, ...]:
    return tuple(op.in_shape(y.shape))


DPS_TUNED_WEIGHTS = {Downsample: 1000.0, Blur: 100.0, Inpainting: 3000.0}  # tuned at 100 steps (docs/peers.md); default 1


def deepinv_dps(dinv: Any, denoiser: Denoiser, op: LinearOperator, y: torch.Tensor, sigma_y: float, nfe: int, seed: int,
                tuned: bool = False, **options: Any) -> torch.Tensor:
    """deepinv.sampling.DPS (defaults: VP SDE, beta 0.1..20, DDPM solver, weight 1, 'norm') with ``nfe`` steps (nfe + 1
    time points, the last never evaluated); tuned: the weight DPS_TUNED_WEIGHTS gives the operator's kind."""
    if tuned:
        options.setdefault("weight", next(w for kind, w in DPS_TUNED_WEIGHTS.items() if isinstance(op, kind)))
    physics = operator_physics(dinv, op, sigma_y)
    rng = torch.Generator(y.device).manual_seed(int(seed))
    model = dinv.sampling.DPS(UnitRangeDenoiser(denoiser), num_steps=int(nfe) + 1, device=y.device, rng=rng, **options)
    return model(y, physics, seed=int(seed)).to(torch.float32)


def deepinv_diffpir(dinv: Any, denoiser: Denoiser, op: LinearOperator, y: torch.Tensor, sigma_y: float, nfe: int, seed: int,
                    **options: Any) -> torch.Tensor:
    """deepinv.sampling.DiffPIR (its defaults: zeta 0.1, lambda 7, its own 1000-step linear schedule)
    with max_iter = nfe (one network call each) and deepinv's L2 data fidelity."""
    physics = operator_physics(dinv, op, sigma_y)
    model = dinv.sampling.DiffPIR(UnitRangeDenoiser(denoiser), dinv.optim.data_fidelity.L2(), sigma=float(sigma_y),
                                  max_iter=int(nfe), device=y.device, **options)
    with torch.random.fork_rng(devices=[y.device] if y.device.type == "cuda" else []):
        return model(y, physics, seed=int(seed))


def ddrm_sigmas(schedule: VPSchedule, nfe: int) -> list[float]:
    """DDRM's decreasing noise levels on the [0, 1] scale: our 'logsnrN' grid's sigma_t / 2."""
    return [schedule.sigma(t) / 2 for t in reversed(respace(f"logsnr{int(nfe)}", schedule.num_steps, schedule))]


def deepinv_ddrm(dinv: Any, denoiser: Denoiser, op: LinearOperator, y: torch.Tensor, sigma_y: float, nfe: int, seed: int,
                 **options: Any) -> torch.Tensor:
    """deepinv.sampling.DDRM (eta 0.85, etab 1) on our 'logsnrN' grid (the grid of our DDNM at that
    budget), one network call per level."""
    physics = svd_physics(dinv, op, sigma_y, _shape(op, y))
    model = dinv.sampling.DDRM(UnitRangeDenoiser(denoiser), sigmas=ddrm_sigmas(denoiser.schedule, nfe), **options)
    with torch.random.fork_rng(devices=[y.device] if y.device.type == "cuda" else []):
        return model(y, physics, seed=int(seed))


def diffusers_ddim_sample(diffusers: Any, denoiser: Denoiser, x_t: torch.Tensor, steps: int, eta: float = 0.0,
                          seed: int = 0) -> torch.Tensor:
    """Unconditional DDIM with diffusers' DDIMScheduler ('leading' spacing, alpha_bar = 1 after the
    last step) from x_T, model range: the loop a diffusers user writes around our network."""
    sched = diffusers_scheduler(diffusers.DDIMScheduler, denoiser.schedule, set_alpha_to_one=True, steps_offset=0,
                                timestep_spacing="leading", prediction_type="epsilon")
    sched.set_timesteps(int(steps), device=x_t.device)
    unet, x = EpsUNet(denoiser), x_t
    generator = torch.Generator(x_t.device).manual_seed(int(seed))
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(unet(x, t).sample, t, x, eta=eta, generator=generator).prev_sample
    return x


def diffusers_ddim_ddnm(diffusers: Any, denoiser: Denoiser, op: LinearOperator, y: torch.Tensor, sigma_y: float, nfe: int,
                        seed: int, eta: float = 0.85) -> torch.Tensor:
    """diffusers' DDIMScheduler (N = nfe 'leading' steps, eta 0.85) with DDNM's range-space correction
    written here, x0 <- x0 - A^+ (A x0 - y) (noiseless DDNM, Wang et al. 2023 eq. 13), handed over as
    prediction_type='sample'. Not a diffusers method: it isolates diffusers' loop from our term."""
    sched = diffusers_scheduler(diffusers.DDIMScheduler, denoiser.schedule, set_alpha_to_one=True, steps_offset=0,
                                timestep_spacing="leading", prediction_type="sample")
    sched.set_timesteps(int(nfe), device=y.device)
    y_model = op.to_model_range(y)
    shape = _shape(op, y)
    x = NoiseSource.from_seeds([int(seed)]).randn(shape[1:], torch.float32, y.device)
    generator = torch.Generator(y.device).manual_seed(int(seed))
    with torch.no_grad():
        for t in sched.timesteps:
            x0 = denoiser(x, _per_item(t, shape[0], y.device).to(torch.float32)).x0
            x0 = x0 - op.pinv(op.A(x0) - y_model)
            x = sched.step(x0, t, x, eta=eta, generator=generator).prev_sample
    return ((x + 1) / 2).to(torch.float32)


def _repaint_calls(diffusers: Any, schedule: VPSchedule, steps: int, jump_length: int, jump_n_sample: int) -> int:
    sched = diffusers_scheduler(diffusers.RePaintScheduler, schedule)
    sched.set_timesteps(steps, jump_length, jump_n_sample)
    calls, last = 0, int(sched.timesteps[0]) + 1
    for t in sched.timesteps.tolist():
        calls += int(t < last)
        last = t
    return calls


def repaint_steps_for_budget(diffusers: Any, schedule: VPSchedule, nfe: int, jump_length: int, jump_n_sample: int) -> int:
    """The largest num_inference_steps whose RePaint schedule makes at most ``nfe`` network calls."""
    best = 1
    for steps in range(1, int(nfe) + 1):
        if _repaint_calls(diffusers, schedule, steps, jump_length, jump_n_sample) <= nfe:
            best = steps
    return best


def diffusers_repaint(diffusers: Any, denoiser: Denoiser, op: LinearOperator, y: torch.Tensor, sigma_y: float, nfe: int,
                      seed: int, jump_length: int | None = None, jump_n_sample: int | None = None,
                      eta: float = 1.0) -> torch.Tensor:
    """diffusers' RePaintScheduler with RePaintPipeline's loop (step below the last timestep, undo_step
    above it), eta = 1 (RePaint's DDPM), the largest grid within ``nfe`` network calls. The jumps
    default to those of the method it is compared with (our registry's repaint defaults)."""
    if not isinstance(op, Inpainting):
        raise PeerUnavailable("RePaint is inpainting only")
    ours = _ours_defaults("diffusers-repaint")
    jump_length = int(ours["jump_length"] if jump_length is None else jump_length)
    jump_n_sample = int(ours["jump_n_sample"] if jump_n_sample is None else jump_n_sample)
    sched = diffusers_scheduler(diffusers.RePaintScheduler, denoiser.schedule, eta=eta)
    sched.set_timesteps(repaint_steps_for_budget(diffusers, denoiser.schedule, nfe, jump_length, jump_n_sample),
                       jump_length, jump_n_sample, device=y.device)
    shape = _shape(op, y)
    known = op.mask.to(device=y.device, dtype=torch.float32).expand(shape)
    original = op.to_model_range(y)
    unet = EpsUNet(denoiser)
    generator = torch.Generator(y.device).manual_seed(int(seed))
    x = NoiseSource.from_seeds([int(seed)]).randn(shape[1:], torch.float32, y.device)
    t_last = sched.timesteps[0] + 1
    with torch.no_grad():
        for t in sched.timesteps:
            if t < t_last:
                x = sched.step(unet(x, t).sample, t, x, original, known, generator).prev_sample
            else:
                x = sched.undo_step(x, t_last, generator)
            t_last = t
    return ((x + 1) / 2).to(torch.float32)


def _ours_defaults(peer: str) -> dict[str, Any]:
    """The default settings of our method that ``peer`` is compared with (the registry's)."""
    from ..app.methods import get_method

    return get_method(PEERS[peer].ours).defaults()


@dataclass(frozen=True)
class Peer:
    """A peer method: its library, the runner, our method it is compared with, the tasks it supports."""

    name: str
    library: str
    run: Any
    ours: str
    operators: tuple[type, ...]
    about: str


PEERS: dict[str, Peer] = {p.name: p for p in (
    Peer("deepinv-dps", "deepinv", deepinv_dps, "dps", (Inpainting, Downsample, Blur),
         "deepinv.sampling.DPS, defaults (DDPM solver, weight 1, 'norm'): effectively unguided"),
    Peer("deepinv-dps-tuned", "deepinv", functools.partial(deepinv_dps, tuned=True), "dps", (Inpainting, Downsample, Blur),
         "deepinv.sampling.DPS, weight tuned per operator: " + ", ".join(f"{k.__name__} {w:g}" for k, w in DPS_TUNED_WEIGHTS.items())),
    Peer("deepinv-diffpir", "deepinv", deepinv_diffpir, "diffpir", (Inpainting, Downsample, Blur),
         "deepinv.sampling.DiffPIR, defaults (zeta 0.1, lambda 7)"),
    Peer("deepinv-ddrm", "deepinv", deepinv_ddrm, "ddnm", (Inpainting, Downsample, Blur),
         "deepinv.sampling.DDRM (eta 0.85, etab 1) on our logsnr grid; SVD physics of our operator"),
    Peer("diffusers-ddim+ddnm", "diffusers", diffusers_ddim_ddnm, "ddnm", (Inpainting, Downsample, Blur),
         "diffusers DDIMScheduler (eta 0.85, leading) + noiseless DDNM x0 correction written here"),
    Peer("diffusers-repaint", "diffusers", diffusers_repaint, "repaint", (Inpainting,),
         "diffusers RePaintScheduler + RePaintPipeline's loop (eta 1)"),
)}

