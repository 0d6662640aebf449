"""Networks and checkpoints: the ADM UNet and noisy classifier (guided-diffusion's key layout),
diffusers UNet2DModel checkpoints, configuration inferred from a state dict, a registry of named
public models, a verified download cache, and safe loading.

    from guidedinv.models import load_denoiser
    prior = load_denoiser("ffhq_10m")        # a registry name or a local file path
    prior.net(x, t)                          # the raw network (guided-diffusion's output)
    load_denoiser("improved.pt", flags="num_heads=4 use_new_attention_order=true")  # what shapes cannot show

A checkpoint that is neither in the registry nor exported by guidedinv gets guessed attention heads,
qkv order and schedule (a ModelFlagsWarning says so); model flags state them (guidedinv.models.flags).
"""

from .adm import ADMClassifier, ADMConfig, ADMUNet, build_network
from .config import Inferred, infer_config
from .download import cache_dir, download
from .flags import parse_model_flags
from .load import ModelFlagsWarning, inspect_checkpoint, load_classifier, load_denoiser, load_model, open_checkpoint
from .registry import REGISTRY, ModelEntry, lookup

__all__ = [
    "ADMClassifier",
    "ADMConfig",
    "ADMUNet",
    "build_network",
    "Inferred",
    "infer_config",
    "cache_dir",
    "download",
    "inspect_checkpoint",
    "load_classifier",
    "load_denoiser",
    "load_model",
    "open_checkpoint",
    "parse_model_flags",
    "ModelFlagsWarning",
    "REGISTRY",
    "ModelEntry",
    "lookup",
]
