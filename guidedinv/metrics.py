"""Image quality metrics for restorations, all on [0, 1] images.

Conventions (one place, used by the benchmark and by anyone scoring a result):

* Images are float tensors (C, H, W) in [0, 1], C = 1 (grey) or 3 (RGB); a batch (B, C, H, W)
  gives one number per image. The estimate is clipped to [0, 1] before scoring (what a written
  image holds); the reference is taken as it is.
* PSNR: ``skimage.metrics.peak_signal_noise_ratio`` with ``data_range=1``: 10 log10(1 / MSE), the MSE
  over every pixel and channel together (not a mean of per-channel PSNRs), in float64.
* SSIM: ``skimage.metrics.structural_similarity`` with Wang et al. (2004)'s settings: an 11x11
  Gaussian window of sigma 1.5, K1 = 0.01, K2 = 0.03, population covariances, ``data_range=1``.
  RGB: SSIM per channel averaged over the three (``channel_axis``), not SSIM of the luminance.
  Sides must be at least 11 pixels.
* LPIPS: Zhang et al. (2018) through the optional ``lpips`` package (AlexNet backbone, v0.1), on
  inputs scaled to [-1, 1]; grey is repeated to three channels. It needs lpips, torchvision and the
  backbone's weights already in torch's hub cache: nothing is downloaded. When any is missing this
  is said once (a warning) and :func:`lpips_distance` returns None; lower is better.
* Detail ratio (``hf_ratio``), a perceptual proxy where LPIPS is unavailable: the energy of the
  image's high frequencies (the image minus its Gaussian blur of sigma 1 px, per channel, reflected
  edges; mean square over pixels and channels) over the reference's. 1 is the reference's amount of
  detail; below 1 the estimate is smoother (an over-smoothed MAP-like estimate), above 1 it holds
  grain or noise the reference lacks. PSNR rewards a ratio below 1; it says nothing of whether the
  detail is the right one (a consistency check does that), only how much there is.
* Measurement consistency: ||A x - y|| / ||y|| per image (Frobenius norms over C, H, W), with A and
  y on the [0, 1] scale. A restoration that explains the measurement to its noise level scores
  about sigma_y sqrt(m) / ||y|| (m the number of measured values), not 0.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import InputError

__all__ = ["psnr", "ssim", "lpips_distance", "lpips_status", "hf_ratio", "consistency", "score", "to_hwc"]

SSIM_MIN_SIDE = 11
# torchvision's file names of the LPIPS backbones, looked up in torch.hub's checkpoint cache
LPIPS_BACKBONES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth", "squeeze": "squeezenet1_1-b8a52dc0.pth"}


def to_hwc(x: torch.Tensor | np.ndarray, clip: bool = False) -> np.ndarray:
    """A (C, H, W) tensor or array as a float64 (H, W, C) array, optionally clipped to [0, 1]."""
    a = x.detach().to("cpu", torch.float64).numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    if a.ndim != 3 or a.shape[0] not in (1, 3):
        raise InputError(f"an image to score must be (C, H, W) with C = 1 or 3, got shape {a.shape}")
    a = np.moveaxis(a, 0, -1)
    return np.clip(a, 0.0, 1.0) if clip else a


def _pairs(x: torch.Tensor, ref: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray]]:
    if tuple(x.shape) != tuple(ref.shape):
        raise InputError(f"estimate {tuple(x.shape)} and reference {tuple(ref.shape)} differ in shape")
    if x.ndim == 3:
        return [(to_hwc(x, clip=True), to_hwc(ref))]
    if x.ndim == 4:
        return [(to_hwc(a, clip=True), to_hwc(b)) for a, b in zip(x, ref)]
    raise InputError(f"images to score must be (C, H, W) or (B, C, H, W), got shape {tuple(x.shape)}")


def _one_or_list(values: list[float], x: torch.Tensor) -> float | list[float]:
    return values[0] if x.ndim == 3 else values


def psnr(x: torch.Tensor, ref: torch.Tensor) -> float | list[float]:
    """PSNR in dB of ``x`` against ``ref`` (both [0, 1]); a float for (C, H, W), a list for a batch.
    Identical images give +inf."""
    from skimage.metrics import peak_signal_noise_ratio

    out = []
    for a, b in _pairs(x, ref):
        with np.errstate(divide="ignore"):
            out.append(float(peak_signal_noise_ratio(b, a, data_range=1.0)))
    return _one_or_list(out, x)


def ssim(x: torch.Tensor, ref: torch.Tensor) -> float | list[float]:
    """SSIM of ``x`` against ``ref`` (both [0, 1]), Wang et al. 2004 settings; 1 for identical images."""
    from skimage.metrics import structural_similarity

    out = []
    for a, b in _pairs(x, ref):
        if min(a.shape[:2]) < SSIM_MIN_SIDE:
            raise InputError(f"SSIM needs images of at least {SSIM_MIN_SIDE}x{SSIM_MIN_SIDE} pixels, got {a.shape[1]}x{a.shape[0]}")
        kwargs: dict[str, Any] = dict(data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        if a.shape[-1] == 1:
            value = structural_similarity(b[..., 0], a[..., 0], **kwargs)
        else:
            value = structural_similarity(b, a, channel_axis=-1, **kwargs)
        out.append(float(value))
    return _one_or_list(out, x)


_LPIPS: dict[str, Any] = {}


def lpips_status(net: str = "alex") -> tuple[Any, str | None]:
    """(model, None) when LPIPS can run offline, else (None, why not). Checked once per backbone."""
    if net in _LPIPS:
        return _LPIPS[net]
    model, reason = None, None
    try:
        import lpips  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError as exc:
        reason = f"LPIPS skipped: {exc.name or 'lpips'} is not installed (pip install 'guidedinv[lpips]')"
    except Exception as exc:  # e.g. a torchvision built for another torch: "operator torchvision::nms does not exist"
        reason = (f"LPIPS skipped: lpips / torchvision cannot be imported ({type(exc).__name__}: {exc}); "
                  "install a torchvision that matches torch")
    if reason is None:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_BACKBONES[net]
        if not cached.is_file():
            reason = f"LPIPS skipped: its {net} backbone weights are not cached ({cached}); nothing is downloaded"
    if reason is None:
        try:
            import lpips

            model = lpips.LPIPS(net=net, verbose=False).eval()
        except Exception as exc:  # a broken install must not stop a benchmark
            reason = f"LPIPS skipped: the lpips model could not be built ({type(exc).__name__}: {exc})"
    if reason is not None:
        warnings.warn(reason, RuntimeWarning, stacklevel=2)
    _LPIPS[net] = (model, reason)
    return _LPIPS[net]


def lpips_distance(x: torch.Tensor, ref: torch.Tensor, net: str = "alex") -> float | list[float] | None:
    """LPIPS of ``x`` against ``ref`` (both [0, 1]); None when LPIPS is unavailable (said once)."""
    model, _ = lpips_status(net)
    if model is None:
        return None
    pairs = _pairs(x, ref)
    out = []
    with torch.no_grad():
        for a, b in pairs:
            ta, tb = (torch.from_numpy(np.moveaxis(v, -1, 0)).float()[None] * 2 - 1 for v in (a, b))
            if ta.shape[1] == 1:
                ta, tb = ta.expand(-1, 3, -1, -1), tb.expand(-1, 3, -1, -1)
            out.append(float(model(ta, tb).item()))
    return _one_or_list(out, x)


def _detail_energy(a: np.ndarray) -> float:
    from scipy.ndimage import gaussian_filter

    return float(np.mean((a - gaussian_filter(a, sigma=(1.0, 1.0, 0.0), mode="reflect")) ** 2))


def hf_ratio(x: torch.Tensor, ref: torch.Tensor) -> float | list[float]:
    """High-frequency energy of ``x`` (clipped to [0, 1]) over ``ref``'s (module notes); nan for a flat reference."""
    out = []
    for a, b in _pairs(x, ref):
        e_ref = _detail_energy(b)
        out.append(_detail_energy(a) / e_ref if e_ref > 0 else float("nan"))
    return _one_or_list(out, x)


