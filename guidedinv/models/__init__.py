"""Networks and checkpoints: the ADM UNet and noisy classifier (guided-diffusion's key layout),
diffusers UNet2DModel checkpoints, configuration inferred from a state dict and a registry of
named public models."""
from .adm import ADMClassifier, ADMConfig, ADMUNet, build_network
from .config import Inferred, infer_config
from .registry import REGISTRY, ModelEntry, lookup

__all__ = ["ADMClassifier", "ADMConfig", "ADMUNet", "build_network", "Inferred", "infer_config", "REGISTRY", "ModelEntry", "lookup"]
