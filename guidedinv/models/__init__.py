"""Networks and checkpoints: the ADM UNet and noisy classifier (guided-diffusion's key layout) and
diffusers UNet2DModel checkpoints."""
from .adm import ADMClassifier, ADMConfig, ADMUNet, build_network

__all__ = ["ADMClassifier", "ADMConfig", "ADMUNet", "build_network"]