def consistency(operator: Any, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """||A x - y|| / ||y|| per image; x (B, C, H, W) and y (B, C', h, w) on the [0, 1] scale."""
    x64, y64 = x.detach().to(torch.float64), y.detach().to(torch.float64)
    residual = (operator.A(x64) - y64).flatten(1).norm(dim=1)
    return (residual / y64.flatten(1).norm(dim=1).clamp_min(1e-12)).tolist()


def score(x: torch.Tensor, ref: torch.Tensor, operator: Any = None, y: torch.Tensor | None = None,
          use_lpips: bool = True) -> list[dict[str, float | None]]:
    """PSNR, SSIM, LPIPS (None when unavailable or not asked), the detail ratio and, given A and y,
    consistency, per image."""
    x4, ref4 = (x[None], ref[None]) if x.ndim == 3 else (x, ref)
    p, s, hf = psnr(x4, ref4), ssim(x4, ref4), hf_ratio(x4, ref4)
    lp = lpips_distance(x4, ref4) if use_lpips else None
    c = consistency(operator, x4, y if y is None or y.ndim == 4 else y[None]) if operator is not None and y is not None else None
    return [{"psnr": p[i], "ssim": s[i], "lpips": None if lp is None else lp[i], "hf_ratio": hf[i],
             "consistency": None if c is None else c[i]}
            for i in range(x4.shape[0])]
